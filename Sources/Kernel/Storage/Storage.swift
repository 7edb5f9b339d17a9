import Logging

/// Where the data lives: `sqlite:PATH` (the default) or a `postgres://` URL.
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    public static let defaultSQLitePath = "./data/sessiond.sqlite"

    public init(parsing value: String) throws(ConfigurationError) {
        if value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") {
            self = .postgres(try PostgresLocation(url: value))
        } else if value.hasPrefix("sqlite:") {
            var path = String(value.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw ConfigurationError(["database: sqlite: needs a path, as in sqlite:./data/sessiond.sqlite"]) }
            self = .sqlite(path: path)
        } else {
            throw ConfigurationError(["database: \(PostgresLocation.redacted(value)) is neither sqlite:PATH nor postgres://…"])
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let location): "postgres://\(location.username)@\(location.host):\(location.port)/\(location.database)"
        }
    }
}

/// The open database, whichever it is. Stores switch on it once, when they are made.
public enum Storage: Sendable {
    case sqlite(SQLiteDatabase)
    case postgres(PostgresDatabase)

    /// Opens the database; a PostgreSQL pool holds at most `maximumConnections` connections.
    public static func open(_ location: DatabaseLocation, logger: Logger, maximumConnections: Int = 16) throws -> Storage {
        switch location {
        case .sqlite(let path): .sqlite(try SQLiteDatabase(path: path, logger: logger))
        case .postgres(let location): .postgres(PostgresDatabase(location: location, maximumConnections: maximumConnections, logger: logger))
        }
    }

    public var dialect: SQLDialect {
        switch self {
        case .sqlite: .sqlite
        case .postgres: .postgres
        }
    }

    /// Runs a read-only query on whichever database this is.
    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        switch self {
        case .sqlite(let db): try await db.read { connection in try connection.query(sql, binds) }
        case .postgres(let db): try await db.read { connection in try await connection.query(sql, binds) }
        }
    }

    /// A small indexed read on the request path (a credential's row). SQLite: on the calling thread,
    /// outside a transaction (see `SQLiteDatabase.lookup`); PostgreSQL: an ordinary query.
    public func lookup(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        switch self {
        case .sqlite(let db): try db.lookup(sql, binds)
        case .postgres(let db): try await db.read { connection in try await connection.query(sql, binds) }
        }
    }

    /// Runs statements in one durable transaction with the request's idempotent answer, rendered
    /// from `output` by the route (see `IdempotencySlot`), so the change and its answer commit
    /// together. Without a keyed request this is `write(_:)`.
    public func write<Output: Sendable>(_ statements: [SQLStatement], answering output: Output) async throws {
        let slot = IdempotencySlot.current
        let answer = slot?.answer(for: output)
        try await write(statements + (answer.map { [$0.statement] } ?? []))
        if let answer { slot?.stored(answer.answer) }
    }

    /// Runs one changing statement that returns rows (`UPDATE … RETURNING`) durably.
    public func writeQuery(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        switch self {
        case .sqlite(let db): try await db.write { connection in try connection.query(sql, binds) }
        case .postgres(let db): try await db.transaction { connection in try await connection.query(sql, binds) }
        }
    }

    /// Runs statements in one durable transaction (group-committed on SQLite).
    public func write(_ statements: [SQLStatement]) async throws {
        switch self {
        case .sqlite(let db):
            try await db.write { connection in
                for statement in statements { try connection.execute(statement) }
            }
        case .postgres(let db):
            try await db.transaction { connection in
                for statement in statements { try await connection.execute(statement) }
            }
        }
    }
}
