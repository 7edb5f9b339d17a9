import Foundation
import Kernel

/// Conversations as a chat bot keeps them: one live per (user_id, channel, contact), turns in order,
/// consent, expiry and erasure, each within its owner's tenant (`ConversationAccess` says who may).
public final class ConversationService: Sendable {
    public let store: ConversationStore
    let clock: WallClock
    /// `CONVERSATION_TTL`: idle this long, a conversation is archived.
    public let ttlSeconds: Int64
    /// What chat bots wait for in each chat.
    public let dialogs: ChatDialogs
    /// What other modules keep of a contact (a tenant's, or every tenant's when nil), to be erased
    /// with it: given by the composition root (chat updates and sent texts of the channels).
    let contactErasure: @Sendable (_ userID: String?, _ contact: String) -> [SQLStatement]

    public init(
        storage: Storage, clock: WallClock, ttlSeconds: Int64 = 86_400, readStaleness: Duration = .seconds(1),
        didCommitEvents: @escaping @Sendable () -> Void = {},
        contactErasure: @escaping @Sendable (_ userID: String?, _ contact: String) -> [SQLStatement] = { _, _ in [] }
    ) {
        self.store = ConversationStore(storage: storage, schema: ConversationSchema(), readStaleness: readStaleness, didCommitEvents: didCommitEvents)
        self.clock = clock
        self.ttlSeconds = ttlSeconds
        self.dialogs = ChatDialogs(storage: storage)
        self.contactErasure = contactErasure
    }

    public static let migrations = ConversationSQL.migrations
    var storage: Storage { store.storage }

    /// The live conversation of this contact on this channel of the tenant, or a new one
    /// (`created`). Racing calls: the database's unique index on the live (user_id, channel,
    /// contact) lets one insert win; the others read it. An id taken in the same millisecond (the
    /// same contact of another tenant) takes the next millisecond.
    public func open(userID requested: String? = nil, channel: String, contact: String, caller: Caller) async throws -> (conversation: Conversation, created: Bool) {
        let userID = try ConversationAccess.owner(ofNew: caller, requested: requested)
        for field in [("channel", channel), ("contact", contact)] where field.1.trimmingCharacters(in: .whitespaces).isEmpty || field.1.count > 200 {
            throw ConversationError.invalid(field: field.0, detail: "\(field.0) is a non-empty string of at most 200 characters")
        }
        var idTime: Int64?
        for _ in 0..<8 {
            let now = clock.now()
            if let live = try await liveConversation(userID: userID, channel: channel, contact: contact) {
                if live.expiresAt > now { return (live, false) }
                _ = try await store.update(live.id) { $0.archive(at: now) }
            }
            let new = Conversation.new(userID: userID, channel: channel, contact: contact, at: now, idTime: idTime.map { max($0, now.milliseconds) }, ttlSeconds: ttlSeconds)
            do {
                try await store.create(new, output: new)
                return (new, true)
            } catch StorageError.uniqueViolation {
                // Another request made it first (read it), or the id is taken: try the next millisecond.
                if try await liveConversation(userID: userID, channel: channel, contact: contact) == nil {
                    idTime = (Int64(new.id.split(separator: ":").last ?? "") ?? now.milliseconds) + 1
                }
                continue
            }
        }
        throw WriteContention(id: "\(channel)/\(contact)", attempts: 8)
    }

    func liveConversation(userID: String, channel: String, contact: String) async throws -> Conversation? {
        guard let id = try await store.liveConversationID(userID: userID, channel: channel, contact: contact) else { return nil }
        return try await store.load(id)
    }

    public func conversation(_ id: String, caller: Caller) async throws -> Conversation {
        _ = try ConversationAccess.tenant(caller, .read)
        guard let conversation = try await store.load(id) else { throw ConversationError.notFound(id) }
        try ConversationAccess.check(conversation, caller, .read)
        return conversation
    }

    public func turn(_ id: String, _ turn: Turn, caller: Caller) async throws -> Conversation {
        _ = try ConversationAccess.tenant(caller, .change)
        let (now, ttl) = (clock.now(), ttlSeconds)
        return try await store.update(id, { conversation in
            try ConversationAccess.check(conversation, caller, .change)
            _ = try conversation.apply(turn, at: now, ttlSeconds: ttl)
        }, output: { _, saved in saved })
    }

    public func consent(_ id: String, given: Bool, caller: Caller) async throws -> Conversation {
        _ = try ConversationAccess.tenant(caller, .change)
        let (now, ttl) = (clock.now(), ttlSeconds)
        return try await store.update(id, { conversation in
            try ConversationAccess.check(conversation, caller, .change)
            try conversation.consent(given, at: now, ttlSeconds: ttl)
        }, output: { _, saved in saved })
    }

    public func expire(_ id: String, caller: Caller) async throws -> Conversation {
        _ = try ConversationAccess.tenant(caller, .change)
        let now = clock.now()
        return try await store.update(id, { conversation in
            try ConversationAccess.check(conversation, caller, .change)
            conversation.archive(at: now)
        }, output: { _, saved in saved })
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

    /// Conversations archived at or after `since` (of one tenant, or all), in (archived_at, id)
    /// order after `cursor`, a page at a time.
    public func archived(since: Timestamp, userID: String? = nil, after cursor: (Timestamp, String)?, limit: Int) async throws -> [Archived] {
        let prefix = ConversationSQL.columns.split(separator: ",").map { "c." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")
        var sql = """
            SELECT \(prefix),
            (SELECT COUNT(*) FROM conversation_messages m WHERE m.conversation_id = c.conversation_id),
            (SELECT COUNT(*) FROM conversation_messages m WHERE m.conversation_id = c.conversation_id AND m.role = 'user')
            FROM conversations c WHERE c.archived_at IS NOT NULL AND c.archived_at >= ?
            """
        var binds: [SQLValue] = [.int(since.milliseconds)]
        if let userID {
            sql += " AND c.user_id = ?"
            binds.append(.text(userID))
        }
        if let (time, id) = cursor {
            sql += " AND (c.archived_at > ? OR (c.archived_at = ? AND c.conversation_id > ?))"
            binds += [.int(time.milliseconds), .int(time.milliseconds), .text(id)]
        }
        sql += " ORDER BY c.archived_at, c.conversation_id LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map { row in
            Archived(conversation: try ConversationSQL.conversation(row), messages: Int(try row.int(16)), userMessages: Int(try row.int(17)))
        }
    }

    /// Archived conversations of a contact, newest first (without their messages), within the
    /// caller's tenant (an admin: every tenant's, or `userID`'s).
    public func history(contact: String, userID requested: String? = nil, limit: Int, caller: Caller) async throws -> [Conversation] {
        let tenant = try ConversationAccess.tenant(caller, .read, requested: requested)
        return try await store.archived(contact: contact, userID: tenant, limit: limit)
    }

    /// Erases a contact within the caller's tenant (an admin: every tenant's, or `userID`'s): live
    /// and archived conversations, their messages, what their events said, stored idempotent
    /// answers that name the contact, and what other modules keep of it (`contactErasure`: a
    /// chat's raw updates and sent texts), in one transaction.
    public func erase(contact: String, userID requested: String? = nil, caller: Caller) async throws -> (conversations: Int, messages: Int) {
        let tenant = try ConversationAccess.tenant(caller, .change, requested: requested)
        let alongside = contactErasure(tenant, contact) + [IdempotencyStore.eraseAnswers(containing: "\"contact\":" + JSONValue.string(contact).canonicalText())]
        let (ids, messages) = try await store.contactConversations(contact, userID: tenant)
        let erasing = ConversationSQL.erase(ids) + EventLog(dialect: storage.dialect).erase(sessionIDs: ids)
        try await storage.write(erasing + alongside)
        for id in ids { store.invalidate(id, below: .max) }
        return (ids.count, messages)
    }
}
