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
    let webhookSecrets = Mutex<[String: (secret: String?, at: ContinuousClock.Instant)]>([:])
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
}
