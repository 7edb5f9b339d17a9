import Logging
import ServiceLifecycle

/// Deletes idempotency keys past their 24 h, every `interval`, for the life of the server.
public struct IdempotencyJanitor: Service {
    let store: IdempotencyStore
    let clock: WallClock
    let interval: Duration
    let logger: Logger

    public init(store: IdempotencyStore, clock: WallClock, interval: Duration = .seconds(3600), logger: Logger) {
        self.store = store
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        // Cancelled on graceful shutdown, so that a long sleep does not hold the server up.
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: interval)
                do {
                    let purged = try await store.purgeExpired(now: clock.now())
                    if purged > 0 { logger.info("purged expired idempotency keys", metadata: ["count": "\(purged)"]) }
                } catch {
                    logger.warning("idempotency purge failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
