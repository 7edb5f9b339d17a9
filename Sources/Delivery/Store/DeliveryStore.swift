import Kernel

/// Where delivery sessions are kept. Both implementations run the same SQL (`DeliverySQL`) and
/// the same contract tests; they differ only in how statements reach the database.
public protocol DeliveryStore: Sendable {
    /// Saves a new session (and its first audit entry).
    func create(_ aggregate: DeliveryAggregate) async throws

    /// The session with everything linked to it, or nil.
    func load(_ sessionID: String) async throws -> DeliveryAggregate?

    /// Applies `change` to the current session and saves the difference in one transaction, guarded
    /// by the version the change saw (SQLite: on the single writer, so nothing else writes between
    /// the check and the save; PostgreSQL: optimistically, retried when another server wrote first).
    /// A change that records no audit entry saves nothing. `alongside` statements commit in the same
    /// transaction whether or not the session changed (a job's status), made from the change's result. Throws
    /// `DeliveryError.sessionNotFound` when there is no such session.
    func update<T: Sendable>(
        _ sessionID: String, alongside: @escaping @Sendable (T) -> [SQLStatement], _ change: @escaping @Sendable (inout DeliveryAggregate) throws -> T
    ) async throws -> (result: T, aggregate: DeliveryAggregate)

    /// A user's sessions, newest first, after `cursor` (a session id), at most `limit`.
    func sessions(userID: String, status: SessionStatus?, after cursor: String?, limit: Int) async throws -> [DeliverySession]

    /// The audit trail as stored, read from the database itself (never from a cache): what
    /// `audit/verify` checks.
    func storedAudit(_ sessionID: String) async throws -> [AuditEntry]
}

extension DeliveryStore {
    func update<T: Sendable>(
        _ sessionID: String, _ change: @escaping @Sendable (inout DeliveryAggregate) throws -> T
    ) async throws -> (result: T, aggregate: DeliveryAggregate) {
        try await update(sessionID, alongside: { _ in [] }, change)
    }
}

public enum DeliveryStores {
    /// How long a cached session is served without asking the database whether another server (or
    /// process) wrote it since: reads on one server see other servers' writes at most this late.
    /// This server's own writes are seen at once.
    public static let readStaleness: Duration = .seconds(1)

    /// The store for whichever database is open.
    public static func make(_ storage: Storage, cacheCapacity: Int = 4096) -> any DeliveryStore {
        let cache = VersionedCache<DeliveryAggregate>(capacity: cacheCapacity)
        switch storage {
        case .sqlite(let db): return SQLiteDeliveryStore(db: db, cache: cache)
        case .postgres(let db): return PostgresDeliveryStore(db: db, cache: cache)
        }
    }
}

struct SQLiteDeliveryStore: DeliveryStore {
    let db: SQLiteDatabase
    let cache: VersionedCache<DeliveryAggregate>

    func create(_ aggregate: DeliveryAggregate) async throws {
        let statements = DeliverySQL.changes(from: nil, to: aggregate)
        try await db.write { connection in
            for statement in statements { try connection.execute(statement) }
        }
        cache.publish(aggregate.id, version: aggregate.version, value: aggregate)
    }

    func load(_ sessionID: String) async throws -> DeliveryAggregate? {
        if let cached = cache.lookup(sessionID) {
            if cached.age < DeliveryStores.readStaleness { return cached.value }
            // Another process on the file may have written: one cheap query says whether it did.
            let current = try await db.read { connection in try connection.query(DeliverySQL.versionQuery, [.text(sessionID)]).first?.int(0) }
            if current == cached.version {
                cache.confirm(sessionID, version: cached.version)
                return cached.value
            }
        }
        let loaded = try await db.read { connection in
            try DeliverySQL.decode(DeliverySQL.loadQueries.map { try connection.query($0, [.text(sessionID)]) })
        }
        if let loaded { cache.publish(sessionID, version: loaded.version, value: loaded) } else { cache.remove(sessionID) }
        return loaded
    }

    func update<T: Sendable>(
        _ sessionID: String, alongside: @escaping @Sendable (T) -> [SQLStatement], _ change: @escaping @Sendable (inout DeliveryAggregate) throws -> T
    ) async throws -> (result: T, aggregate: DeliveryAggregate) {
        let cached = cache.get(sessionID)
        // Runs on the single writer, inside this request's savepoint of the group commit.
        let outcome = try await db.write { connection -> (T, DeliveryAggregate) in
            guard let row = try connection.query(DeliverySQL.versionQuery, [.text(sessionID)]).first else {
                throw DeliveryError.sessionNotFound(sessionID)
            }
            let current = try row.int(0)
            var aggregate: DeliveryAggregate
            if let cached, cached.version == current {
                aggregate = cached.value
            } else {
                let queries = try DeliverySQL.loadQueries.map { try connection.query($0, [.text(sessionID)]) }
                guard let loaded = try DeliverySQL.decode(queries) else { throw DeliveryError.sessionNotFound(sessionID) }
                aggregate = loaded
            }
            let before = aggregate
            let result = try change(&aggregate)
            let changed = aggregate.audit.count != before.audit.count
            if changed {
                aggregate.session.version = before.version + 1
                for statement in DeliverySQL.changes(from: before, to: aggregate) { try connection.execute(statement) }
            }
            for statement in alongside(result) { try connection.execute(statement) }
            return (result, changed ? aggregate : before)
        }
        cache.publish(sessionID, version: outcome.1.version, value: outcome.1)
        return outcome
    }

    func sessions(userID: String, status: SessionStatus?, after cursor: String?, limit: Int) async throws -> [DeliverySession] {
        let (sql, binds) = DeliverySQL.listQuery(userID: userID, status: status, after: cursor, limit: limit)
        return try await db.read { connection in try connection.query(sql, binds).map(DeliverySQL.session) }
    }

    func storedAudit(_ sessionID: String) async throws -> [AuditEntry] {
        try await db.read { connection in try connection.query(DeliverySQL.auditQuery, [.text(sessionID)]).map(DeliverySQL.auditEntry) }
    }
}

struct PostgresDeliveryStore: DeliveryStore {
    let db: PostgresDatabase
    let cache: VersionedCache<DeliveryAggregate>
    let locks = KeyedLock()
    static let maxAtomicStatements = 300

    func create(_ aggregate: DeliveryAggregate) async throws {
        let statements = DeliverySQL.changes(from: nil, to: aggregate)
        try await db.read { connection in try await connection.executeAtomically(statements) }
        cache.publish(aggregate.id, version: aggregate.version, value: aggregate)
    }

    func load(_ sessionID: String) async throws -> DeliveryAggregate? {
        if let cached = cache.lookup(sessionID) {
            if cached.age < DeliveryStores.readStaleness { return cached.value }
            // Another server may have written: one cheap query says whether it did.
            let current = try await db.read { connection in try await connection.query(DeliverySQL.versionQuery, [.text(sessionID)]).first?.int(0) }
            if current == cached.version {
                cache.confirm(sessionID, version: cached.version)
                return cached.value
            }
        }
        let loaded = try await db.read { connection in try await Self.load(sessionID, connection) }
        if let loaded { cache.publish(sessionID, version: loaded.version, value: loaded) } else { cache.remove(sessionID) }
        return loaded
    }

    static func load(_ sessionID: String, _ connection: PostgresSQL) async throws -> DeliveryAggregate? {
        var results: [[SQLRow]] = []
        for query in DeliverySQL.loadQueries { results.append(try await connection.query(query, [.text(sessionID)])) }
        return try DeliverySQL.decode(results)
    }

    /// Optimistic: the change is computed on the cached aggregate and saved in one statement whose
    /// session update is guarded by the version it was computed from. If another server wrote first
    /// the statement changes nothing, and the change is recomputed on a fresh load. Writers of one
    /// session in this process queue on `locks`, so they never conflict with each other.
    ///
    /// A load is several queries outside a transaction; if a write commits between them, the
    /// version read is older than the database's and the guarded save fails, so a torn load is
    /// never saved.
    func update<T: Sendable>(
        _ sessionID: String, alongside: @escaping @Sendable (T) -> [SQLStatement], _ change: @escaping @Sendable (inout DeliveryAggregate) throws -> T
    ) async throws -> (result: T, aggregate: DeliveryAggregate) {
        try await locks.withLock(sessionID) {
            var attempt = 0
            while true {
                attempt += 1
                let current: DeliveryAggregate
                if attempt == 1, let cached = cache.get(sessionID) {
                    current = cached.value
                } else {
                    cache.remove(sessionID)
                    guard let loaded = try await load(sessionID) else { throw DeliveryError.sessionNotFound(sessionID) }
                    current = loaded
                }
                var aggregate = current
                let result = try change(&aggregate)
                let changed = aggregate.audit.count != current.audit.count
                let alongside = alongside(result)
                guard changed || !alongside.isEmpty else { return (result, current) }
                if changed { aggregate.session.version = current.version + 1 }
                let statements = (changed ? DeliverySQL.changes(from: current, to: aggregate) : []) + alongside
                do {
                    if statements.count <= Self.maxAtomicStatements {
                        try await db.read { connection in try await connection.executeAtomically(statements) }
                    } else {
                        // A very large change (a 10,000-row import) would pass PostgreSQL's limit of
                        // 65,535 parameters in one statement: one transaction of many statements instead.
                        try await db.transaction { connection in
                            for statement in statements { try await connection.execute(statement) }
                        }
                    }
                } catch StorageError.conflict where attempt < 5 {
                    continue
                }
                guard changed else { return (result, current) }
                cache.publish(sessionID, version: aggregate.version, value: aggregate)
                return (result, aggregate)
            }
        }
    }

    func sessions(userID: String, status: SessionStatus?, after cursor: String?, limit: Int) async throws -> [DeliverySession] {
        let (sql, binds) = DeliverySQL.listQuery(userID: userID, status: status, after: cursor, limit: limit)
        return try await db.read { connection in try await connection.query(sql, binds).map(DeliverySQL.session) }
    }

    func storedAudit(_ sessionID: String) async throws -> [AuditEntry] {
        try await db.read { connection in try await connection.query(DeliverySQL.auditQuery, [.text(sessionID)]).map(DeliverySQL.auditEntry) }
    }
}
