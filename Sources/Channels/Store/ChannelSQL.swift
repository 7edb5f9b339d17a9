import Kernel

/// The channels module's tables (migrations 601–699) and the SQL on them, the same on SQLite and
/// PostgreSQL. Secrets are stored sealed (`SecretBox`, bound to the channel's id).
enum ChannelSQL {
    static let migrations = [
        Migration(
            version: 601, name: "bot channels, their inbox and outbox, invites and links",
            shared: [
                """
                CREATE TABLE channels (
                    channel_id TEXT PRIMARY KEY,
                    kind TEXT NOT NULL,
                    name TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    mode TEXT NOT NULL,
                    bot_key TEXT NOT NULL,
                    token_sealed TEXT NOT NULL,
                    webhook_secret_sealed TEXT NOT NULL,
                    proxy_type TEXT,
                    proxy_host TEXT,
                    proxy_port INTEGER,
                    proxy_username TEXT,
                    proxy_password_sealed TEXT,
                    default_package_value_cents BIGINT NOT NULL,
                    bot_id BIGINT,
                    bot_username TEXT,
                    bot_first_name TEXT,
                    desired TEXT NOT NULL,
                    status TEXT NOT NULL,
                    last_error TEXT,
                    last_error_at BIGINT,
                    since BIGINT NOT NULL,
                    generation BIGINT NOT NULL,
                    api_key_id TEXT NOT NULL,
                    poll_offset BIGINT NOT NULL DEFAULT 0,
                    lease_owner TEXT,
                    lease_expires_at BIGINT,
                    lease_generation BIGINT NOT NULL DEFAULT 0,
                    errors BIGINT NOT NULL DEFAULT 0,
                    last_activity_at BIGINT,
                    deleted_at BIGINT,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
                "CREATE UNIQUE INDEX channels_live_bot ON channels (bot_key) WHERE deleted_at IS NULL",
                "CREATE INDEX channels_user ON channels (user_id, channel_id)",
                // The inbox: every update received, kept (a repeated update_id is the same row), handled in update_id order.
                """
                CREATE TABLE channel_updates (
                    channel_id TEXT NOT NULL,
                    update_id BIGINT NOT NULL,
                    body TEXT NOT NULL,
                    received_at BIGINT NOT NULL,
                    handled_at BIGINT,
                    error TEXT,
                    PRIMARY KEY (channel_id, update_id)
                )
                """,
                "CREATE INDEX channel_updates_unhandled ON channel_updates (channel_id, update_id) WHERE handled_at IS NULL",
                // The outbox: written in the transaction of the change that causes a message, sent after commit in
                // order per chat (message_id is time-ordered).
                """
                CREATE TABLE channel_outbox (
                    message_id TEXT PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    chat_id BIGINT,
                    payload TEXT NOT NULL,
                    counts BOOLEAN NOT NULL,
                    status TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at BIGINT NOT NULL,
                    last_error TEXT,
                    created_at BIGINT NOT NULL,
                    sent_at BIGINT
                )
                """,
                "CREATE INDEX channel_outbox_pending ON channel_outbox (channel_id, message_id) WHERE status = 'pending'",
                "CREATE INDEX channel_outbox_sent ON channel_outbox (channel_id, status, counts)",
                """
                CREATE TABLE channel_invites (
                    invite_id TEXT PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    role TEXT NOT NULL,
                    user_id TEXT,
                    deliverer_id TEXT,
                    name TEXT,
                    base_salary_cents BIGINT NOT NULL,
                    commission_per_delivery_cents BIGINT NOT NULL,
                    token_hash TEXT NOT NULL UNIQUE,
                    token_sealed TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    used_at BIGINT,
                    used_by_telegram_user_id BIGINT
                )
                """,
                "CREATE INDEX channel_invites_channel ON channel_invites (channel_id, invite_id)",
                """
                CREATE TABLE channel_links (
                    link_id TEXT PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    role TEXT NOT NULL,
                    user_id TEXT,
                    deliverer_id TEXT,
                    name TEXT,
                    base_salary_cents BIGINT NOT NULL,
                    commission_per_delivery_cents BIGINT NOT NULL,
                    telegram_user_id BIGINT NOT NULL,
                    chat_id BIGINT NOT NULL,
                    telegram_username TEXT,
                    created_at BIGINT NOT NULL,
                    UNIQUE (channel_id, telegram_user_id)
                )
                """,
                "CREATE INDEX channel_links_deliverer ON channel_links (deliverer_id)",
                // How far the delivery bot has read the event log (session starts and completions → messages).
                "CREATE TABLE channel_event_cursor (name TEXT PRIMARY KEY, event_id TEXT NOT NULL)",
            ]),
        // The chat each update came from, so erasing a contact finds its updates (rows stored
        // before this have none: the retention sweep removes them within CHANNEL_UPDATE_RETENTION).
        Migration(
            version: 602, name: "channels: the chat of each stored update, revoked invites",
            shared: [
                "ALTER TABLE channel_updates ADD COLUMN chat_id BIGINT",
                "CREATE INDEX channel_updates_chat ON channel_updates (chat_id)",
                "CREATE INDEX channel_outbox_chat ON channel_outbox (chat_id)",
                "ALTER TABLE channel_invites ADD COLUMN revoked_at BIGINT",
            ]),
    ]

    static let channelColumns = """
        channel_id, kind, name, user_id, mode, proxy_type, proxy_host, proxy_port, proxy_username, proxy_password_sealed, \
        default_package_value_cents, bot_id, bot_username, bot_first_name, desired, status, last_error, last_error_at, since, \
        generation, api_key_id, created_at, updated_at
        """

    static func channel(_ row: SQLRow) throws -> Channel {
        var proxy: Channel.Proxy?
        if let type = try row.optionalString(5).flatMap(Channel.Proxy.Kind.init(rawValue:)) {
            proxy = Channel.Proxy(
                type: type, host: try row.string(6), port: Int(try row.int(7)), username: try row.optionalString(8), hasPassword: try row.optionalString(9) != nil)
        }
        var bot: Channel.Bot?
        if let botID = try row.optionalInt(11) {
            bot = Channel.Bot(id: botID, username: try row.optionalString(12), firstName: try row.optionalString(13) ?? "")
        }
        return Channel(
            id: try row.string(0), kind: try row.string(1), name: try row.string(2), userID: try row.string(3),
            mode: Channel.Mode(rawValue: try row.string(4)) ?? .polling, proxy: proxy, defaultPackageValueCents: try row.int(10), bot: bot,
            desired: Channel.Desired(rawValue: try row.string(14)) ?? .disconnected, status: Channel.Status(rawValue: try row.string(15)) ?? .disconnected,
            lastError: try row.optionalString(16), lastErrorAt: try row.optionalInt(17).map(Timestamp.init(milliseconds:)),
            since: Timestamp(milliseconds: try row.int(18)), generation: try row.int(19), apiKeyID: try row.string(20),
            createdAt: Timestamp(milliseconds: try row.int(21)), updatedAt: Timestamp(milliseconds: try row.int(22)))
    }

    static let inviteColumns = """
        invite_id, channel_id, role, user_id, deliverer_id, name, base_salary_cents, commission_per_delivery_cents, created_at, expires_at, \
        used_at, used_by_telegram_user_id, revoked_at
        """

    static func invite(_ row: SQLRow) throws -> Invite {
        Invite(
            id: try row.string(0), channelID: try row.string(1), role: Invite.Role(rawValue: try row.string(2)) ?? .deliverer,
            userID: try row.optionalString(3), delivererID: try row.optionalString(4), name: try row.optionalString(5),
            baseSalaryCents: try row.int(6), commissionPerDeliveryCents: try row.int(7), createdAt: Timestamp(milliseconds: try row.int(8)),
            expiresAt: Timestamp(milliseconds: try row.int(9)), usedAt: try row.optionalInt(10).map(Timestamp.init(milliseconds:)),
            usedByTelegramUserID: try row.optionalInt(11), revokedAt: try row.optionalInt(12).map(Timestamp.init(milliseconds:)))
    }

    static let linkColumns = """
        link_id, channel_id, role, user_id, deliverer_id, name, base_salary_cents, commission_per_delivery_cents, telegram_user_id, chat_id, \
        telegram_username, created_at
        """

    static func link(_ row: SQLRow) throws -> ChannelLink {
        ChannelLink(
            id: try row.string(0), channelID: try row.string(1), role: Invite.Role(rawValue: try row.string(2)) ?? .deliverer,
            userID: try row.optionalString(3), delivererID: try row.optionalString(4), name: try row.optionalString(5),
            baseSalaryCents: try row.int(6), commissionPerDeliveryCents: try row.int(7), telegramUserID: try row.int(8), chatID: try row.int(9),
            telegramUsername: try row.optionalString(10), createdAt: Timestamp(milliseconds: try row.int(11)))
    }

    static func insertLink(_ link: ChannelLink) -> SQLStatement {
        SQLStatement(
            "INSERT INTO channel_links (\(linkColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                .text(link.id), .text(link.channelID), .text(link.role.rawValue), SQLValue(link.userID), SQLValue(link.delivererID), SQLValue(link.name),
                .int(link.baseSalaryCents), .int(link.commissionPerDeliveryCents), .int(link.telegramUserID), .int(link.chatID),
                SQLValue(link.telegramUsername), .int(link.createdAt.milliseconds),
            ])
    }

    /// A message into the outbox, for the transaction of the change that causes it.
    static func enqueue(_ message: OutgoingMessage, id: String, channelID: String, at now: Timestamp) -> SQLStatement {
        let payload = (try? TelegramClient.encoder.encode(message)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return SQLStatement(
            "INSERT INTO channel_outbox (message_id, channel_id, chat_id, payload, counts, status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            [.text(id), .text(channelID), SQLValue(message.chatID), .text(payload), .bool(message.countsAsMessage), .int(now.milliseconds), .int(now.milliseconds)])
    }

    /// Marks an update handled; guarded, so an update can be handled once only (a second attempt fails the transaction).
    static func markHandled(channelID: String, updateID: Int64, error: String?, at now: Timestamp) -> SQLStatement {
        SQLStatement(
            "UPDATE channel_updates SET handled_at = ?, error = ? WHERE channel_id = ? AND update_id = ? AND handled_at IS NULL",
            [.int(now.milliseconds), SQLValue(error), .text(channelID), .int(updateID)], expectedChanges: 1)
    }
}
