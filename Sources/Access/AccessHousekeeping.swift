import Kernel
import Logging

/// Writes the keys' `last_used_at` gathered in memory every `interval` (so no request writes to
/// the database for it), and once more on shutdown.
public enum AccessHousekeeping {
    public static func service(access: AccessService, interval: Duration = .seconds(15), logger: Logger) -> PeriodicService {
        PeriodicService("recording keys' last use", every: interval, runOnShutdown: true, logger: logger) {
            try await access.flushLastUsed()
        }
    }
}
