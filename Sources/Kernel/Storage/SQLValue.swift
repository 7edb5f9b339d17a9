/// A value bound to or read from a SQL statement, the same on SQLite and PostgreSQL.
///
/// Stores turn domain values into these and back; the drivers turn these into their own types.
/// Booleans are bound as `BOOLEAN` on PostgreSQL and as 0/1 on SQLite, and both read back as `.bool`
/// or `.int`, so readers use `bool(at:)` rather than matching the case.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case bool(Bool)
}

extension SQLValue {
    public init(_ value: String?) { self = value.map(SQLValue.text) ?? .null }
    public init(_ value: Int64?) { self = value.map(SQLValue.int) ?? .null }
    public init(_ value: Double?) { self = value.map(SQLValue.double) ?? .null }
    public init(_ value: Bool) { self = .bool(value) }
}

/// One result row, read by column position (the store wrote the SELECT, so it knows the order).
public struct SQLRow: Sendable {
    public var values: [SQLValue]

    public init(_ values: [SQLValue]) { self.values = values }

    public func string(_ index: Int) throws -> String {
        guard case .text(let value) = values[index] else { throw SQLDecodingError(index: index, expected: "text", found: values[index]) }
        return value
    }

    public func optionalString(_ index: Int) throws -> String? {
        if case .null = values[index] { return nil }
        return try string(index)
    }

    public func int(_ index: Int) throws -> Int64 {
        switch values[index] {
        case .int(let value): return value
        case .bool(let value): return value ? 1 : 0
        default: throw SQLDecodingError(index: index, expected: "integer", found: values[index])
        }
    }

    public func optionalInt(_ index: Int) throws -> Int64? {
        if case .null = values[index] { return nil }
        return try int(index)
    }

    public func optionalDouble(_ index: Int) throws -> Double? {
        switch values[index] {
        case .null: return nil
        case .double(let value): return value
        case .int(let value): return Double(value)
        default: throw SQLDecodingError(index: index, expected: "double", found: values[index])
        }
    }

    public func bool(_ index: Int) throws -> Bool {
        switch values[index] {
        case .bool(let value): return value
        case .int(let value): return value != 0
        default: throw SQLDecodingError(index: index, expected: "boolean", found: values[index])
        }
    }
}

public struct SQLDecodingError: Error, CustomStringConvertible {
    public var index: Int
    public var expected: String
    public var found: SQLValue
    public var description: String { "column \(index): expected \(expected), found \(found)" }
}

/// A statement with positional `?` parameters. PostgreSQL's driver rewrites them to `$1…$n`.
public struct SQLStatement: Sendable {
    public var sql: String
    public var binds: [SQLValue]
    /// When set, the statement must change exactly this many rows or the write fails with
    /// `StorageError.conflict` (used for optimistic version checks).
    public var expectedChanges: Int?

    public init(_ sql: String, _ binds: [SQLValue] = [], expectedChanges: Int? = nil) {
        self.sql = sql
        self.binds = binds
        self.expectedChanges = expectedChanges
    }
}

public enum StorageError: Error, CustomStringConvertible {
    /// A guarded statement changed an unexpected number of rows: someone else wrote first.
    case conflict(String)
    case uniqueViolation(String)
    case closed
    /// SQLite refused a statement run through its C API (`SQLiteConnection.lookup`).
    case sqlite(code: Int32, message: String)

    public var description: String {
        switch self {
        case .conflict(let sql): "write conflict on: \(sql)"
        case .uniqueViolation(let detail): "unique constraint violated: \(detail)"
        case .closed: "database is closed"
        case .sqlite(let code, let message): "SQLite error \(code): \(message)"
        }
    }
}
