import Kernel

/// A channel as its connection needs it: the row with its secrets still sealed, and the offset.
struct ChannelRuntimeRow: Sendable {
    var channel: Channel
    var tokenSealed: String
    var webhookSecretSealed: String
    var proxyPasswordSealed: String?
    var pollOffset: Int64
    var deleted: Bool
}

/// One stored update, not yet handled.
struct StoredUpdate: Sendable {
    var updateID: Int64
    var body: String
}

/// One outbox message due to be sent.
struct PendingMessage: Sendable {
    var id: String
    var chatID: Int64?
    var payload: String
    var counts: Bool
    var attempts: Int
    var nextAttemptAt: Int64
}

/// The channels module's queries. The same SQL on both databases.
struct ChannelStore: Sendable {
    let storage: Storage

    func channel(_ id: String) async throws -> Channel? {
        try await storage.query("SELECT \(ChannelSQL.channelColumns) FROM channels WHERE channel_id = ? AND deleted_at IS NULL", [.text(id)])
            .first.map(ChannelSQL.channel)
    }

    func runtimeRow(_ id: String) async throws -> ChannelRuntimeRow? {
        let sql = """
            SELECT \(ChannelSQL.channelColumns), token_sealed, webhook_secret_sealed, proxy_password_sealed, poll_offset, deleted_at
            FROM channels WHERE channel_id = ?
            """
        guard let row = try await storage.query(sql, [.text(id)]).first else { return nil }
        return ChannelRuntimeRow(
            channel: try ChannelSQL.channel(row), tokenSealed: try row.string(23), webhookSecretSealed: try row.string(24),
            proxyPasswordSealed: try row.optionalString(25), pollOffset: try row.int(26), deleted: try row.optionalInt(27) != nil)
    }

    /// Channels visible in a listing: all (nil) or one user's, or one channel's.
    func channels(userID: String?, channelID: String?, after cursor: String?, limit: Int) async throws -> [Channel] {
        var sql = "SELECT \(ChannelSQL.channelColumns) FROM channels WHERE deleted_at IS NULL"
        var binds: [SQLValue] = []
        if let userID {
            sql += " AND user_id = ?"
            binds.append(.text(userID))
        }
        if let channelID {
            sql += " AND channel_id = ?"
            binds.append(.text(channelID))
        }
        if let cursor {
            sql += " AND channel_id > ?"
            binds.append(.text(cursor))
        }
        sql += " ORDER BY channel_id LIMIT \(limit)"
        return try await storage.query(sql, binds).map(ChannelSQL.channel)
    }

    func liveChannel(botKey: String) async throws -> String? {
        try await storage.query("SELECT channel_id FROM channels WHERE bot_key = ? AND deleted_at IS NULL", [.text(botKey)]).first?.string(0)
    }

    /// Channels this server should keep connected.
    func wantedChannels() async throws -> [(id: String, generation: Int64)] {
        try await storage.query("SELECT channel_id, generation FROM channels WHERE desired = 'connected' AND deleted_at IS NULL").map {
            (try $0.string(0), try $0.int(1))
        }
    }

    /// Counters from the rows themselves (so they survive restarts and never drift): distinct
    /// updates kept, messages Telegram accepted, failed calls and updates; the latest update in or message out.
    func stats(_ id: String) async throws -> ChannelStats {
        let rows = try await storage.query(
            """
            SELECT (SELECT COUNT(*) FROM channel_updates WHERE channel_id = ?),
                   (SELECT COUNT(*) FROM channel_outbox WHERE channel_id = ? AND status = 'sent' AND counts),
                   (SELECT COUNT(*) FROM channel_updates WHERE channel_id = ? AND error IS NOT NULL) + errors,
                   last_activity_at,
                   (SELECT MAX(received_at) FROM channel_updates WHERE channel_id = ?),
                   (SELECT MAX(sent_at) FROM channel_outbox WHERE channel_id = ? AND status = 'sent')
            FROM channels WHERE channel_id = ?
            """, [.text(id), .text(id), .text(id), .text(id), .text(id), .text(id)])
        guard let row = rows.first else { throw ChannelError.notFound("No channel \(id).") }
        let latest = [try row.optionalInt(3), try row.optionalInt(4), try row.optionalInt(5)].compactMap { $0 }.max()
        return ChannelStats(
            channelID: id, updatesIn: try row.int(0), messagesOut: try row.int(1), errors: try row.int(2),
            lastActivityAt: latest.map(Timestamp.init(milliseconds:)))
    }

    // MARK: status

    /// Records a new status (`since` moves only when the status changes); an error also records its
    /// text and time and counts in `errors`.
    func setStatus(_ id: String, _ status: Channel.Status, error: String?, at now: Timestamp) -> [SQLStatement] {
        var sets = "since = CASE WHEN status = ? THEN since ELSE ? END, status = ?, updated_at = ?"
        var binds: [SQLValue] = [.text(status.rawValue), .int(now.milliseconds), .text(status.rawValue), .int(now.milliseconds)]
        if let error {
            sets += ", last_error = ?, last_error_at = ?, errors = errors + 1"
            binds += [.text(error), .int(now.milliseconds)]
        }
        return [SQLStatement("UPDATE channels SET \(sets) WHERE channel_id = ?", binds + [.text(id)])]
    }

    func countError(_ id: String) async throws {
        try await storage.write([SQLStatement("UPDATE channels SET errors = errors + 1 WHERE channel_id = ?", [.text(id)])])
    }

    func saveBot(_ id: String, _ bot: Channel.Bot) async throws {
        try await storage.write([
            SQLStatement(
                "UPDATE channels SET bot_id = ?, bot_username = ?, bot_first_name = ? WHERE channel_id = ?",
                [.int(bot.id), SQLValue(bot.username), .text(bot.firstName), .text(id)])
        ])
    }

    // MARK: lease

    /// Takes or renews the channel's poller lease; the generation it holds, or nil when another node holds it.
    func lease(_ id: String, owner: String, ttlMilliseconds: Int64, now: Timestamp) async throws -> Int64? {
        let rows = try await storage.writeQuery(
            """
            UPDATE channels SET
                lease_generation = CASE WHEN lease_owner = ? AND lease_expires_at >= ? THEN lease_generation ELSE lease_generation + 1 END,
                lease_owner = ?, lease_expires_at = ?
            WHERE channel_id = ? AND deleted_at IS NULL AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < ?)
            RETURNING lease_generation
            """,
            [
                .text(owner), .int(now.milliseconds), .text(owner), .int(now.milliseconds + ttlMilliseconds), .text(id), .text(owner),
                .int(now.milliseconds),
            ])
        return try rows.first?.int(0)
    }

    func releaseLease(_ id: String, owner: String) async throws {
        try await storage.write([
            SQLStatement("UPDATE channels SET lease_owner = NULL, lease_expires_at = NULL WHERE channel_id = ? AND lease_owner = ?", [.text(id), .text(owner)])
        ])
    }

    /// The statement that fails the transaction unless this node still holds the lease at `generation`.
    static func fence(_ id: String, generation: Int64) -> SQLStatement {
        SQLStatement("UPDATE channels SET lease_generation = lease_generation WHERE channel_id = ? AND lease_generation = ?", [.text(id), .int(generation)], expectedChanges: 1)
    }

    // MARK: inbox

    /// Stores received updates (a repeated `update_id` is ignored) and, for polling, the next offset, in one transaction.
    /// (A webhook update touches no channel row: `last_activity_at` is also read from the updates kept.)
    static func store(_ updates: [(id: Int64, chatID: Int64?, body: String)], channelID: String, offset: Int64?, at now: Timestamp) -> [SQLStatement] {
        var statements = updates.map { update in
            SQLStatement(
                "INSERT INTO channel_updates (channel_id, update_id, chat_id, body, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id, update_id) DO NOTHING",
                [.text(channelID), .int(update.id), SQLValue(update.chatID), .text(update.body), .int(now.milliseconds)])
        }
        if let offset {
            statements.append(
                SQLStatement("UPDATE channels SET poll_offset = ?, last_activity_at = ? WHERE channel_id = ?", [.int(offset), .int(now.milliseconds), .text(channelID)]))
        }
        return statements
    }

    func unhandled(_ channelID: String, limit: Int) async throws -> [StoredUpdate] {
        try await storage.query(
            "SELECT update_id, body FROM channel_updates WHERE channel_id = ? AND handled_at IS NULL ORDER BY update_id LIMIT \(limit)", [.text(channelID)]
        ).map { StoredUpdate(updateID: try $0.int(0), body: try $0.string(1)) }
    }

    // MARK: outbox

    /// Pending messages after `cursor` (a message id; "" for all), oldest first.
    func pending(_ channelID: String, after cursor: String, limit: Int) async throws -> [PendingMessage] {
        try await storage.query(
            """
            SELECT message_id, chat_id, payload, counts, attempts, next_attempt_at FROM channel_outbox
            WHERE channel_id = ? AND status = 'pending' AND message_id > ? ORDER BY message_id LIMIT \(limit)
            """, [.text(channelID), .text(cursor)]
        ).map {
            PendingMessage(id: try $0.string(0), chatID: try $0.optionalInt(1), payload: try $0.string(2), counts: try $0.bool(3), attempts: Int(try $0.int(4)), nextAttemptAt: try $0.int(5))
        }
    }

    func markSent(_ id: String, at now: Timestamp) -> SQLStatement {
        SQLStatement("UPDATE channel_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1 WHERE message_id = ?", [.int(now.milliseconds), .text(id)])
    }

    func markFailed(_ id: String, error: String, at now: Timestamp) -> SQLStatement {
        SQLStatement(
            "UPDATE channel_outbox SET status = 'failed', last_error = ?, sent_at = ?, attempts = attempts + 1 WHERE message_id = ?",
            [.text(error), .int(now.milliseconds), .text(id)])
    }

    func retryLater(_ id: String, error: String, at next: Int64) -> SQLStatement {
        SQLStatement("UPDATE channel_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE message_id = ?", [.text(error), .int(next), .text(id)])
    }

    // MARK: invites and links

    func invites(_ channelID: String, after cursor: String?, limit: Int) async throws -> [Invite] {
        var sql = "SELECT \(ChannelSQL.inviteColumns) FROM channel_invites WHERE channel_id = ?"
        var binds: [SQLValue] = [.text(channelID)]
        if let cursor {
            sql += " AND invite_id > ?"
            binds.append(.text(cursor))
        }
        return try await storage.query(sql + " ORDER BY invite_id LIMIT \(limit)", binds).map(ChannelSQL.invite)
    }

    func invite(_ id: String, channelID: String) async throws -> (invite: Invite, tokenSealed: String)? {
        guard let row = try await storage.query(
            "SELECT \(ChannelSQL.inviteColumns), token_sealed FROM channel_invites WHERE invite_id = ? AND channel_id = ?", [.text(id), .text(channelID)]
        ).first else { return nil }
        return (try ChannelSQL.invite(row), try row.string(13))
    }

    func invite(tokenHash: String, channelID: String) async throws -> Invite? {
        try await storage.query(
            "SELECT \(ChannelSQL.inviteColumns) FROM channel_invites WHERE token_hash = ? AND channel_id = ?", [.text(tokenHash), .text(channelID)]
        ).first.map(ChannelSQL.invite)
    }

    func links(_ channelID: String, after cursor: String?, limit: Int) async throws -> [ChannelLink] {
        var sql = "SELECT \(ChannelSQL.linkColumns) FROM channel_links WHERE channel_id = ?"
        var binds: [SQLValue] = [.text(channelID)]
        if let cursor {
            sql += " AND link_id > ?"
            binds.append(.text(cursor))
        }
        return try await storage.query(sql + " ORDER BY link_id LIMIT \(limit)", binds).map(ChannelSQL.link)
    }

    /// Read for every update handled: a lookup (SQLite: on the calling thread, no pool hop).
    func link(telegramUserID: Int64, channelID: String) async throws -> ChannelLink? {
        try await storage.lookup(
            "SELECT \(ChannelSQL.linkColumns) FROM channel_links WHERE channel_id = ? AND telegram_user_id = ?", [.text(channelID), .int(telegramUserID)]
        ).first.map(ChannelSQL.link)
    }

    /// Every link, on every live channel of `userID`, with that role (the owner's chats, the deliverers').
    func links(userID: String, role: Invite.Role) async throws -> [ChannelLink] {
        try await storage.query(
            """
            SELECT \(ChannelSQL.linkColumns.split(separator: ",").map { "l." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", "))
            FROM channel_links l JOIN channels c ON c.channel_id = l.channel_id
            WHERE c.user_id = ? AND c.deleted_at IS NULL AND l.role = ? ORDER BY l.link_id
            """, [.text(userID), .text(role.rawValue)]
        ).map(ChannelSQL.link)
    }
}

extension ChannelStore {
    /// What erasing a contact (a Telegram chat, by its id) removes from the channels of `userID`
    /// (every tenant's when nil): its stored updates, its messages still waiting to go out, and
    /// the texts of those sent (their ids, status and counts stay).
    static func erasure(userID: String?, chatID: Int64) -> [SQLStatement] {
        let tenant = userID == nil ? "" : " AND channel_id IN (SELECT channel_id FROM channels WHERE user_id = ?)"
        let binds: [SQLValue] = [.int(chatID)] + (userID.map { [SQLValue.text($0)] } ?? [])
        return [
            SQLStatement("DELETE FROM channel_updates WHERE chat_id = ?" + tenant, binds),
            SQLStatement("DELETE FROM channel_outbox WHERE chat_id = ? AND status = 'pending'" + tenant, binds),
            SQLStatement("UPDATE channel_outbox SET payload = '{\"erased\":true}' WHERE chat_id = ?" + tenant, binds),
        ]
    }

    /// The chat an update came from (a message's, or the message a button was under).
    static func chatID(of update: JSONValue) -> Int64? {
        guard case .object(let object) = update else { return nil }
        let message = object["message"] ?? object["edited_message"] ?? (object["callback_query"].flatMap { if case .object(let query) = $0 { query["message"] } else { nil } })
        guard case .object(let fields)? = message, case .object(let chat)? = fields["chat"], case .int(let id)? = chat["id"] else { return nil }
        return id
    }
}

extension ChannelStore {
    /// The first event the session notifier still needs (nil: it keeps no cursor yet).
    func eventFloor() async throws -> EventID? {
        let cursors = try await storage.query("SELECT event_id FROM channel_event_cursor").compactMap { EventID(try $0.string(0)) }
        return cursors.min().map { EventID(transaction: $0.transaction, position: $0.position + 1) }
    }

    /// Retention: raw chat updates handled before `cutoff` lose their body, sent (or failed)
    /// messages their text; their ids, statuses and counts stay.
    static func pruneUpdates(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            """
            UPDATE channel_updates SET body = '{}' WHERE (channel_id, update_id) IN (SELECT channel_id, update_id FROM channel_updates
            WHERE received_at < ? AND handled_at IS NOT NULL AND body <> '{}' LIMIT ?) RETURNING 1
            """, [.int(cutoff.milliseconds), .int(Int64(limit))]
        )
    }

    static func pruneSentTexts(cutoff: Timestamp, limit: Int) -> (sql: String, binds: [SQLValue]) {
        (
            """
            UPDATE channel_outbox SET payload = '{}' WHERE message_id IN (SELECT message_id FROM channel_outbox
            WHERE created_at < ? AND status <> 'pending' AND payload <> '{}' LIMIT ?) RETURNING 1
            """, [.int(cutoff.milliseconds), .int(Int64(limit))]
        )
    }
}

extension ChannelStore {
    /// Revokes an invite still unused and unrevoked (a conflict otherwise).
    static func revokeInvite(_ id: String, channelID: String, at now: Timestamp) -> SQLStatement {
        SQLStatement(
            "UPDATE channel_invites SET revoked_at = ? WHERE invite_id = ? AND channel_id = ? AND used_at IS NULL AND revoked_at IS NULL",
            [.int(now.milliseconds), .text(id), .text(channelID)], expectedChanges: 1)
    }
}
