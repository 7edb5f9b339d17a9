import Logging

/// One kind of row kept for a while (the tenancy contract's retention settings). Each module names
/// its own rules, over its own tables; the kernel's `RetentionSweep` runs them.
public struct RetentionRule: Sendable {
    /// What it prunes, as logs and `/metrics` name it (`events`, `audits`, …).
    public var name: String
    /// How long a row is kept; 0 keeps rows for ever.
    public var keepSeconds: Int64
    /// One batch: a statement that prunes (deletes, or empties) at most `limit` rows older than
    /// `cutoff` and returns a row per row it touched (`… RETURNING 1`), or nil when there is
    /// nothing it may prune now.
    public var batch: @Sendable (_ cutoff: Timestamp, _ limit: Int) async throws -> (sql: String, binds: [SQLValue])?

    public init(
        _ name: String, keepSeconds: Int64,
        batch: @escaping @Sendable (_ cutoff: Timestamp, _ limit: Int) async throws -> (sql: String, binds: [SQLValue])?
    ) {
        self.name = name
        self.keepSeconds = keepSeconds
        self.batch = batch
    }
}

/// Prunes what the retention rules say, in small batches (each its own short transaction, with a
/// pause between them, so writes never wait long behind it), on one server at a time: a round
/// runs only under the `retention` lease (a row in `kernel_leases`, taken for a few minutes by a
/// guarded update), so two servers never sweep at once.
public final class RetentionSweep: Sendable {
    let storage: Storage
    let clock: WallClock
    let rules: [RetentionRule]
    let holder: String
    let logger: Logger
    public let batchSize: Int
    /// How long a round may hold the lease (another server takes it over after that).
    let leaseSeconds: Int64 = 300

    public init(storage: Storage, clock: WallClock, rules: [RetentionRule], holder: String, logger: Logger, batchSize: Int = 500) {
        self.storage = storage
        self.clock = clock
        self.rules = rules
        self.holder = holder
        self.logger = logger
        self.batchSize = batchSize
    }

    /// One round: every rule until it has nothing older than its cutoff left (or the round's time
    /// is up). Returns how many rows each rule pruned; empty when another server holds the lease.
    @discardableResult
    public func sweep(pause: Duration = .milliseconds(20)) async throws -> [String: Int] {
        guard try await claim() else { return [:] }
        let started = ContinuousClock.now
        var pruned: [String: Int] = [:]
        for rule in rules where rule.keepSeconds > 0 {
            let cutoff = Timestamp(milliseconds: clock.now().milliseconds - rule.keepSeconds * 1000)
            while ContinuousClock.now - started < .seconds(leaseSeconds / 2) {
                guard let (sql, binds) = try await rule.batch(cutoff, batchSize) else { break }
                let count = try await storage.writeQuery(sql, binds).count
                pruned[rule.name, default: 0] += count
                if count < batchSize { break }
                try await Task.sleep(for: pause)
            }
        }
        try await release()
        if pruned.values.contains(where: { $0 > 0 }) {
            logger.info("retention sweep", metadata: ["pruned": .dictionary(pruned.mapValues { .stringConvertible($0) })])
        }
        return pruned
    }

    func claim() async throws -> Bool {
        let now = clock.now().milliseconds
        let rows = try await storage.writeQuery(
            "UPDATE kernel_leases SET holder = ?, until_ms = ? WHERE name = 'retention' AND (until_ms < ? OR holder = ?) RETURNING 1",
            [.text(holder), .int(now + leaseSeconds * 1000), .int(now), .text(holder)])
        return !rows.isEmpty
    }

    func release() async throws {
        try await storage.write([SQLStatement("UPDATE kernel_leases SET until_ms = 0 WHERE name = 'retention' AND holder = ?", [.text(holder)])])
    }

    public static let migrations = [
        Migration(
            version: 6, name: "kernel leases (one server at a time)",
            shared: [
                "CREATE TABLE kernel_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)",
                "INSERT INTO kernel_leases (name, holder, until_ms) VALUES ('retention', '', 0)",
            ]),
    ]
}
