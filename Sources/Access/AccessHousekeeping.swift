import Kernel
import Logging
import ServiceLifecycle

/// Writes the keys' `last_used_at` gathered in memory every `interval` (so no request writes to
/// the database for it), and once more on shutdown.
public struct AccessHousekeeping: Service {
    let access: AccessService
    let interval: Duration
    let logger: Logger

    public init(access: AccessService, interval: Duration = .seconds(15), logger: Logger) {
        self.access = access
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: interval)
                await flush()
            }
        }
        await flush()
    }

    func flush() async {
        do {
            try await access.flushLastUsed()
        } catch {
            logger.warning("could not record keys' last use", metadata: ["error": "\(error)"])
        }
    }
}
