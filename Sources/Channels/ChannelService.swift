import Access
import Crypto
import Foundation
import Kernel
import Synchronization

/// Bot channels: their rules (who may do what, what a channel may hold), their people (invites,
/// links) and the intake of webhook updates. Connections run in `ChannelRuntime`; the delivery
/// bot in `DeliveryBot`.
public final class ChannelService: Sendable {
    let store: ChannelStore
    let storage: Storage
    let clock: WallClock
    let ids: IDGenerator
    let access: AccessService
    let configuration: ChannelsConfiguration
    let connector: TelegramConnector
    let events: EventLog
    let didCommitEvents: @Sendable () -> Void
    /// Wakes this server's runtime: one channel's connection (an update stored), or, for nil, the
    /// supervisor (a channel to connect, disconnect or reconnect).
    let wakeRuntime = Mutex<Waker?>(nil)
    /// Webhook channels' secrets as the webhook route checks them, kept 1 s (dropped at once when
    /// this server changes the channel; another server's change counts within that second).
    private let webhookSecrets = Mutex<[String: (secret: String?, at: ContinuousClock.Instant)]>([:])
    /// The most webhook secrets (and misses) kept at once.
    static let webhookSecretsKept = 1_024
    /// How many are kept now (for tests of the bound).
    var webhookSecretsHeld: Int { webhookSecrets.withLock { $0.count } }
    /// `getWebhookInfo` answers, kept at most 60 s.
    private let webhookInfo = Mutex<[String: (info: BotAPI.WebhookInfo, at: Timestamp)]>([:])

    public init(
        storage: Storage, clock: WallClock, ids: IDGenerator, access: AccessService, configuration: ChannelsConfiguration, connector: TelegramConnector,
        didCommitEvents: @escaping @Sendable () -> Void = {}
    ) {
        self.store = ChannelStore(storage: storage)
        self.storage = storage
        self.events = EventLog(dialect: storage.dialect)
        self.clock = clock
        self.ids = ids
        self.access = access
        self.configuration = configuration
        self.connector = connector
        self.didCommitEvents = didCommitEvents
    }

    public static let migrations = ChannelSQL.migrations

    func wake(_ channel: String? = nil) {
        if let channel { webhookSecrets.withLock { $0[channel] = nil } }
        wakeRuntime.withLock { $0 }?.wake(nil)
    }

    func wakeConnection(_ channel: String) { wakeRuntime.withLock { $0 }?.wake(channel) }

    /// The runtime's wake-up, in a struct: a bare closure kept in a `Mutex` is re-wrapped in a
    /// reabstraction thunk at every `withLock { $0 }` (an inout access written back), so each
    /// call would grow a chain of thunks (measured: half the server's CPU in the bench).
    struct Waker: Sendable {
        let wake: @Sendable (String?) -> Void
    }

    /// Drops the kept `getWebhookInfo` answer (the webhook was just set or deleted).
    func forgetWebhookInfo(_ id: String) { webhookInfo.withLock { $0[id] = nil } }

    // MARK: who

    /// Deliverer keys (and any role this module does not know) get 403 on every channel route.
    static func requireReader(_ caller: Caller) throws {
        guard ["admin", "owner", "viewer", "channel"].contains(caller.role) else {
            throw ChannelError.forbidden("Channels are for admins, owners, viewers and the channel's own key.")
        }
    }

    static func requireAdmin(_ caller: Caller) throws {
        try requireReader(caller)
        guard caller.isAdmin else { throw ChannelError.forbidden("Only an admin creates, changes or deletes channels.") }
    }

    static func canSee(_ channel: Channel, _ caller: Caller) -> Bool {
        switch caller.role {
        case "admin": true
        case "owner", "viewer": caller.userID == channel.userID
        case "channel": caller.scope("channel_id") == channel.id
        default: false
        }
    }

    /// The channel if the caller may see it (another one is 404, like a missing one).
    func visible(_ id: String, _ caller: Caller) async throws -> Channel {
        try Self.requireReader(caller)
        guard let channel = try await store.channel(id), Self.canSee(channel, caller) else { throw ChannelError.notFound("No channel \(id).") }
        return channel
    }

    /// The channel if the caller may act on it: admin, its owner, its own key; viewers 403.
    func managed(_ id: String, _ caller: Caller) async throws -> Channel {
        let channel = try await visible(id, caller)
        guard caller.role != "viewer" else { throw ChannelError.forbidden("A viewer key only reads channels.") }
        return channel
    }

    // MARK: create, read, change, delete

    public struct NewChannel: Sendable {
        public var kind: String?
        public var name: String?
        public var userID: String?
        public var token: String?
        public var mode: String?
        public var proxy: NewProxy?
        public var defaultPackageValueCents: Int64?

        public init(
            kind: String?, name: String?, userID: String?, token: String?, mode: String?, proxy: NewProxy?, defaultPackageValueCents: Int64?
        ) {
            self.kind = kind
            self.name = name
            self.userID = userID
            self.token = token
            self.mode = mode
            self.proxy = proxy
            self.defaultPackageValueCents = defaultPackageValueCents
        }
    }

    public struct NewProxy: Sendable {
        public var type: String?
        public var host: String?
        public var port: Int64?
        public var username: String?
        public var password: String?

        public init(type: String?, host: String?, port: Int64?, username: String?, password: String?) {
            self.type = type
            self.host = host
            self.port = port
            self.username = username
            self.password = password
        }
    }

    public struct Created: Sendable {
        public var channel: Channel
        public var apiKey: String
    }

    static func text(_ value: String?, field: String, required: Bool = true) throws -> String? {
        let trimmed = value?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let trimmed, !trimmed.isEmpty else {
            if required { throw ChannelError.invalid(field: field, detail: "\(field) is required.") }
            return nil
        }
        guard trimmed.count <= 200 else { throw ChannelError.invalid(field: field, detail: "\(field) is longer than 200 characters.") }
        return trimmed
    }

    static func botKey(_ token: String?) throws -> (token: String, key: String) {
        guard let token, let key = Channel.botID(ofToken: token) else {
            throw ChannelError.invalid(field: "token", detail: "token must look like 123456789:AAE… (digits, a colon, 20 or more of A-Z a-z 0-9 _ -).")
        }
        return (token, key)
    }

    static func mode(_ text: String?) throws -> Channel.Mode {
        guard let text else { return .polling }
        guard let mode = Channel.Mode(rawValue: text) else { throw ChannelError.invalid(field: "mode", detail: "mode is polling or webhook.") }
        return mode
    }

    static func proxy(_ proxy: NewProxy) throws -> Channel.Proxy {
        guard let kind = proxy.type.flatMap(Channel.Proxy.Kind.init(rawValue:)) else {
            throw ChannelError.invalid(field: "proxy.type", detail: "proxy.type is http or socks5.")
        }
        guard let host = proxy.host?.trimmingCharacters(in: .whitespaces), !host.isEmpty, host.count <= 253,
            host.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || ".-:[]_".unicodeScalars.contains($0) })
        else { throw ChannelError.invalid(field: "proxy.host", detail: "proxy.host is a host name or an IP address.") }
        guard let port = proxy.port, (1...65535).contains(port) else { throw ChannelError.invalid(field: "proxy.port", detail: "proxy.port is 1 to 65535.") }
        let username = proxy.username.flatMap { $0.isEmpty ? nil : $0 }
        if let username, username.count > 200 { throw ChannelError.invalid(field: "proxy.username", detail: "proxy.username is longer than 200 characters.") }
        return Channel.Proxy(type: kind, host: host, port: Int(port), username: username, hasPassword: !(proxy.password ?? "").isEmpty)
    }

    func sealed(_ secret: String, _ context: String) throws -> String {
        guard let box = configuration.secretBox else { throw ChannelError.noSecretKey }
        return try box.seal(secret, boundTo: context)
    }

    static func randomSecret(length: Int) -> String {
        let characters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
        var generator = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in characters[Int(generator.next(upperBound: UInt64(characters.count)))] })
    }

    public func create(_ request: NewChannel, caller: Caller) async throws -> Created {
        try Self.requireAdmin(caller)
        guard configuration.secretBox != nil else { throw ChannelError.noSecretKey }
        guard (request.kind ?? "") == "telegram" else { throw ChannelError.invalid(field: "kind", detail: "kind must be telegram.") }
        let name = try Self.text(request.name, field: "name")!
        let userID = try Self.text(request.userID, field: "user_id")!
        let (token, botKey) = try Self.botKey(request.token)
        let mode = try Self.mode(request.mode)
        let proxy = try request.proxy.map(Self.proxy)
        let value = request.defaultPackageValueCents ?? 0
        guard value >= 0 else { throw ChannelError.invalid(field: "default_package_value_cents", detail: "default_package_value_cents is 0 or more.") }
        if try await store.liveChannel(botKey: botKey) != nil { throw ChannelError.tokenInUse }

        let now = clock.now()
        let id = ids.make()
        let (key, secret, keyStatements) = access.channelKey(channelID: id, userID: userID, name: name, caller: caller)
        let channel = Channel(
            id: id, kind: "telegram", name: name, userID: userID, mode: mode, proxy: proxy, defaultPackageValueCents: value, bot: nil,
            desired: .disconnected, status: .disconnected, lastError: nil, lastErrorAt: nil, since: now, generation: 1, apiKeyID: key.id,
            createdAt: now, updatedAt: now)
        let insert = SQLStatement(
            """
            INSERT INTO channels (channel_id, kind, name, user_id, mode, bot_key, token_sealed, webhook_secret_sealed, proxy_type, proxy_host,
                proxy_port, proxy_username, proxy_password_sealed, default_package_value_cents, desired, status, since, generation, api_key_id,
                created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'disconnected', 'disconnected', ?, 1, ?, ?, ?)
            """,
            [
                .text(id), .text("telegram"), .text(name), .text(userID), .text(mode.rawValue), .text(botKey), .text(try sealed(token, id + ":token")),
                .text(try sealed(Self.randomSecret(length: 48), id + ":webhook")), SQLValue(proxy?.type.rawValue), SQLValue(proxy?.host),
                SQLValue(proxy.map { Int64($0.port) }), SQLValue(proxy?.username),
                SQLValue(try (request.proxy?.password).flatMap { $0.isEmpty ? nil : try sealed($0, id + ":proxy") }), .int(value),
                .int(now.milliseconds), .text(key.id), .int(now.milliseconds), .int(now.milliseconds),
            ])
        let created = Created(channel: channel, apiKey: secret)
        do {
            try await storage.write([insert] + keyStatements + events.append([event("channel.created", channel, at: now)]), answering: created)
        } catch StorageError.uniqueViolation {
            throw ChannelError.tokenInUse
        }
        didCommitEvents()
        return created
    }

    public func channels(caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [Channel], next: String?) {
        try Self.requireReader(caller)
        let items: [Channel]
        switch caller.role {
        case "admin": items = try await store.channels(userID: nil, channelID: nil, after: cursor, limit: limit + 1)
        case "channel": items = try await store.channels(userID: nil, channelID: caller.scope("channel_id") ?? "-", after: cursor, limit: limit + 1)
        default: items = try await store.channels(userID: caller.userID ?? "-", channelID: nil, after: cursor, limit: limit + 1)
        }
        let page = Array(items.prefix(limit))
        return (page, items.count > limit ? page.last?.id : nil)
    }

    public func channel(_ id: String, caller: Caller) async throws -> Channel {
        try await visible(id, caller)
    }

    public struct Patch: Sendable {
        public var name: String??
        public var token: String??
        public var mode: String??
        /// `.some(nil)`: remove the proxy.
        public var proxy: NewProxy??
        public var defaultPackageValueCents: Int64??

        public init(name: String??, token: String??, mode: String??, proxy: NewProxy??, defaultPackageValueCents: Int64??) {
            self.name = name
            self.token = token
            self.mode = mode
            self.proxy = proxy
            self.defaultPackageValueCents = defaultPackageValueCents
        }
    }

    public func update(_ id: String, _ patch: Patch, caller: Caller) async throws -> Channel {
        try Self.requireAdmin(caller)
        var channel = try await visible(id, caller)
        var sets: [String] = []
        var binds: [SQLValue] = []
        var reconnect = false
        if let name = patch.name {
            channel.name = try Self.text(name, field: "name")!
            sets.append("name = ?")
            binds.append(.text(channel.name))
        }
        if let token = patch.token {
            let (token, botKey) = try Self.botKey(token)
            if let other = try await store.liveChannel(botKey: botKey), other != id { throw ChannelError.tokenInUse }
            sets.append("bot_key = ?, token_sealed = ?, bot_id = CASE WHEN bot_key = ? THEN bot_id ELSE NULL END, poll_offset = CASE WHEN bot_key = ? THEN poll_offset ELSE 0 END")
            binds += [.text(botKey), .text(try sealed(token, id + ":token")), .text(botKey), .text(botKey)]
            reconnect = true
        }
        if let mode = patch.mode {
            channel.mode = try Self.mode(mode ?? "")
            sets.append("mode = ?")
            binds.append(.text(channel.mode.rawValue))
            reconnect = true
        }
        if let proxy = patch.proxy {
            if let proxy {
                let checked = try Self.proxy(proxy)
                channel.proxy = checked
                sets.append("proxy_type = ?, proxy_host = ?, proxy_port = ?, proxy_username = ?, proxy_password_sealed = ?")
                binds += [
                    .text(checked.type.rawValue), .text(checked.host), .int(Int64(checked.port)), SQLValue(checked.username),
                    SQLValue(try proxy.password.flatMap { $0.isEmpty ? nil : try sealed($0, id + ":proxy") }),
                ]
            } else {
                channel.proxy = nil
                sets.append("proxy_type = NULL, proxy_host = NULL, proxy_port = NULL, proxy_username = NULL, proxy_password_sealed = NULL")
            }
            reconnect = true
        }
        if let value = patch.defaultPackageValueCents {
            guard let value, value >= 0 else {
                throw ChannelError.invalid(field: "default_package_value_cents", detail: "default_package_value_cents is 0 or more.")
            }
            channel.defaultPackageValueCents = value
            sets.append("default_package_value_cents = ?")
            binds.append(.int(value))
        }
        guard !sets.isEmpty else { return channel }
        let now = clock.now()
        channel.updatedAt = now
        if reconnect { sets.append("generation = generation + 1") }
        let statement = SQLStatement(
            "UPDATE channels SET \(sets.joined(separator: ", ")), updated_at = ? WHERE channel_id = ? AND deleted_at IS NULL",
            binds + [.int(now.milliseconds), .text(id)], expectedChanges: 1)
        do {
            try await storage.write([statement] + events.append([event("channel.updated", channel, at: now)]))
        } catch StorageError.uniqueViolation {
            throw ChannelError.tokenInUse
        }
        didCommitEvents()
        if reconnect { wake(id) }
        return try await visible(id, caller)
    }

    public func delete(_ id: String, caller: Caller) async throws {
        try Self.requireAdmin(caller)
        let channel = try await visible(id, caller)
        let now = clock.now()
        // Telegram keeps calling a webhook until it is deleted: best effort here (the runtime stops polling by itself).
        if channel.mode == .webhook, let row = try await store.runtimeRow(id) {
            _ = try? await connector.with(row) { client in try await client.call("deleteWebhook", BotAPI.DeleteWebhook(), as: BotAPI.Ignored.self) }
        }
        try await storage.write(
            [
                SQLStatement(
                    "UPDATE channels SET deleted_at = ?, desired = 'disconnected', status = 'disconnected', updated_at = ? WHERE channel_id = ? AND deleted_at IS NULL",
                    [.int(now.milliseconds), .int(now.milliseconds), .text(id)], expectedChanges: 1),
                SQLStatement("DELETE FROM channel_links WHERE channel_id = ?", [.text(id)]),
                SQLStatement("DELETE FROM channel_invites WHERE channel_id = ?", [.text(id)]),
                SQLStatement("UPDATE channel_outbox SET status = 'failed', last_error = 'channel deleted' WHERE channel_id = ? AND status = 'pending'", [.text(id)]),
                SQLStatement("DELETE FROM chat_dialogs WHERE channel = ?", [.text(id)]),
            ] + access.revokeChannelKeys(channelID: id, caller: caller) + events.append([event("channel.deleted", channel, at: now)]))
        didCommitEvents()
        wake(id)
    }

    // MARK: connection

    public func connect(_ id: String, caller: Caller) async throws -> ChannelStatusView {
        _ = try await managed(id, caller)
        let now = clock.now()
        // A new generation: a running connection starts again at once (backoff and a refused token forgotten).
        forgetWebhookInfo(id)
        try await storage.write([
            SQLStatement(
                """
                UPDATE channels SET desired = 'connected', generation = generation + 1, updated_at = ?,
                    since = CASE WHEN status = 'connecting' THEN since ELSE ? END, status = 'connecting'
                WHERE channel_id = ? AND deleted_at IS NULL
                """, [.int(now.milliseconds), .int(now.milliseconds), .text(id)])
        ])
        wake(id)
        return try await status(id, caller: caller)
    }

    public func disconnect(_ id: String, caller: Caller) async throws -> ChannelStatusView {
        let channel = try await managed(id, caller)
        let now = clock.now()
        var statements = [
            SQLStatement(
                "UPDATE channels SET desired = 'disconnected', generation = generation + 1, updated_at = ? WHERE channel_id = ? AND deleted_at IS NULL",
                [.int(now.milliseconds), .text(id)])
        ]
        statements += store.setStatus(id, .disconnected, error: nil, at: now)
        if channel.status != .disconnected { statements += events.append([event("channel.disconnected", channel, at: now)]) }
        try await storage.write(statements)
        didCommitEvents()
        wake(id)
        if channel.mode == .webhook, let row = try await store.runtimeRow(id) {
            _ = try? await connector.with(row) { client in try await client.call("deleteWebhook", BotAPI.DeleteWebhook(), as: BotAPI.Ignored.self) }
            forgetWebhookInfo(id)
        }
        return try await status(id, caller: caller)
    }

    public struct ChannelStatusView: Sendable {
        public var channel: Channel
        public var webhook: BotAPI.WebhookInfo?
        public var webhookURL: String?
    }

    public func status(_ id: String, caller: Caller) async throws -> ChannelStatusView {
        let channel = try await visible(id, caller)
        var info: BotAPI.WebhookInfo?
        if channel.mode == .webhook {
            let now = clock.now()
            if let cached = webhookInfo.withLock({ $0[id] }), now.milliseconds - cached.at.milliseconds < 60_000 {
                info = cached.info
            } else if let row = try await store.runtimeRow(id) {
                info = try? await connector.with(row) { client in try await client.call("getWebhookInfo", BotAPI.None(), as: BotAPI.WebhookInfo.self) }
                if let info { webhookInfo.withLock { $0[id] = (info, now) } }
            }
        }
        return ChannelStatusView(channel: channel, webhook: info, webhookURL: channel.webhookURL(base: configuration.publicBaseURL))
    }

    public func stats(_ id: String, caller: Caller) async throws -> ChannelStats {
        _ = try await visible(id, caller)
        return try await store.stats(id)
    }

    public struct ProxyTest: Sendable {
        public var ok: Bool
        public var latencyMilliseconds: Int64
        public var exitIP: String?
        public var error: String?
    }

    public func testProxy(_ id: String, caller: Caller) async throws -> ProxyTest {
        let channel = try await managed(id, caller)
        guard channel.proxy != nil, let row = try await store.runtimeRow(id) else { throw ChannelError.noProxy }
        let started = ContinuousClock.now
        func elapsed() -> Int64 {
            let duration = ContinuousClock.now - started
            return duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        }
        do {
            _ = try await connector.with(row) { client in try await client.call("getMe", BotAPI.None(), as: BotAPI.User.self) }
            return ProxyTest(ok: true, latencyMilliseconds: elapsed(), exitIP: nil, error: nil)
        } catch let failure as TelegramFailure {
            return ProxyTest(ok: false, latencyMilliseconds: elapsed(), exitIP: nil, error: failure.description)
        }
    }

    // MARK: events

    func event(_ type: String, _ channel: Channel, at now: Timestamp, error: String? = nil, extra: (inout JSONWriter) -> Void = { _ in }) -> NewEvent {
        var data = JSONWriter(capacity: 256)
        data.beginObject()
        data.field("channel_id", channel.id)
        data.field("name", channel.name)
        data.field("kind", channel.kind)
        data.field("mode", channel.mode.rawValue)
        if let error { data.field("error", error) }
        extra(&data)
        data.endObject()
        return NewEvent(type: type, userID: channel.userID, createdAt: now, data: String(buffer: data.buffer))
    }

    // MARK: invites and links

    public struct NewInvite: Sendable {
        public var role: String?
        public var userID: String?
        public var delivererID: String?
        public var name: String?
        public var baseSalaryCents: Int64?
        public var commissionPerDeliveryCents: Int64?
        public var expiresIn: Int64?

        public init(
            role: String?, userID: String?, delivererID: String?, name: String?, baseSalaryCents: Int64?, commissionPerDeliveryCents: Int64?,
            expiresIn: Int64?
        ) {
            self.role = role
            self.userID = userID
            self.delivererID = delivererID
            self.name = name
            self.baseSalaryCents = baseSalaryCents
            self.commissionPerDeliveryCents = commissionPerDeliveryCents
            self.expiresIn = expiresIn
        }
    }

    public struct CreatedInvite: Sendable {
        public var invite: Invite
        public var token: String
        public var url: String
    }

    static func tokenHash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public func createInvite(_ id: String, _ request: NewInvite, caller: Caller) async throws -> CreatedInvite {
        let channel = try await managed(id, caller)
        let (invite, token, url, statements) = try inviteStatements(channel, request, actor: caller)
        try await storage.write(statements, answering: CreatedInvite(invite: invite, token: token, url: url))
        didCommitEvents()
        return CreatedInvite(invite: invite, token: token, url: url)
    }

    /// An invite's row and event, for a transaction of the caller's (the bot's `/convidar` sends its QR in the same one).
    func inviteStatements(_ channel: Channel, _ request: NewInvite, actor: Caller) throws -> (Invite, String, String, [SQLStatement]) {
        guard let role = request.role.flatMap(Invite.Role.init(rawValue:)) else { throw ChannelError.invalid(field: "role", detail: "role is owner or deliverer.") }
        guard let username = channel.bot?.username else { throw ChannelError.notConnected }
        var userID: String?
        var delivererID: String?
        switch role {
        case .owner:
            if let requested = request.userID, requested != channel.userID {
                throw ChannelError.invalid(field: "user_id", detail: "An owner invite is for the channel's user_id (\(channel.userID)).")
            }
            userID = channel.userID
        case .deliverer:
            if let requested = request.delivererID { delivererID = try PersonID.checked(requested, field: "deliverer_id") }
        }
        let name = try Self.text(request.name, field: "name", required: false)
        let salary = request.baseSalaryCents ?? 0
        let commission = request.commissionPerDeliveryCents ?? 0
        guard salary >= 0 else { throw ChannelError.invalid(field: "base_salary_cents", detail: "base_salary_cents is 0 or more.") }
        guard commission >= 0 else { throw ChannelError.invalid(field: "commission_per_delivery_cents", detail: "commission_per_delivery_cents is 0 or more.") }
        let expiresIn = request.expiresIn ?? 604_800
        guard (1...2_592_000).contains(expiresIn) else { throw ChannelError.invalid(field: "expires_in", detail: "expires_in is 1 to 2592000 seconds.") }
        let now = clock.now()
        let token = Self.randomSecret(length: 32)
        let invite = Invite(
            id: ids.make(), channelID: channel.id, role: role, userID: userID, delivererID: delivererID, name: name, baseSalaryCents: salary,
            commissionPerDeliveryCents: commission, createdAt: now, expiresAt: Timestamp(milliseconds: now.milliseconds + expiresIn * 1000), usedAt: nil,
            usedByTelegramUserID: nil)
        let url = "https://t.me/\(username)?start=\(token)"
        let insert = SQLStatement(
            """
            INSERT INTO channel_invites (invite_id, channel_id, role, user_id, deliverer_id, name, base_salary_cents, commission_per_delivery_cents,
                token_hash, token_sealed, created_at, expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(invite.id), .text(channel.id), .text(role.rawValue), SQLValue(userID), SQLValue(delivererID), SQLValue(name), .int(salary),
                .int(commission), .text(Self.tokenHash(token)), .text(try sealed(token, invite.id + ":invite")), .int(now.milliseconds),
                .int(invite.expiresAt.milliseconds),
            ])
        let created = event("channel.invite.created", channel, at: now) { data in
            data.field("invite_id", invite.id)
            data.field("role", role.rawValue)
            data.field("deliverer_id", delivererID)
        }
        return (invite, token, url, [insert] + events.append([created]))
    }

    public func invites(_ id: String, caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [Invite], next: String?) {
        _ = try await visible(id, caller)
        let items = try await store.invites(id, after: cursor, limit: limit + 1)
        let page = Array(items.prefix(limit))
        return (page, items.count > limit ? page.last?.id : nil)
    }

    /// The invite's QR code as PNG (the owner's or an admin's: it links whoever scans it); 410 once
    /// it is used, revoked or expired.
    public func inviteQR(_ id: String, inviteID: String, caller: Caller) async throws -> [UInt8] {
        let channel = try await visible(id, caller)
        try Self.requireOwnerOrAdmin(caller, "Only the channel's owner or an admin gets an invite's QR code.")
        guard let (invite, sealedToken) = try await store.invite(inviteID, channelID: id) else { throw ChannelError.notFound("No invite \(inviteID).") }
        guard invite.isOpen(at: clock.now()) else { throw ChannelError.inviteGone }
        guard let box = configuration.secretBox else { throw ChannelError.noSecretKey }
        let token: String
        do { token = try box.open(sealedToken, boundTo: inviteID + ":invite") } catch { throw ChannelError.secretUnreadable(id) }
        guard let username = channel.bot?.username else { throw ChannelError.notConnected }
        return try QRCode.png("https://t.me/\(username)?start=\(token)")
    }

    /// Revokes an unused invite (the owner or an admin): it links nobody from then on. Revoking it
    /// again, or one already used, answers it as it is.
    public func revokeInvite(_ id: String, inviteID: String, caller: Caller) async throws -> Invite {
        let channel = try await visible(id, caller)
        try Self.requireOwnerOrAdmin(caller, "Only the channel's owner or an admin revokes invites.")
        guard var invite = try await store.invite(inviteID, channelID: id)?.invite else { throw ChannelError.notFound("No invite \(inviteID).") }
        guard invite.revokedAt == nil, invite.usedAt == nil else { return invite }
        let now = clock.now()
        do {
            try await storage.write(
                [
                    ChannelStore.revokeInvite(inviteID, channelID: id, at: now)
                ] + events.append([event("channel.invite.revoked", channel, at: now) { $0.field("invite_id", inviteID) }]),
                answering: invite)
        } catch StorageError.conflict {
            return try await store.invite(inviteID, channelID: id)?.invite ?? invite  // used or revoked meanwhile
        }
        didCommitEvents()
        invite.revokedAt = now
        return invite
    }

    static func requireOwnerOrAdmin(_ caller: Caller, _ detail: String) throws {
        guard caller.isAdmin || caller.role == "owner" else { throw ChannelError.forbidden(detail) }
    }

    public func links(_ id: String, caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [ChannelLink], next: String?) {
        _ = try await visible(id, caller)
        let items = try await store.links(id, after: cursor, limit: limit + 1)
        let page = Array(items.prefix(limit))
        return (page, items.count > limit ? page.last?.id : nil)
    }

    public func removeLink(_ id: String, linkID: String, caller: Caller) async throws {
        let channel = try await managed(id, caller)
        let now = clock.now()
        do {
            try await storage.write(
                [SQLStatement("DELETE FROM channel_links WHERE link_id = ? AND channel_id = ?", [.text(linkID), .text(id)], expectedChanges: 1)]
                    + events.append([event("channel.link.removed", channel, at: now) { $0.field("link_id", linkID) }]))
        } catch StorageError.conflict {
            throw ChannelError.notFound("No link \(linkID).")
        }
        didCommitEvents()
    }

    // MARK: webhook intake

    /// The secret a webhook POST for the channel must carry; nil when no webhook channel has that id.
    func webhookSecret(_ id: String) async throws -> String? {
        // Anyone may post here: a path that names no id of ours is refused before any lookup.
        guard IDGenerator.isWellFormed(id) else { return nil }
        if let kept = webhookSecrets.withLock({ $0[id] }), ContinuousClock.now - kept.at < .seconds(1) { return kept.secret }
        var secret: String?
        if let row = try await store.runtimeRow(id), !row.deleted, row.channel.mode == .webhook {
            guard let box = configuration.secretBox, let opened = try? box.open(row.webhookSecretSealed, boundTo: id + ":webhook") else {
                throw ChannelError.unauthorizedWebhook
            }
            secret = opened
        }
        webhookSecrets.withLock { kept in
            // Kept a second each: entries older than that are dropped once there are many, so
            // unknown ids posted by strangers cannot grow it.
            if kept.count >= Self.webhookSecretsKept {
                let now = ContinuousClock.now
                kept = kept.filter { now - $0.value.at < .seconds(1) }
                if kept.count >= Self.webhookSecretsKept { kept.removeAll() }
            }
            kept[id] = (secret, ContinuousClock.now)
        }
        return secret
    }

    /// A webhook POST: checks the secret, stores the update (a repeated `update_id` is ignored).
    public func receiveWebhook(_ id: String, secret: String?, body: [UInt8]) async throws {
        guard let expected = try await webhookSecret(id) else { throw ChannelError.notFound("No webhook channel \(id).") }
        guard let secret, Self.constantTimeEqual(secret, expected) else { throw ChannelError.unauthorizedWebhook }
        guard let update = try? JSONDecoder().decode(BotAPI.Update.self, from: Data(body)) else {
            throw ChannelError.notAnUpdate("The body is not a Telegram update (no update_id).")
        }
        let chatID = update.message?.chat.id ?? update.callbackQuery?.message?.chat.id
        try await storage.write(ChannelStore.store([(update.updateID, chatID, String(decoding: body, as: UTF8.self))], channelID: id, offset: nil, at: clock.now()))
        wakeConnection(id)
    }

    /// The first event the session notifier still needs (nil: none).
    public func eventFloor() async throws -> EventID? { try await store.eventFloor() }

    /// Retention of raw chat updates and sent texts (`CHANNEL_UPDATE_RETENTION`).
    public static func retentionRules(keepSeconds: Int64) -> [RetentionRule] {
        [
            RetentionRule("channel_updates", keepSeconds: keepSeconds) { cutoff, limit in ChannelStore.pruneUpdates(cutoff: cutoff, limit: limit) },
            RetentionRule("channel_sent_texts", keepSeconds: keepSeconds) { cutoff, limit in ChannelStore.pruneSentTexts(cutoff: cutoff, limit: limit) },
        ]
    }

    /// What erasing a contact removes from the channels of `userID` (every tenant's when nil): a
    /// Telegram contact is its chat's id (`123456789`); anything else names no chat.
    public static func contactErasure(userID: String?, contact: String) -> [SQLStatement] {
        guard let chatID = Int64(contact) else { return [] }
        return ChannelStore.erasure(userID: userID, chatID: chatID)
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
