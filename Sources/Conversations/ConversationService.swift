import Foundation
import Kernel

/// Conversations as a chat bot keeps them: one live per (channel, contact), turns in order, consent,
/// expiry and erasure. Who may call: an admin, an owner or a channel key (the bot); other roles 403.
public final class ConversationService: Sendable {
    public let store: ConversationStore
    let clock: WallClock
    /// `CONVERSATION_TTL`: idle this long, a conversation is archived.
    public let ttlSeconds: Int64
    /// What chat bots wait for in each chat.
    public let dialogs: ChatDialogs

    public init(storage: Storage, clock: WallClock, ttlSeconds: Int64 = 86_400, readStaleness: Duration = .seconds(1), didCommitEvents: @escaping @Sendable () -> Void = {}) {
        self.store = ConversationStore(storage: storage, schema: ConversationSchema(), readStaleness: readStaleness, didCommitEvents: didCommitEvents)
        self.clock = clock
        self.ttlSeconds = ttlSeconds
        self.dialogs = ChatDialogs(storage: storage)
    }

    public static let migrations = ConversationSQL.migrations
    var storage: Storage { store.storage }

    static func authorize(_ caller: Caller) throws {
        guard caller.isAdmin || caller.role == "owner" || caller.role == "channel" else {
            throw ConversationError.forbidden("Conversations are kept by an admin, an owner or a channel key.")
        }
    }

    /// The live conversation of this contact on this channel, or a new one (`created`). Racing
    /// calls: the database's unique index on the live pair lets one insert win; the others read it.
    public func open(channel: String, contact: String, caller: Caller) async throws -> (conversation: Conversation, created: Bool) {
        try Self.authorize(caller)
        for field in [("channel", channel), ("contact", contact)] where field.1.trimmingCharacters(in: .whitespaces).isEmpty || field.1.count > 200 {
            throw ConversationError.invalid(field: field.0, detail: "\(field.0) is a non-empty string of at most 200 characters")
        }
        for _ in 0..<5 {
            let now = clock.now()
            if let live = try await liveConversation(channel: channel, contact: contact) {
                if live.expiresAt > now { return (live, false) }
                _ = try await store.update(live.id) { $0.archive(at: now) }
            }
            let new = Conversation.new(channel: channel, contact: contact, at: now, ttlSeconds: ttlSeconds)
            do {
                try await store.create(new, output: new)
                return (new, true)
            } catch StorageError.uniqueViolation {
                continue  // another request made it first: read it
            }
        }
        throw WriteContention(id: "\(channel)/\(contact)", attempts: 5)
    }

    func liveConversation(channel: String, contact: String) async throws -> Conversation? {
        guard let row = try await storage.query(
            "SELECT conversation_id FROM conversations WHERE channel = ? AND contact = ? AND archived_at IS NULL", [.text(channel), .text(contact)]).first
        else { return nil }
        return try await store.load(try row.string(0))
    }

    public func conversation(_ id: String, caller: Caller) async throws -> Conversation {
        try Self.authorize(caller)
        guard let conversation = try await store.load(id) else { throw ConversationError.notFound(id) }
        return conversation
    }

    public func turn(_ id: String, _ turn: Turn, caller: Caller) async throws -> Conversation {
        try Self.authorize(caller)
        let (now, ttl) = (clock.now(), ttlSeconds)
        return try await store.update(id, { conversation in _ = try conversation.apply(turn, at: now, ttlSeconds: ttl) }, output: { _, saved in saved })
    }

    public func consent(_ id: String, given: Bool, caller: Caller) async throws -> Conversation {
        try Self.authorize(caller)
        let (now, ttl) = (clock.now(), ttlSeconds)
        return try await store.update(id, { try $0.consent(given, at: now, ttlSeconds: ttl) }, output: { _, saved in saved })
    }

    public func expire(_ id: String, caller: Caller) async throws -> Conversation {
        try Self.authorize(caller)
        let now = clock.now()
        return try await store.update(id, { $0.archive(at: now) }, output: { _, saved in saved })
    }

    /// Archives every live conversation idle past its `expires_at` (the background sweep; each
    /// in its own transaction with its event, guarded by its version so a turn that came in
    /// meanwhile keeps it live). Returns how many it archived.
    @discardableResult
    public func archiveExpired(limit: Int = 500) async throws -> Int {
        let now = clock.now()
        let ids = try await storage.query(
            "SELECT conversation_id FROM conversations WHERE archived_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
            [.int(now.milliseconds), .int(Int64(limit))]
        ).map { try $0.string(0) }
        var archived = 0
        for id in ids {
            let saved = try await store.update(id) { conversation in
                if conversation.expiresAt <= now { conversation.archive(at: now) }
            }
            if saved.aggregate.archivedAt != nil { archived += 1 }
        }
        return archived
    }

    /// An archived conversation as the export shows it: the row, and how many messages it had.
    public struct Archived: Sendable {
        public var conversation: Conversation
        public var messages: Int
        public var userMessages: Int
    }

    /// Conversations archived at or after `since`, in (archived_at, id) order after `cursor`, a page at a time.
    public func archived(since: Timestamp, after cursor: (Timestamp, String)?, limit: Int) async throws -> [Archived] {
        let prefix = ConversationSQL.columns.split(separator: ",").map { "c." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")
        var sql = """
            SELECT \(prefix),
            (SELECT COUNT(*) FROM conversation_messages m WHERE m.conversation_id = c.conversation_id),
            (SELECT COUNT(*) FROM conversation_messages m WHERE m.conversation_id = c.conversation_id AND m.role = 'user')
            FROM conversations c WHERE c.archived_at IS NOT NULL AND c.archived_at >= ?
            """
        var binds: [SQLValue] = [.int(since.milliseconds)]
        if let (time, id) = cursor {
            sql += " AND (c.archived_at > ? OR (c.archived_at = ? AND c.conversation_id > ?))"
            binds += [.int(time.milliseconds), .int(time.milliseconds), .text(id)]
        }
        sql += " ORDER BY c.archived_at, c.conversation_id LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map { row in
            Archived(conversation: try ConversationSQL.conversation(row), messages: Int(try row.int(15)), userMessages: Int(try row.int(16)))
        }
    }

    /// Archived conversations of a contact, newest first (without their messages).
    public func history(contact: String, limit: Int, caller: Caller) async throws -> [Conversation] {
        try Self.authorize(caller)
        return try await storage.query(
            "SELECT \(ConversationSQL.columns) FROM conversations WHERE contact = ? AND archived_at IS NOT NULL ORDER BY created_at DESC, conversation_id DESC LIMIT ?",
            [.text(contact), .int(Int64(limit))]
        ).map(ConversationSQL.conversation)
    }

    /// Erases a contact: live and archived conversations, their messages, and what their events said.
    public func erase(contact: String, caller: Caller) async throws -> (conversations: Int, messages: Int) {
        try Self.authorize(caller)
        let ids = try await storage.query("SELECT conversation_id FROM conversations WHERE contact = ?", [.text(contact)]).map { try $0.string(0) }
        guard !ids.isEmpty else { return (0, 0) }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        let messages = try await storage.query("SELECT COUNT(*) FROM conversation_messages WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text))[0].int(0)
        try await storage.write(
            [
                SQLStatement("DELETE FROM conversation_messages WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text)),
                SQLStatement("DELETE FROM conversations WHERE conversation_id IN (\(marks))", ids.map(SQLValue.text)),
            ] + EventLog(dialect: storage.dialect).erase(sessionIDs: ids))
        for id in ids { store.invalidate(id, below: .max) }
        return (ids.count, Int(messages))
    }
}
