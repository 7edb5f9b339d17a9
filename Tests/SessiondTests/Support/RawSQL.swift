import Kernel

/// Runs SQL straight against a test's database, the way someone with database access could.
func executeRaw(_ sql: String, on location: DatabaseLocation) async throws {
    switch location {
    case .sqlite(let path):
        let db = try SQLiteDatabase(path: path, logger: TestDatabase.logger)
        defer { db.close() }
        try await db.withWriterConnection { connection in try connection.execute(sql) }
    case .postgres(let postgres):
        try await TestDatabase.withPostgres(postgres) { db in try await db.read { connection in try await connection.execute(sql) } }
    }
}

/// Reads rows straight from a test's database.
func queryRaw(_ sql: String, on location: DatabaseLocation) async throws -> [SQLRow] {
    switch location {
    case .sqlite(let path):
        let db = try SQLiteDatabase(path: path, logger: TestDatabase.logger)
        defer { db.close() }
        return try await db.read { connection in try connection.query(sql) }
    case .postgres(let postgres):
        return try await TestDatabase.withPostgres(postgres) { db in try await db.read { connection in try await connection.query(sql) } }
    }
}
