import Logging
import ServiceLifecycle

/// Runs `work` every `interval` for the life of the server (and, when asked, once more on the way
/// out), logging a failure and carrying on: the shape of every housekeeping loop.
public struct PeriodicService: Service {
    let name: String
    let interval: Duration
    let runOnShutdown: Bool
    let logger: Logger
    let work: @Sendable () async throws -> Void

    public init(_ name: String, every interval: Duration, runOnShutdown: Bool = false, logger: Logger, work: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.interval = interval
        self.runOnShutdown = runOnShutdown
        self.logger = logger
        self.work = work
    }

    public func run() async throws {
        // Cancelled on graceful shutdown, so that a long sleep does not hold the server up.
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: interval)
                await once()
            }
        }
        if runOnShutdown { await once() }
    }

    func once() async {
        do {
            try await work()
        } catch {
            logger.warning("\(name) failed", metadata: ["error": "\(error)"])
        }
    }
}
