import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle

/// Where PostgreSQL lives, parsed from a `postgres://user:password@host:port/database` URL.
public struct PostgresLocation: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool

    public init(url: String) throws(ConfigurationError) {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme),
            let host = components.host, !host.isEmpty
        else {
            throw ConfigurationError(["database: \(Self.redacted(url)) is not a postgres://user:password@host:port/database URL"])
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user.map { $0.removingPercentEncoding ?? $0 } ?? "postgres"
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.username : path
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value
        self.requireTLS = sslmode == "require" || sslmode == "verify-full"
    }

    /// The URL with its password hidden, for logs and error messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "postgres://***"
    }

    public func with(database: String) -> PostgresLocation {
        var copy = self
        copy.database = database
        return copy
    }
}

/// PostgreSQL through a pool of connections. PostgreSQL batches concurrent commits itself, so a
/// write is one statement (or an ordinary transaction); no row locks are taken. Serialisation per
/// aggregate comes from the stores: a per-key lock inside the process, and a version guard on every
/// save that makes a write computed from a stale copy fail, be reloaded and retried.
public final class PostgresDatabase: Service, Sendable {
    public let client: PostgresClient
    public let location: PostgresLocation
    let logger: Logger

    public init(location: PostgresLocation, maximumConnections: Int = 16, logger: Logger) {
        var configuration = PostgresClient.Configuration(
            host: location.host,
            port: location.port,
            username: location.username,
            password: location.password,
            database: location.database,
            tls: location.requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.maximumConnections = maximumConnections
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.location = location
        self.logger = logger
    }

    /// The pool's connection loop; must run (in the service group) for queries to be served.
    public func run() async {
        await client.run()
    }

    public func read<T: Sendable>(_ body: (PostgresSQL) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await body(PostgresSQL(connection: connection, logger: logger))
        }
    }

    /// Runs `body` in a transaction; the error `body` throws is rethrown as it is (not wrapped).
    ///
    /// A connection never goes back to the pool inside a transaction: when anything fails —
    /// including the task being cancelled half-way, which makes the next statement fail — the
    /// ROLLBACK runs in a task of its own that the cancellation does not reach, and if even that
    /// fails the connection is closed. (Before, a cancelled task could leave its connection "idle
    /// in transaction": the pool's next user then worked inside that never-committed transaction
    /// and others waited for ever on its locks.)
    public func transaction<T: Sendable>(_ body: (PostgresSQL) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            let sql = PostgresSQL(connection: connection, logger: logger)
            do {
                try await sql.execute("BEGIN")
                let value = try await body(sql)
                try await sql.execute("COMMIT")
                return value
            } catch {
                await Self.rollBack(sql, logger: logger)
                throw error
            }
        }
    }

    static func rollBack(_ sql: PostgresSQL, logger: Logger) async {
        await Task {
            do {
                try await sql.execute("ROLLBACK")
            } catch {
                logger.warning("rollback failed; closing the connection", metadata: ["error": "\(error)"])
                try? await sql.connection.close()
            }
        }.value
    }
}

/// One PostgreSQL connection, with the same `query`/`execute` shape as `SQLiteConnection`.
public struct PostgresSQL: Sendable {
    let connection: PostgresConnection
    let logger: Logger

    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        let rows = try await connection.query(try Self.query(sql, binds), logger: logger)
        var result: [SQLRow] = []
        for try await row in rows {
            var values: [SQLValue] = []
            values.reserveCapacity(row.count)
            for cell in row {
                values.append(try Self.value(of: cell))
            }
            result.append(SQLRow(values))
        }
        return result
    }

    public func execute(_ sql: String, _ binds: [SQLValue] = []) async throws {
        do {
            let result = try await connection.query(try Self.query(sql, binds), logger: logger)
            for try await _ in result {}
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            throw StorageError.uniqueViolation(error.serverInfo?[.message] ?? sql)
        }
    }

    /// Runs a statement; a guarded one (`expectedChanges`) counts its rows through `RETURNING 1`.
    public func execute(_ statement: SQLStatement) async throws {
        guard let expected = statement.expectedChanges else {
            return try await execute(statement.sql, statement.binds)
        }
        let changed = try await query(statement.sql + " RETURNING 1", statement.binds).count
        if expected != changed {
            throw StorageError.conflict(statement.sql)
        }
    }

    /// Runs statements as one statement, which PostgreSQL applies atomically without BEGIN/COMMIT:
    /// each becomes a data-modifying CTE. Statements with `expectedChanges` are checked in the
    /// final SELECT, where a mismatch divides by zero and so aborts the whole statement; that is
    /// reported as `StorageError.conflict`. One round trip instead of one per statement.
    ///
    /// The statements must touch different rows (PostgreSQL runs CTEs against one snapshot).
    public func executeAtomically(_ statements: [SQLStatement]) async throws {
        guard !statements.isEmpty else { return }
        var parts: [String] = []
        var binds: [SQLValue] = []
        var checks: [String] = []
        for (index, statement) in statements.enumerated() {
            if let expected = statement.expectedChanges {
                parts.append("c\(index) AS (\(statement.sql) RETURNING 1)")
                checks.append("1 / (CASE WHEN (SELECT count(*) FROM c\(index)) = \(expected) THEN 1 ELSE 0 END)")
            } else {
                parts.append("c\(index) AS (\(statement.sql))")
            }
            binds += statement.binds
        }
        let sql = "WITH " + parts.joined(separator: ", ") + " SELECT " + (checks.isEmpty ? "1" : checks.joined(separator: " + "))
        do {
            try await execute(sql, binds)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "22012" {
            throw StorageError.conflict(statements.first { $0.expectedChanges != nil }?.sql ?? sql)
        }
    }

    static func query(_ sql: String, _ binds: [SQLValue]) throws -> PostgresQuery {
        var bindings = PostgresBindings(capacity: binds.count)
        for value in binds {
            switch value {
            case .null: bindings.appendNull()
            case .int(let int): bindings.append(int)
            case .double(let double): bindings.append(double)
            case .text(let text): bindings.append(text)
            case .bool(let bool): bindings.append(bool)
            }
        }
        return PostgresQuery(unsafeSQL: SQLDialect.postgres.placeholders(sql), binds: bindings)
    }

    static func value(of cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .int(try cell.decode(Int64.self))
        case .float4, .float8, .numeric: return .double(try cell.decode(Double.self))
        case .bool: return .bool(try cell.decode(Bool.self))
        default: return .text(try cell.decode(String.self))
        }
    }
}
