import Kernel

/// The conversations module's tables (migrations 401–499) and the statements that keep them.
/// Archived conversations stay in the same tables with `archived_at` set: archiving is one update,
/// and at most one row per (user_id, channel, contact) is live (a partial unique index), however
/// many requests race to create it, on one server or several.
enum ConversationSQL {
    static let migrations = [
        Migration(
            version: 401, name: "conversations and their messages",
            shared: [
                """
                CREATE TABLE conversations (
                    conversation_id TEXT PRIMARY KEY,
                    channel TEXT NOT NULL,
                    contact TEXT NOT NULL,
                    state TEXT NOT NULL,
                    turn_id BIGINT NOT NULL,
                    summary TEXT,
                    profile TEXT NOT NULL,
                    consent_given BOOLEAN NOT NULL,
                    consent_at BIGINT,
                    last_turn_digest TEXT,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    archived_at BIGINT,
                    version BIGINT NOT NULL
                )
                """,
                "CREATE UNIQUE INDEX conversations_live ON conversations (channel, contact) WHERE archived_at IS NULL",
                "CREATE INDEX conversations_contact ON conversations (contact, created_at)",
                "CREATE INDEX conversations_expiry ON conversations (expires_at) WHERE archived_at IS NULL",
                """
                CREATE TABLE conversation_messages (
                    conversation_id TEXT NOT NULL,
                    seq BIGINT NOT NULL,
                    role TEXT NOT NULL,
                    content TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (conversation_id, seq)
                )
                """,
            ]),
        Migration(
            version: 402, name: "what a chat bot waits for in each chat",
            shared: [
                """
                CREATE TABLE chat_dialogs (
                    channel TEXT NOT NULL,
                    chat TEXT NOT NULL,
                    state TEXT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    PRIMARY KEY (channel, chat)
                )
                """
            ]),
        Migration(
            version: 403, name: "conversations belong to an owner",
            shared: [
                "ALTER TABLE conversations ADD COLUMN user_id TEXT NOT NULL DEFAULT ''",
                "DROP INDEX conversations_live",
                "CREATE UNIQUE INDEX conversations_live ON conversations (user_id, channel, contact) WHERE archived_at IS NULL",
                "DROP INDEX conversations_contact",
                "CREATE INDEX conversations_contact ON conversations (user_id, contact, created_at)",
            ]),
    ]

    static let columns = """
        conversation_id, channel, contact, state, turn_id, summary, profile, consent_given, consent_at, last_turn_digest, \
        created_at, updated_at, expires_at, archived_at, version, user_id
        """

    static let versionQuery = "SELECT version FROM conversations WHERE conversation_id = ?"
    static let loadQueries = [
        "SELECT \(columns) FROM conversations WHERE conversation_id = ?",
        "SELECT seq, role, content, created_at FROM conversation_messages WHERE conversation_id = ? ORDER BY seq",
    ]

    static func decode(_ results: [[SQLRow]]) throws -> Conversation? {
        guard let row = results[0].first else { return nil }
        var conversation = try conversation(row)
        conversation.messages = try results[1].map { row in
            ConversationMessage(
                seq: try row.int(0), role: ConversationMessage.Role(rawValue: try row.string(1)) ?? .system, content: try row.string(2),
                createdAt: Timestamp(milliseconds: try row.int(3)))
        }
        return conversation
    }

    /// A conversation row without its messages.
    static func conversation(_ row: SQLRow) throws -> Conversation {
        Conversation(
            id: try row.string(0), userID: try row.string(15), channel: try row.string(1), contact: try row.string(2), state: ConversationState(rawValue: try row.string(3)) ?? .greeting,
            turnID: try row.int(4), summary: try row.optionalString(5), profile: LeadProfile.stored(try row.string(6)), consentGiven: try row.bool(7),
            consentAt: try row.optionalInt(8).map(Timestamp.init(milliseconds:)), lastTurnDigest: try row.optionalString(9),
            createdAt: Timestamp(milliseconds: try row.int(10)), updatedAt: Timestamp(milliseconds: try row.int(11)),
            expiresAt: Timestamp(milliseconds: try row.int(12)), archivedAt: try row.optionalInt(13).map(Timestamp.init(milliseconds:)),
            version: try row.int(14), messages: [])
    }

    /// Deletes these conversations and their messages.
    static func erase(_ ids: [String]) -> [SQLStatement] {
        guard !ids.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        return [
            SQLStatement("DELETE FROM conversation_messages WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text)),
            SQLStatement("DELETE FROM conversations WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text)),
        ]
    }

    static func profileText(_ profile: LeadProfile) -> String { String(buffer: JSONResponse.encode(profile, capacity: 256)) }

    static func changes(from before: Conversation?, to after: Conversation) -> [SQLStatement] {
        var statements: [SQLStatement] = []
        let values: [SQLValue] = [
            .text(after.state.rawValue), .int(after.turnID), SQLValue(after.summary), .text(profileText(after.profile)), .bool(after.consentGiven),
            SQLValue(after.consentAt?.milliseconds), SQLValue(after.lastTurnDigest), .int(after.updatedAt.milliseconds), .int(after.expiresAt.milliseconds),
            SQLValue(after.archivedAt?.milliseconds), .int(after.version),
        ]
        if let before {
            statements.append(
                SQLStatement(
                    """
                    UPDATE conversations SET state = ?, turn_id = ?, summary = ?, profile = ?, consent_given = ?, consent_at = ?, last_turn_digest = ?,
                    updated_at = ?, expires_at = ?, archived_at = ?, version = ? WHERE conversation_id = ? AND version = ?
                    """, values + [.text(after.id), .int(before.version)], expectedChanges: 1))
        } else {
            statements.append(
                SQLStatement(
                    """
                    INSERT INTO conversations (conversation_id, user_id, channel, contact, created_at, state, turn_id, summary, profile, consent_given, consent_at,
                    last_turn_digest, updated_at, expires_at, archived_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.text(after.id), .text(after.userID), .text(after.channel), .text(after.contact), .int(after.createdAt.milliseconds)] + values))
        }
        let added = after.messages.dropFirst(before?.messages.count ?? 0)
        if !added.isEmpty {
            var binds: [SQLValue] = []
            for message in added {
                binds += [.text(after.id), .int(message.seq), .text(message.role.rawValue), .text(message.content), .int(message.createdAt.milliseconds)]
            }
            statements.append(
                SQLStatement(
                    "INSERT INTO conversation_messages (conversation_id, seq, role, content, created_at) VALUES "
                        + Array(repeating: "(?, ?, ?, ?, ?)", count: added.count).joined(separator: ", "), binds))
        }
        return statements
    }
}

/// What the kernel's `AggregateStore` needs to keep conversations.
public struct ConversationSchema: AggregateSchema {
    public typealias Aggregate = Conversation

    public init() {}

    public var versionQuery: String { ConversationSQL.versionQuery }
    public var loadQueries: [String] { ConversationSQL.loadQueries }
    public func decode(_ results: [[SQLRow]]) throws -> Conversation? { try ConversationSQL.decode(results) }
    public func id(of aggregate: Conversation) -> String { aggregate.id }
    public func version(of aggregate: Conversation) -> Int64 { aggregate.version }
    public func setVersion(_ version: Int64, of aggregate: inout Conversation) { aggregate.version = version }
    public func changed(from before: Conversation, to after: Conversation) -> Bool { before != after }
    public func changes(from before: Conversation?, to after: Conversation) -> [SQLStatement] { ConversationSQL.changes(from: before, to: after) }
    public func events(from before: Conversation?, to after: Conversation) -> [NewEvent] { ConversationEvents.events(from: before, to: after) }
    public func notFound(_ id: String) -> any Error { ConversationError.notFound(id) }
}

public typealias ConversationStore = AggregateStore<ConversationSchema>

extension AggregateStore where Schema == ConversationSchema {
    /// A contact's archived conversations (of one tenant, or all), newest first, without messages.
    func archived(contact: String, userID: String?, limit: Int) async throws -> [Conversation] {
        var sql = "SELECT \(ConversationSQL.columns) FROM conversations WHERE contact = ? AND archived_at IS NOT NULL"
        var binds: [SQLValue] = [.text(contact)]
        if let userID {
            sql += " AND user_id = ?"
            binds.append(.text(userID))
        }
        sql += " ORDER BY created_at DESC, conversation_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map(ConversationSQL.conversation)
    }

    /// The ids of a contact's conversations (of one tenant, or all) and how many messages they hold.
    func contactConversations(_ contact: String, userID: String?) async throws -> (ids: [String], messages: Int) {
        var sql = "SELECT conversation_id FROM conversations WHERE contact = ?"
        var binds: [SQLValue] = [.text(contact)]
        if let userID {
            sql += " AND user_id = ?"
            binds.append(.text(userID))
        }
        let ids = try await storage.query(sql, binds).map { try $0.string(0) }
        guard !ids.isEmpty else { return ([], 0) }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        let messages = try await storage.query("SELECT COUNT(*) FROM conversation_messages WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text))[0].int(0)
        return (ids, Int(messages))
    }

    /// The id of the live conversation of (user_id, channel, contact), if there is one.
    func liveConversationID(userID: String, channel: String, contact: String) async throws -> String? {
        try await storage.query(
            "SELECT conversation_id FROM conversations WHERE user_id = ? AND channel = ? AND contact = ? AND archived_at IS NULL",
            [.text(userID), .text(channel), .text(contact)]
        ).first.map { try $0.string(0) }
    }
}
