import Kernel

/// The access module's SQL, on whichever database is open (the same statements on both).
struct AccessStore: Sendable {
    let storage: Storage

    // MARK: settings

    func setting(_ name: String) async throws -> String? {
        try await storage.query("SELECT value FROM access_settings WHERE name = ?", [.text(name)]).first?.string(0)
    }

    /// Sets `name` only when it is not set yet; returns whether this call set it.
    func setSettingIfAbsent(_ name: String, _ value: String, now: Timestamp) async throws -> Bool {
        do {
            try await storage.write([
                SQLStatement(
                    "INSERT INTO access_settings (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    [.text(name), .text(value), .int(now.milliseconds)], expectedChanges: 1)
            ])
            return true
        } catch StorageError.conflict {
            return false
        }
    }

    func setSetting(_ name: String, _ value: String, now: Timestamp) async throws {
        try await storage.write([
            SQLStatement(
                """
                INSERT INTO access_settings (name, value, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """,
                [.text(name), .text(value), .int(now.milliseconds)])
        ])
    }

    func epoch() async throws -> Int64 {
        try await storage.lookup("SELECT epoch FROM access_epoch WHERE id = 1").first?.int(0) ?? 0
    }

    // MARK: keys

    func key(hash: String) async throws -> APIKey? {
        try await storage.lookup("SELECT \(AccessSQL.keyColumns) FROM api_keys WHERE key_hash = ?", [.text(hash)]).first.map(AccessSQL.key)
    }

    func key(id: String) async throws -> APIKey? {
        try await storage.query("SELECT \(AccessSQL.keyColumns) FROM api_keys WHERE key_id = ?", [.text(id)]).first.map(AccessSQL.key)
    }

    /// Newest first, after the `cursor` key id.
    /// Keys newest first; with `userID`, only that tenant's keys of `roles`.
    func keys(userID: String? = nil, roles: [AccessRole] = [], after cursor: String?, limit: Int) async throws -> [APIKey] {
        var sql = "SELECT \(AccessSQL.keyColumns) FROM api_keys"
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let userID {
            conditions.append("user_id = ? AND role IN (\(Array(repeating: "?", count: roles.count).joined(separator: ", ")))")
            binds += [.text(userID)] + roles.map { .text($0.rawValue) }
        }
        if let cursor {
            conditions.append("key_id < ?")
            binds.append(.text(cursor))
        }
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY key_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map(AccessSQL.key)
    }

    func write(_ statements: [SQLStatement]) async throws {
        try await storage.write(statements)
    }

    /// With the request's idempotent answer, rendered from `output`, in the same transaction.
    func write<Output: Sendable>(_ statements: [SQLStatement], answering output: Output) async throws {
        try await storage.write(statements, answering: output)
    }

    static func revokeKey(_ id: String, at now: Timestamp, replacedBy: String? = nil) -> SQLStatement {
        SQLStatement(
            "UPDATE api_keys SET revoked_at = ?, replaced_by = COALESCE(?, replaced_by) WHERE key_id = ? AND revoked_at IS NULL",
            [.int(now.milliseconds), SQLValue(replacedBy), .text(id)], expectedChanges: 1)
    }

    /// `last_used_at` from memory, a batch at a time (never a write per request).
    func recordLastUsed(_ times: [String: Int64]) async throws {
        guard !times.isEmpty else { return }
        try await storage.write(
            times.map { id, time in
                SQLStatement(
                    "UPDATE api_keys SET last_used_at = ? WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                    [.int(time), .text(id), .int(time)])
            })
    }

    // MARK: login links and sessions

    static func insertLoginLink(hash: String, userID: String, role: AccessRole, now: Timestamp, expiresAt: Timestamp, createdBy: String?) -> SQLStatement {
        SQLStatement(
            "INSERT INTO login_links (token_hash, user_id, role, created_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
            [.text(hash), .text(userID), .text(role.rawValue), .int(now.milliseconds), .int(expiresAt.milliseconds), SQLValue(createdBy)])
    }

    /// The link behind a token hash: (user_id, role, expires_at, used_at).
    func loginLink(hash: String) async throws -> (userID: String, role: AccessRole, expiresAt: Timestamp, usedAt: Timestamp?)? {
        guard let row = try await storage.query("SELECT user_id, role, expires_at, used_at FROM login_links WHERE token_hash = ?", [.text(hash)]).first
        else { return nil }
        return (
            try row.string(0), AccessRole(rawValue: try row.string(1)) ?? .owner, Timestamp(milliseconds: try row.int(2)),
            try row.optionalInt(3).map(Timestamp.init(milliseconds:))
        )
    }

    /// Marks the link used, only if it still is unused and unexpired (single use under races).
    static func useLoginLink(hash: String, now: Timestamp) -> SQLStatement {
        SQLStatement(
            "UPDATE login_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            [.int(now.milliseconds), .text(hash), .int(now.milliseconds)], expectedChanges: 1)
    }

    static func insertLoginSession(_ session: LoginSession) -> SQLStatement {
        SQLStatement(
            """
            INSERT INTO login_sessions (session_id, token_hash, user_id, deliverer_id, roles, ip, user_agent, created_at, expires_at, last_seen_at, revoked, started_by)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(session.id), .text(session.tokenHash), SQLValue(session.userID), SQLValue(session.delivererID),
                .text(session.role.rawValue), SQLValue(session.ip), SQLValue(session.userAgent), .int(session.createdAt.milliseconds),
                .int(session.expiresAt.milliseconds), .int(session.lastSeenAt.milliseconds), .bool(false), SQLValue(session.startedBy),
            ])
    }

    func loginSession(hash: String) async throws -> LoginSession? {
        try await storage.lookup("SELECT \(AccessSQL.sessionColumns) FROM login_sessions WHERE token_hash = ?", [.text(hash)])
            .first.map(AccessSQL.loginSession)
    }

    func loginSession(id: String) async throws -> LoginSession? {
        try await storage.query("SELECT \(AccessSQL.sessionColumns) FROM login_sessions WHERE session_id = ?", [.text(id)])
            .first.map(AccessSQL.loginSession)
    }

    /// Newest first; only those of `userID`, or started by the credential `startedBy`, unless both
    /// are nil (an admin's view).
    func loginSessions(userID: String? = nil, startedBy: String? = nil, after cursor: String?, limit: Int) async throws -> [LoginSession] {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let userID {
            conditions.append("user_id = ?")
            binds.append(.text(userID))
        }
        if let startedBy {
            conditions.append("started_by = ?")
            binds.append(.text(startedBy))
        }
        if let cursor {
            conditions.append("session_id < ?")
            binds.append(.text(cursor))
        }
        var sql = "SELECT \(AccessSQL.sessionColumns) FROM login_sessions"
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY session_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map(AccessSQL.loginSession)
    }

    static func revokeLoginSession(id: String, at now: Timestamp) -> SQLStatement {
        SQLStatement(
            "UPDATE login_sessions SET revoked = ?, revoked_at = ? WHERE session_id = ? AND revoked = ?",
            [.bool(true), .int(now.milliseconds), .text(id), .bool(false)])
    }

    func touchLoginSession(id: String, at now: Timestamp) async throws {
        try await storage.write([
            SQLStatement("UPDATE login_sessions SET last_seen_at = ? WHERE session_id = ? AND last_seen_at < ?", [.int(now.milliseconds), .text(id), .int(now.milliseconds)])
        ])
    }

    // MARK: audits

    struct AuditFilter: Sendable {
        var userID: String?
        var action: String?
        var status: AuthAudit.Status?
        var since: Timestamp?
        var until: Timestamp?
    }

    /// Newest first, after the `cursor` audit id.
    func audits(_ filter: AuditFilter, after cursor: String?, limit: Int) async throws -> [AuthAudit] {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let value = filter.userID { conditions.append("user_id = ?"); binds.append(.text(value)) }
        if let value = filter.action { conditions.append("action = ?"); binds.append(.text(value)) }
        if let value = filter.status { conditions.append("status = ?"); binds.append(.text(value.rawValue)) }
        if let value = filter.since { conditions.append("timestamp >= ?"); binds.append(.int(value.milliseconds)) }
        if let value = filter.until { conditions.append("timestamp < ?"); binds.append(.int(value.milliseconds)) }
        if let cursor { conditions.append("id < ?"); binds.append(.text(cursor)) }
        var sql = "SELECT id, timestamp, user_id, action, status, details FROM audits"
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map { row in
            AuthAudit(
                id: try row.string(0), timestamp: Timestamp(milliseconds: try row.int(1)), userID: try row.optionalString(2),
                action: try row.string(3), status: AuthAudit.Status(rawValue: try row.string(4)) ?? .failure, details: try row.string(5))
        }
    }
}
