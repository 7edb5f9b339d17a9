import Kernel

/// The scanning module's table (migrations 501–599): one row per scan attempt, what it read and
/// how (`steps`), kept with the session it was made for.
enum ScanSQL {
    static let migrations = [
        Migration(
            version: 501, name: "scan attempts",
            shared: [
                """
                CREATE TABLE scan_attempts (
                    attempt_id TEXT PRIMARY KEY,
                    session_id TEXT NOT NULL,
                    user_id TEXT,
                    actor_id TEXT,
                    intent TEXT NOT NULL,
                    found BOOLEAN NOT NULL,
                    barcode TEXT,
                    format TEXT,
                    method TEXT,
                    confidence DOUBLE PRECISION NOT NULL,
                    package_id TEXT,
                    outcome TEXT NOT NULL,
                    candidates TEXT NOT NULL,
                    steps TEXT NOT NULL,
                    image_bytes BIGINT NOT NULL,
                    image_width INTEGER,
                    image_height INTEGER,
                    elapsed_ms DOUBLE PRECISION NOT NULL,
                    error TEXT,
                    created_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX scan_attempts_session ON scan_attempts (session_id, attempt_id)",
            ]),
        Migration(version: 502, name: "scanning: attempts by age, for retention", shared: ["CREATE INDEX scan_attempts_created_at ON scan_attempts (created_at)"]),
    ]

    /// Retention: attempts made before `cutoff`, at most `limit`, deleted.
    static func pruneBatch(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            "DELETE FROM scan_attempts WHERE attempt_id IN (SELECT attempt_id FROM scan_attempts WHERE created_at < ? ORDER BY created_at LIMIT ?) RETURNING 1",
            [.int(cutoff.milliseconds), .int(Int64(limit))]
        )
    }

    static let columns = """
        attempt_id, session_id, user_id, actor_id, intent, found, barcode, format, method, confidence, package_id, outcome, candidates, steps,
        image_bytes, image_width, image_height, elapsed_ms, error, created_at
        """

    static func insert(_ attempt: ScanAttempt) -> SQLStatement {
        SQLStatement(
            "INSERT INTO scan_attempts (\(columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                .text(attempt.id), .text(attempt.sessionID), SQLValue(attempt.userID), SQLValue(attempt.actorID), .text(attempt.intent.rawValue),
                .bool(attempt.found), SQLValue(attempt.barcode), SQLValue(attempt.format), SQLValue(attempt.method), .double(attempt.confidence),
                SQLValue(attempt.packageID), .text(attempt.outcome), .text(attempt.candidatesJSON), .text(attempt.stepsJSON),
                .int(Int64(attempt.imageBytes)), attempt.imageWidth.map { .int(Int64($0)) } ?? .null,
                attempt.imageHeight.map { .int(Int64($0)) } ?? .null, .double(attempt.elapsedMS), SQLValue(attempt.error),
                .int(attempt.createdAt.milliseconds),
            ])
    }

    static func page(sessionID: String, after cursor: String?, limit: Int) -> (String, [SQLValue]) {
        var sql = "SELECT \(columns) FROM scan_attempts WHERE session_id = ?"
        var binds: [SQLValue] = [.text(sessionID)]
        if let cursor {
            sql += " AND attempt_id < ?"
            binds.append(.text(cursor))
        }
        sql += " ORDER BY attempt_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return (sql, binds)
    }

    static func attempt(_ row: SQLRow) throws -> ScanAttempt {
        ScanAttempt(
            id: try row.string(0), sessionID: try row.string(1), userID: try row.optionalString(2), actorID: try row.optionalString(3),
            intent: ScanIntent(rawValue: try row.string(4)) ?? .lookup, found: try row.bool(5), barcode: try row.optionalString(6),
            format: try row.optionalString(7), method: try row.optionalString(8), confidence: try row.optionalDouble(9) ?? 0,
            packageID: try row.optionalString(10), outcome: try row.string(11), candidatesJSON: try row.string(12), stepsJSON: try row.string(13),
            imageBytes: Int(try row.int(14)), imageWidth: try row.optionalInt(15).map(Int.init), imageHeight: try row.optionalInt(16).map(Int.init),
            elapsedMS: try row.optionalDouble(17) ?? 0, error: try row.optionalString(18), createdAt: Timestamp(milliseconds: try row.int(19)))
    }
}

/// One recorded scan attempt.
public struct ScanAttempt: Sendable {
    public var id: String
    public var sessionID: String
    public var userID: String?
    public var actorID: String?
    public var intent: ScanIntent
    public var found: Bool
    public var barcode: String?
    public var format: String?
    public var method: String?
    public var confidence: Double
    public var packageID: String?
    /// `none`, `added`, `duplicate`, `delivered`, `rejected` (the change was refused), `error` (the image was).
    public var outcome: String
    public var candidatesJSON: String
    public var stepsJSON: String
    public var imageBytes: Int
    public var imageWidth: Int?
    public var imageHeight: Int?
    public var elapsedMS: Double
    public var error: String?
    public var createdAt: Timestamp
}
