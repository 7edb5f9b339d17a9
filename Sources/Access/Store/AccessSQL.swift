import Kernel

/// The access module's tables (migrations 201–299).
enum AccessSQL {
    static let migrations = [
        Migration(
            version: 201, name: "access: settings, api keys, login links, login sessions, audits, submissions",
            shared: [
                """
                CREATE TABLE access_settings (
                    name TEXT PRIMARY KEY,
                    value TEXT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE api_keys (
                    key_id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    role TEXT NOT NULL,
                    user_id TEXT,
                    deliverer_id TEXT,
                    prefix TEXT NOT NULL,
                    key_hash TEXT NOT NULL UNIQUE,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT,
                    revoked_at BIGINT,
                    last_used_at BIGINT,
                    replaced_by TEXT REFERENCES api_keys (key_id),
                    created_by TEXT
                )
                """,
                "CREATE INDEX api_keys_user_id ON api_keys (user_id)",
                """
                CREATE TABLE login_links (
                    token_hash TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    role TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    used_at BIGINT,
                    created_by TEXT
                )
                """,
                "CREATE INDEX login_links_expires_at ON login_links (expires_at)",
                """
                CREATE TABLE login_sessions (
                    session_id TEXT PRIMARY KEY,
                    token_hash TEXT NOT NULL UNIQUE,
                    user_id TEXT,
                    deliverer_id TEXT,
                    roles TEXT NOT NULL,
                    ip TEXT,
                    user_agent TEXT,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    last_seen_at BIGINT NOT NULL,
                    revoked BOOLEAN NOT NULL DEFAULT FALSE,
                    revoked_at BIGINT
                )
                """,
                "CREATE INDEX login_sessions_user_id ON login_sessions (user_id)",
                "CREATE INDEX login_sessions_expires_at ON login_sessions (expires_at)",
                """
                CREATE TABLE audits (
                    id TEXT PRIMARY KEY,
                    timestamp BIGINT NOT NULL,
                    user_id TEXT,
                    action TEXT NOT NULL,
                    status TEXT NOT NULL,
                    details TEXT NOT NULL,
                    ip TEXT
                )
                """,
                "CREATE INDEX audits_user_id ON audits (user_id, id)",
                "CREATE INDEX audits_action ON audits (action, id)",
                "CREATE INDEX audits_timestamp ON audits (timestamp)",
                """
                CREATE TABLE submissions (
                    id TEXT PRIMARY KEY,
                    automation_slug TEXT NOT NULL,
                    status TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    result TEXT,
                    error TEXT,
                    user_id TEXT,
                    principal TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    lease_owner TEXT,
                    lease_until BIGINT
                )
                """,
                "CREATE INDEX submissions_status ON submissions (status, created_at)",
                "CREATE INDEX submissions_user_id ON submissions (user_id, id)",
            ]),
        Migration(
            version: 202, name: "access: revocation epoch",
            shared: [
                "CREATE TABLE access_epoch (id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL)",
                "INSERT INTO access_epoch (id, epoch) VALUES (1, 0)",
            ]),
        Migration(version: 203, name: "access: a channel key's channel", shared: ["ALTER TABLE api_keys ADD COLUMN channel_id TEXT"]),
        Migration(
            version: 204, name: "access: the credential that started a login session",
            shared: [
                "ALTER TABLE login_sessions ADD COLUMN started_by TEXT",
                "CREATE INDEX login_sessions_started_by ON login_sessions (started_by)",
                "CREATE INDEX submissions_updated_at ON submissions (updated_at)",
            ]),
    ]

    /// Retention batches (each deletes at most `limit` rows older than `cutoff`, a row returned per row).
    static func pruneAudits(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        ("DELETE FROM audits WHERE id IN (SELECT id FROM audits WHERE timestamp < ? ORDER BY timestamp LIMIT ?) RETURNING 1", [.int(cutoff.milliseconds), .int(Int64(limit))])
    }

    /// Login links used or expired before `cutoff`.
    static func pruneLoginLinks(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            "DELETE FROM login_links WHERE token_hash IN (SELECT token_hash FROM login_links WHERE expires_at < ? OR used_at < ? LIMIT ?) RETURNING 1",
            [.int(cutoff.milliseconds), .int(cutoff.milliseconds), .int(Int64(limit))]
        )
    }

    /// Login sessions that ended before `cutoff`: expired, revoked, or idle past `idleSeconds`.
    static func pruneLoginSessions(cutoff: Timestamp, idleSeconds: Int64, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            """
            DELETE FROM login_sessions WHERE session_id IN (SELECT session_id FROM login_sessions
            WHERE expires_at < ? OR revoked_at < ? OR last_seen_at < ? LIMIT ?) RETURNING 1
            """,
            [.int(cutoff.milliseconds), .int(cutoff.milliseconds), .int(cutoff.milliseconds - idleSeconds * 1000), .int(Int64(limit))]
        )
    }

    /// Finished submissions last changed before `cutoff`.
    static func pruneSubmissions(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            """
            DELETE FROM submissions WHERE id IN (SELECT id FROM submissions WHERE status IN ('success', 'error') AND updated_at < ?
            ORDER BY updated_at LIMIT ?) RETURNING 1
            """, [.int(cutoff.milliseconds), .int(Int64(limit))]
        )
    }

    /// Bumped in the transaction of every revocation, so that servers caching credentials notice.
    static let bumpEpoch = SQLStatement("UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1")

    static let keyColumns = "key_id, name, role, user_id, deliverer_id, prefix, key_hash, created_at, expires_at, revoked_at, last_used_at, replaced_by, channel_id"

    static func key(_ row: SQLRow) throws -> APIKey {
        APIKey(
            id: try row.string(0), name: try row.string(1), role: AccessRole(rawValue: try row.string(2)) ?? .viewer,
            userID: try row.optionalString(3), delivererID: try row.optionalString(4), prefix: try row.string(5),
            hash: try row.string(6), createdAt: Timestamp(milliseconds: try row.int(7)),
            expiresAt: try row.optionalInt(8).map(Timestamp.init(milliseconds:)),
            revokedAt: try row.optionalInt(9).map(Timestamp.init(milliseconds:)),
            lastUsedAt: try row.optionalInt(10).map(Timestamp.init(milliseconds:)), replacedBy: try row.optionalString(11),
            channelID: try row.optionalString(12))
    }

    static func insertKey(_ key: APIKey, createdBy: String?) -> SQLStatement {
        SQLStatement(
            """
            INSERT INTO api_keys (key_id, name, role, user_id, deliverer_id, prefix, key_hash, created_at, expires_at, created_by, channel_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(key.id), .text(key.name), .text(key.role.rawValue), SQLValue(key.userID), SQLValue(key.delivererID),
                .text(key.prefix), .text(key.hash), .int(key.createdAt.milliseconds), SQLValue(key.expiresAt?.milliseconds),
                SQLValue(createdBy), SQLValue(key.channelID),
            ])
    }

    static let sessionColumns = "session_id, token_hash, user_id, deliverer_id, roles, ip, user_agent, created_at, expires_at, last_seen_at, revoked, started_by"

    static func loginSession(_ row: SQLRow) throws -> LoginSession {
        LoginSession(
            id: try row.string(0), tokenHash: try row.string(1), userID: try row.optionalString(2), delivererID: try row.optionalString(3),
            role: AccessRole(rawValue: try row.string(4)) ?? .viewer, ip: try row.optionalString(5), userAgent: try row.optionalString(6),
            createdAt: Timestamp(milliseconds: try row.int(7)), expiresAt: Timestamp(milliseconds: try row.int(8)),
            lastSeenAt: Timestamp(milliseconds: try row.int(9)), revoked: try row.bool(10), startedBy: try row.optionalString(11))
    }

    static func insertAudit(_ audit: AuthAudit, ip: String?) -> SQLStatement {
        SQLStatement(
            "INSERT INTO audits (id, timestamp, user_id, action, status, details, ip) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .text(audit.id), .int(audit.timestamp.milliseconds), SQLValue(audit.userID), .text(audit.action),
                .text(audit.status.rawValue), .text(audit.details), SQLValue(ip),
            ])
    }

    static let submissionColumns = "id, automation_slug, status, payload, result, error, principal, created_at, updated_at, attempts"

    static func submission(_ row: SQLRow) throws -> Submission {
        Submission(
            id: try row.string(0), automationSlug: try row.string(1),
            status: SubmissionStatus(rawValue: try row.string(2)) ?? .error, payload: JSONValue.parse(try row.string(3)),
            result: try row.optionalString(4), error: try row.optionalString(5),
            caller: principal(from: try row.string(6)), createdAt: Timestamp(milliseconds: try row.int(7)),
            updatedAt: Timestamp(milliseconds: try row.int(8)), attempts: Int(try row.int(9)))
    }

    /// The submitting principal, kept so that the job runs as it.
    static func principalText(_ caller: Caller) -> String {
        var object: [String: JSONValue] = [
            "kind": .string(caller.kind.rawValue), "role": .string(caller.role),
            "scopes": .object(caller.scopes.mapValues(JSONValue.string)),
        ]
        if let id = caller.id { object["id"] = .string(id) }
        if let credential = caller.credentialID { object["credential_id"] = .string(credential) }
        return JSONValue.object(object).canonicalText()
    }

    static func principal(from text: String) -> Caller {
        guard case .object(let object) = JSONValue.parse(text) else { return .anonymous }
        func string(_ key: String) -> String? { if case .string(let value) = object[key] { value } else { nil } }
        var scopes: [String: String] = [:]
        if case .object(let stored) = object["scopes"] {
            for (name, value) in stored { if case .string(let text) = value { scopes[name] = text } }
        }
        return Caller(
            kind: string("kind").flatMap(Caller.Kind.init(rawValue:)) ?? .anonymous, id: string("id"),
            credentialID: string("credential_id"), role: string("role") ?? "anonymous", scopes: scopes)
    }
}
