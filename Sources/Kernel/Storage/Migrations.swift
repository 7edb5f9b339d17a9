import Logging

/// One versioned schema change. Most DDL is the same on both databases (TEXT, BIGINT, BOOLEAN,
/// DOUBLE PRECISION, foreign keys, indexes); where it is not (triggers), each dialect has its own.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sqlite: [String]
    public var postgres: [String]

    public init(version: Int, name: String, shared: [String], sqlite: [String] = [], postgres: [String] = []) {
        self.version = version
        self.name = name
        self.sqlite = shared + sqlite
        self.postgres = shared + postgres
    }

    func statements(for dialect: SQLDialect) -> [String] {
        dialect == .sqlite ? sqlite : postgres
    }
}

/// Applies migrations in version order, recording each in `schema_migrations`. SQLite: each
/// migration in its own transaction. PostgreSQL: all pending migrations in one transaction (DDL is
/// transactional there, so a failure leaves the schema as it was), under an advisory lock that
/// keeps two starting servers from racing.
public struct Migrator: Sendable {
    public let migrations: [Migration]
    let logger: Logger

    public init(migrations: [Migration], logger: Logger) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.logger = logger
    }

    public var latestVersion: Int { migrations.last?.version ?? 0 }

    static let createTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )
        """

    /// Applies what is missing; returns the versions it applied.
    @discardableResult
    public func migrate(_ storage: Storage, now: Int64) async throws -> [Int] {
        switch storage {
        case .sqlite(let db):
            return try await db.withWriterConnection { [migrations] connection in
                try connection.execute(Self.createTable)
                let applied = Set(try connection.query("SELECT version FROM schema_migrations").map { Int(try $0.int(0)) })
                var done: [Int] = []
                for migration in migrations where !applied.contains(migration.version) {
                    do {
                        try connection.transaction {
                            for sql in migration.statements(for: .sqlite) { try connection.execute(sql) }
                            try connection.execute(
                                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                                [.int(Int64(migration.version)), .text(migration.name), .int(now)])
                        }
                    } catch {
                        throw MigrationError(version: migration.version, name: migration.name, underlying: error)
                    }
                    done.append(migration.version)
                }
                return done
            }.logged(logger)
        case .postgres(let db):
            return try await db.transaction { [migrations] connection in
                // Serialise concurrent migrators; the lock is released at commit.
                try await connection.execute("SELECT pg_advisory_xact_lock(724001)")
                try await connection.execute(Self.createTable)
                let applied = Set(try await connection.query("SELECT version FROM schema_migrations").map { Int(try $0.int(0)) })
                var done: [Int] = []
                for migration in migrations where !applied.contains(migration.version) {
                    do {
                        for sql in migration.statements(for: .postgres) { try await connection.execute(sql) }
                    } catch {
                        throw MigrationError(version: migration.version, name: migration.name, underlying: error)
                    }
                    try await connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        [.int(Int64(migration.version)), .text(migration.name), .int(now)])
                    done.append(migration.version)
                }
                return done
            }.logged(logger)
        }
    }

    /// The versions recorded as applied.
    public func appliedVersions(_ storage: Storage) async throws -> Set<Int> {
        Set(try await storage.query("SELECT version FROM schema_migrations").map { Int(try $0.int(0)) })
    }

    /// The versions this server knows that the database has not applied. Compared as sets: versions
    /// are allotted in ranges per module, so a missing kernel migration would hide below a higher
    /// module's version if only the highest were compared.
    public func missingVersions(_ storage: Storage) async throws -> [Int] {
        let applied = try await appliedVersions(storage)
        return migrations.map(\.version).filter { !applied.contains($0) }
    }
}

public struct MigrationError: Error, CustomStringConvertible {
    public var version: Int
    public var name: String
    public var underlying: any Error
    public var description: String { "migration \(version) (\(name)) failed: \(underlying)" }
}

extension Array where Element == Int {
    fileprivate func logged(_ logger: Logger) -> [Int] {
        if isEmpty {
            logger.info("schema is up to date")
        } else {
            logger.info("applied migrations", metadata: ["versions": "\(self.map(String.init).joined(separator: ","))"])
        }
        return self
    }
}
