import Logging

/// Deletes idempotency keys past their 24 h, every `interval`, for the life of the server.
public enum IdempotencyJanitor {
    public static func service(store: IdempotencyStore, clock: WallClock, interval: Duration = .seconds(3600), logger: Logger) -> PeriodicService {
        PeriodicService("idempotency purge", every: interval, logger: logger) {
            let purged = try await store.purgeExpired(now: clock.now())
            if purged > 0 { logger.info("purged expired idempotency keys", metadata: ["count": "\(purged)"]) }
        }
    }
}
