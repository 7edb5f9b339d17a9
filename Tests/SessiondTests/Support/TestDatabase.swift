import HTTPTypes
import Foundation
import Kernel
import Logging
import SessiondApp
import Synchronization

/// A fresh database per test. SQLite: a temporary file. PostgreSQL (when
/// SESSIOND_TEST_POSTGRES_URL is set): a database cloned from a template migrated once per run,
/// so tests stay independent and run in parallel.
enum TestDatabase {
    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["SESSIOND_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var backendName: String { postgresURL == nil ? "sqlite" : "postgres" }

    static let logger: Logger = {
        var logger = Logger(label: "sessiond-test")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .error
        return logger
    }()

    static func make() async throws -> DatabaseLocation {
        guard let url = postgresURL else {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-tests-\(UUID().uuidString)")
            return .sqlite(path: directory.appendingPathComponent("test.sqlite").path)
        }
        let admin = try PostgresLocation(url: url)
        let template = try await PostgresTemplate.shared.name(admin: admin)
        let name = "sessiond_t_\(ProcessInfo.processInfo.processIdentifier)_\(UUID().uuidString.prefix(8).lowercased())_\(Int(Date().timeIntervalSince1970))"
        try await PostgresTemplate.shared.clone(template, into: name, admin: admin)
        return .postgres(admin.with(database: name))
    }

    /// Done with a test's database. SQLite: its folder is removed. PostgreSQL: it is left for the
    /// next run to drop (`PostgresTemplate` drops the databases of test processes that are gone):
    /// every DROP DATABASE forces an immediate checkpoint, and a hundred of them while the rest of
    /// the suite runs stalled every connection for 30–50 s (the cause of the suite's failures on
    /// PostgreSQL under full load: waits that ran out in the webhook, bot and concurrency tests).
    static func drop(_ location: DatabaseLocation) async {
        if case .sqlite(let path) = location {
            try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
        }
    }

    /// Whether the server is this machine: only there may a run drop databases an earlier run left.
    static func isLocal(_ location: PostgresLocation) -> Bool {
        ["127.0.0.1", "localhost", "::1", "[::1]"].contains(location.host.lowercased()) || location.host.hasPrefix("/")
    }

    /// Runs `body` with a short-lived PostgreSQL pool.
    static func withPostgres<T: Sendable>(_ location: PostgresLocation, _ body: @Sendable (PostgresDatabase) async throws -> T) async throws -> T {
        let db = PostgresDatabase(location: location, maximumConnections: 2, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await db.run() }
            defer { group.cancelAll() }
            return try await body(db)
        }
    }
}

/// Makes the migrated template database once per test process; clones are serialised because
/// PostgreSQL refuses to copy a template while another session is connected to it.
actor PostgresTemplate {
    static let shared = PostgresTemplate()
    // The creation task, not its result: the actor is reentrant, so every test that arrives while
    // the template is being made must wait on the same task rather than start another.
    private var template: Task<String, any Error>?

    func name(admin: PostgresLocation) async throws -> String {
        if let template { return try await template.value }
        let task = Task { try await Self.makeTemplate(admin: admin) }
        template = task
        return try await task.value
    }

    private static func makeTemplate(admin: PostgresLocation) async throws -> String {
        let name = "sessiond_tmpl_\(ProcessInfo.processInfo.processIdentifier)_\(Int(Date().timeIntervalSince1970))"
        try await TestDatabase.withPostgres(admin) { db in
            // Databases earlier runs of this suite left behind (every run leaves its tests'
            // databases: see `TestDatabase.drop`): only on a server on this machine (never on a
            // shared one the URL might name), and only those of test processes no longer running
            // (their names hold the process id), or, for names without one, made more than two
            // hours ago (their names end in their creation time), so a run going on beside this
            // one keeps its own. Dropped before this run's tests start, one after another.
            if TestDatabase.isLocal(admin) {
                let old = try await db.read { sql in
                    try await sql.query("SELECT datname FROM pg_database WHERE datname LIKE 'sessiond\\_t\\_%' OR datname LIKE 'sessiond\\_tmpl\\_%'")
                }
                let cutoff = Int(Date().timeIntervalSince1970) - 7200
                for row in old {
                    let name = try row.string(0)
                    let parts = name.split(separator: "_")
                    let owner = parts.count == 5 || (parts.count > 2 && parts[1] == "tmpl") ? Int32(parts[2]) : nil
                    let gone = owner.map { $0 != ProcessInfo.processInfo.processIdentifier && kill($0, 0) != 0 }
                    let made = parts.last.flatMap { Int($0) }
                    guard gone ?? ((made ?? .max) < cutoff) else { continue }
                    try? await db.read { sql in try await sql.execute("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)") }
                }
            }
            try await db.read { sql in try await sql.execute("CREATE DATABASE \"\(name)\"") }
        }
        let location = admin.with(database: name)
        try await TestDatabase.withPostgres(location) { db in
            try await Migrator(migrations: allMigrations, logger: TestDatabase.logger).migrate(.postgres(db), now: 0)
        }
        return name
    }

    func clone(_ template: String, into name: String, admin: PostgresLocation) async throws {
        try await TestDatabase.withPostgres(admin) { db in
            try await db.read { sql in try await sql.execute("CREATE DATABASE \"\(name)\" TEMPLATE \"\(template)\"") }
        }
    }
}

extension DatabaseLocation {
    var isPostgres: Bool { if case .postgres = self { true } else { false } }
}
