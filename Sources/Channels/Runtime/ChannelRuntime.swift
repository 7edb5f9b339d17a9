import AsyncHTTPClient
import CoreMetrics
import Foundation
import Kernel
import Logging
import ServiceLifecycle
import Synchronization

/// What handles one stored update: it must commit `finish` (the update marked handled, fenced by
/// the lease) in the same transaction as whatever the update changes and the replies it sends.
public protocol UpdateHandler: Sendable {
    func handle(_ update: BotAPI.Update, channel: Channel, client: TelegramClient, finish: [SQLStatement]) async throws
}

/// Keeps this server's share of the channels connected: every channel whose `desired` is
/// `connected` gets a connection here when this server holds (or can take) its lease. A
/// connection polls or sets its webhook, handles its inbox in `update_id` order and sends its
/// outbox, each channel on tasks of its own, so one channel's trouble never touches another.
public final class ChannelRuntime: Service, Sendable {
    let service: ChannelService
    let handler: any UpdateHandler
    let node: String
    let logger: Logger
    private let doorbell = Doorbell()
    private let connections = Mutex<[String: (generation: Int64, connection: ChannelConnection, task: Task<Void, Never>)]>([:])

    public init(service: ChannelService, handler: any UpdateHandler, node: String, logger: Logger) {
        self.service = service
        self.handler = handler
        self.node = node
        self.logger = logger
        service.wakeRuntime.withLock {
            $0 = ChannelService.Waker { [weak self] channel in
                guard let self else { return }
                if let channel {
                    self.connections.withLock { $0[channel]?.connection }?.wake()
                } else {
                    self.doorbell.ring()
                }
            }
        }
    }

    /// Wakes every connection of this server (new outbox messages, written by the session notifier).
    public func wake() {
        for connection in connections.withLock({ $0.values.map(\.connection) }) { connection.wake() }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                await reconcile()
                // Every second at least: another server's changes (a connect, a lease that expired) are seen within it.
                await doorbell.wait(for: .seconds(1))
            }
        }
        let running = connections.withLock { current in
            defer { current = [:] }
            return current.values.map(\.task)
        }
        for task in running { task.cancel() }
        // Cancelled connections end within moments (their calls are cancelled); a shutdown never
        // waits on one for more than 5 s, whatever it is stuck in.
        await Self.within(.seconds(5)) {
            for task in running { await task.value }
            await self.service.connector.shutdown()
        }
    }

    /// Runs `work`, giving up waiting for it after `limit` (it is left running then). Not a task
    /// group: a group waits for all its children at its end, so one that ignores cancellation
    /// (awaiting another task's value does) would make the limit mean nothing.
    static func within(_ limit: Duration, _ work: @escaping @Sendable () async -> Void) async {
        let first = FirstOf()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            first.set(continuation)
            let timer = Task {
                try? await Task.sleep(for: limit)
                first.resume()
            }
            Task {
                await work()
                timer.cancel()
                first.resume()
            }
        }
    }

    /// Resumes a continuation once, whoever comes first.
    final class FirstOf: Sendable {
        private let waiting = Mutex<CheckedContinuation<Void, Never>?>(nil)
        func set(_ continuation: CheckedContinuation<Void, Never>) { waiting.withLock { $0 = continuation } }
        func resume() { waiting.withLock { current in defer { current = nil }; return current }?.resume() }
    }

    func reconcile() async {
        let wanted: [(id: String, generation: Int64)]
        do {
            wanted = try await service.store.wantedChannels()
        } catch {
            logger.warning("channels: could not read the channels to connect", metadata: ["error": "\(error)"])
            return
        }
        let wantedByID = Dictionary(wanted.map { ($0.id, $0.generation) }, uniquingKeysWith: max)
        let (stopped, toStart) = connections.withLock { current -> ([Task<Void, Never>], [(String, Int64)]) in
            var stopped: [Task<Void, Never>] = []
            for (id, entry) in current where wantedByID[id] != entry.generation {
                entry.task.cancel()
                stopped.append(entry.task)
                current[id] = nil
            }
            let toStart = wantedByID.filter { current[$0.key] == nil }.map { ($0.key, $0.value) }
            return (stopped, toStart)
        }
        // A stopped connection ends within moments; one stuck past 5 s does not hold up every
        // other channel (its writes are fenced by the lease generation it had).
        if !stopped.isEmpty {
            await Self.within(.seconds(5)) { for task in stopped { await task.value } }
        }
        for (id, generation) in toStart {
            let connection = ChannelConnection(id: id, generation: generation, runtime: self)
            let task = Task { await connection.run() }
            connections.withLock { $0[id] = (generation, connection, task) }
        }
    }
}

/// One channel's connection in this server: lease, intake (polling or webhook), inbox, outbox.
final class ChannelConnection: Sendable {
    let id: String
    let generation: Int64
    let runtime: ChannelRuntime
    private let inboxBell = Doorbell()
    private let outboxBell = Doorbell()
    private let reported = Mutex<(status: Channel.Status?, error: String?)>((nil, nil))
    private let pacing = Mutex(Pacing())

    struct LeaseLost: Error {}

    init(id: String, generation: Int64, runtime: ChannelRuntime) {
        self.id = id
        self.generation = generation
        self.runtime = runtime
    }

    var service: ChannelService { runtime.service }
    var store: ChannelStore { runtime.service.store }
    var configuration: ChannelsConfiguration { runtime.service.configuration }
    var logger: Logger { runtime.logger }

    func wake() {
        inboxBell.ring()
        outboxBell.ring()
    }

    func run() async {
        let ttl = Int64(configuration.leaseTTLSeconds) * 1000
        while !Task.isCancelled {
            let leased: Int64?
            do {
                leased = try await store.lease(id, owner: runtime.node, ttlMilliseconds: ttl, now: service.clock.now())
            } catch {
                // The database failed to answer: ask again in a second (not a third of the lease:
                // a passing error would keep the bot away for that long).
                if Task.isCancelled { break }
                logger.error("channels: could not take a channel's lease", metadata: ["channel_id": .string(id), "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let lease = leased else {
                // Another server holds it: look again in a third of the lease.
                try? await Task.sleep(for: .milliseconds(max(ttl / 3, 200)))
                continue
            }
            await runLeased(lease)
            if Task.isCancelled { break }
        }
        try? await store.releaseLease(id, owner: runtime.node)
    }

    /// Everything this server does for the channel while it holds the lease at `lease`.
    func runLeased(_ lease: Int64) async {
        let row: ChannelRuntimeRow
        do {
            guard let found = try await store.runtimeRow(id), !found.deleted else { return }
            row = found
        } catch {
            try? await Task.sleep(for: .seconds(1))
            return
        }
        let client: TelegramClient
        let owned: HTTPClient?
        do {
            (client, owned) = try service.connector.client(for: row)
        } catch {
            await report(.error, error: "\(error)")
            try? await Task.sleep(for: .seconds(configuration.maxBackoffSeconds))
            return
        }
        let fence = ChannelStore.fence(id, generation: lease)
        let holding = Gauge(label: "sessiond_channel_polling", dimensions: [("channel_id", id)])
        holding.record(1)
        defer { holding.record(0) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.renew(lease) }
            group.addTask { await self.intake(row, client: client, fence: fence) }
            group.addTask { await self.handleInbox(row.channel, client: client, fence: fence) }
            group.addTask { await self.sendOutbox(client: client) }
            // The first to end (the lease lost, cancellation) ends them all.
            await group.next()
            group.cancelAll()
        }
        try? await owned?.shutdown()
    }

    /// Renews the lease every third of its life; returns when it is lost (or on cancellation).
    func renew(_ lease: Int64) async {
        let ttl = Int64(configuration.leaseTTLSeconds) * 1000
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(max(ttl / 3, 100)))
            if Task.isCancelled { return }
            let renewed = try? await store.lease(id, owner: runtime.node, ttlMilliseconds: ttl, now: service.clock.now())
            guard renewed == lease else { return }
        }
    }

    // MARK: status

    func report(_ status: Channel.Status, error: String? = nil) async {
        let changed = reported.withLock { last -> Bool in
            guard last.status != status || (status == .error && last.error != error) else { return false }
            last = (status, error)
            return true
        }
        guard changed else { return }
        do {
            guard let channel = try await store.channel(id), channel.desired == .connected, channel.generation == generation else { return }
            let now = service.clock.now()
            var statements = store.setStatus(id, status, error: error, at: now)
            // An event each time `status` becomes connected, disconnected or error (a new error text
            // while already in error only updates `last_error`).
            if channel.status != status, status != .connecting {
                statements += service.events.append([service.event("channel." + status.rawValue, channel, at: now, error: error)])
            }
            try await service.storage.write(statements)
            service.didCommitEvents()
        } catch {
            reported.withLock { $0 = (nil, nil) }
            logger.warning("channels: could not record a status", metadata: ["channel_id": .string(id), "error": "\(error)"])
        }
    }

    func failed(_ failure: TelegramFailure) async {
        await report(.error, error: failure.description)
    }

    // MARK: intake

    /// Reaches Telegram (`getMe`), then polls or sets the webhook; on failures retries with backoff.
    func intake(_ row: ChannelRuntimeRow, client: TelegramClient, fence: SQLStatement) async {
        var backoff = 1.0
        var offset = row.pollOffset
        var reached = false
        while !Task.isCancelled {
            do throws(TelegramFailure) {
                if !reached {
                    let me = try await client.call("getMe", BotAPI.None(), as: BotAPI.User.self)
                    try? await store.saveBot(id, Channel.Bot(id: me.id, username: me.username, firstName: me.firstName))
                    switch row.channel.mode {
                    case .polling:
                        _ = try await client.call("deleteWebhook", BotAPI.DeleteWebhook(), as: BotAPI.Ignored.self)
                    case .webhook:
                        guard let url = row.channel.webhookURL(base: configuration.publicBaseURL) else {
                            await report(.error, error: "PUBLIC_BASE_URL is not set: a webhook channel needs it")
                            try? await Task.sleep(for: .seconds(configuration.maxBackoffSeconds))
                            continue
                        }
                        guard let box = configuration.secretBox, let secret = try? box.open(row.webhookSecretSealed, boundTo: id + ":webhook") else {
                            await report(.error, error: "the webhook secret does not open with CHANNELS_SECRET_KEY")
                            return
                        }
                        _ = try await client.call("setWebhook", BotAPI.SetWebhook(url: url, secretToken: secret), as: BotAPI.Ignored.self)
                        service.forgetWebhookInfo(id)
                    }
                    reached = true
                    backoff = 1
                    await report(.connected)
                }
                guard row.channel.mode == .polling else {
                    // Webhook mode: Telegram calls us; nothing to poll. Stay until cancelled.
                    try? await Task.sleep(for: .seconds(3600))
                    continue
                }
                let timeout = configuration.pollTimeoutSeconds
                let updates = try await client.call(
                    "getUpdates", BotAPI.GetUpdates(offset: offset, timeout: timeout), as: [RawUpdate].self, timeout: .seconds(Int64(timeout) + 15))
                if reported.withLock({ $0.status }) != .connected { await report(.connected) }
                backoff = 1
                guard !updates.isEmpty else { continue }
                let next = (updates.map(\.updateID).max() ?? offset - 1) + 1
                do {
                    try await service.storage.write(
                        ChannelStore.store(updates.map { ($0.updateID, $0.chatID, $0.body) }, channelID: id, offset: next, at: service.clock.now()) + [fence])
                } catch {
                    // Lost the lease (the fence) or the database: do not confirm these to Telegram; the next holder reads them again.
                    logger.warning("channels: could not store updates", metadata: ["channel_id": .string(id), "error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                    return
                }
                offset = next
                inboxBell.ring()
            } catch {
                if Task.isCancelled { return }
                await failed(error)
                if error.refusesToken && !reached {
                    // Retried only on connect or a new token (both start a new generation).
                    try? await Task.sleep(for: .seconds(365 * 24 * 3600))
                    return
                }
                let wait = error.retryAfter.map(Double.init) ?? backoff
                backoff = min(backoff * 2, Double(configuration.maxBackoffSeconds))
                try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            }
        }
    }

    // MARK: inbox

    func handleInbox(_ channel: Channel, client: TelegramClient, fence: SQLStatement) async {
        var failures: [Int64: Int] = [:]
        while !Task.isCancelled {
            do {
                let current = try await store.channel(id) ?? channel
                for stored in try await store.unhandled(id, limit: 100) {
                    if Task.isCancelled { return }
                    let now = service.clock.now()
                    guard let update = try? JSONDecoder().decode(BotAPI.Update.self, from: Data(stored.body.utf8)) else {
                        try await service.storage.write([ChannelSQL.markHandled(channelID: id, updateID: stored.updateID, error: "not an update", at: now), fence])
                        continue
                    }
                    do {
                        try await runtime.handler.handle(
                            update, channel: current, client: client,
                            finish: [ChannelSQL.markHandled(channelID: id, updateID: stored.updateID, error: nil, at: now), fence])
                        failures[stored.updateID] = nil
                        Counter(label: "sessiond_channel_updates_total", dimensions: [("result", "handled")]).increment()
                    } catch StorageError.conflict {
                        return  // handled elsewhere, or the lease is gone
                    } catch {
                        // A failure that repeats is recorded (counted in `errors`) and the next update goes on.
                        let count = (failures[stored.updateID] ?? 0) + 1
                        failures[stored.updateID] = count
                        logger.warning("channels: an update failed", metadata: ["channel_id": .string(id), "update_id": "\(stored.updateID)", "error": "\(error)"])
                        if count >= 3 {
                            Counter(label: "sessiond_channel_updates_total", dimensions: [("result", "failed")]).increment()
                            try await service.storage.write([ChannelSQL.markHandled(channelID: id, updateID: stored.updateID, error: "\(error)", at: now), fence])
                            failures[stored.updateID] = nil
                        } else {
                            try? await Task.sleep(for: .milliseconds(200 * count))
                        }
                        break
                    }
                }
                outboxBell.ring()
            } catch {
                if Task.isCancelled { return }
                logger.warning("channels: inbox", metadata: ["channel_id": .string(id), "error": "\(error)"])
            }
            await inboxBell.wait(for: .milliseconds(500))
        }
    }

    // MARK: outbox

    /// Sends the outbox in order per chat, paced. While this server holds the lease it is the
    /// only sender of the channel, so the pending messages are kept in a queue per chat: read
    /// whole every 5 s, and in between only those after the newest one read. (Message ids are
    /// taken before commit, so one committed late with an older id waits for the next whole read.)
    /// Each chat's first message is the only one that may go.
    func sendOutbox(client: TelegramClient) async {
        var queues: [Int64: [PendingMessage]] = [:]
        var answers: [PendingMessage] = []
        var cursor = ""
        var lastWholeRead = ContinuousClock.now - .seconds(60)
        while !Task.isCancelled {
            var wait: Int64 = 1000
            do {
                if ContinuousClock.now - lastWholeRead > .seconds(5) {
                    (queues, answers, cursor, lastWholeRead) = ([:], [], "", ContinuousClock.now)
                }
                while true {
                    let fresh = try await store.pending(id, after: cursor, limit: 500)
                    for message in fresh {
                        if let chat = message.chatID { queues[chat, default: []].append(message) } else { answers.append(message) }
                    }
                    cursor = fresh.last?.id ?? cursor
                    if fresh.count < 500 { break }
                }
                // Callback answers first (a spinner is waiting), then each chat's oldest message, oldest chats first.
                var index = 0
                while index < answers.count, !Task.isCancelled {
                    let now = service.clock.now().milliseconds
                    if answers[index].nextAttemptAt > now {
                        wait = min(wait, answers[index].nextAttemptAt - now)
                        index += 1
                        continue
                    }
                    if let delay = pacing.withLock({ $0.take(chat: nil, now: now) }) {
                        wait = min(wait, delay)
                        break
                    }
                    if let retry = await send(answers[index], client: client) { answers[index] = retry; index += 1 } else { answers.remove(at: index) }
                }
                for chat in queues.keys.sorted(by: { queues[$0]![0].id < queues[$1]![0].id }) where !Task.isCancelled {
                    while let first = queues[chat]?.first {
                        let now = service.clock.now().milliseconds
                        if first.nextAttemptAt > now {
                            wait = min(wait, first.nextAttemptAt - now)
                            break
                        }
                        if let delay = pacing.withLock({ $0.take(chat: chat, now: now) }) {
                            wait = min(wait, delay)
                            break
                        }
                        if let retry = await send(first, client: client) {
                            queues[chat]![0] = retry
                        } else {
                            queues[chat]!.removeFirst()
                        }
                    }
                    if queues[chat]?.isEmpty == true { queues[chat] = nil }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("channels: outbox", metadata: ["channel_id": .string(id), "error": "\(error)"])
            }
            // Paced out: come back when a token is there, but not more than 50 times a second.
            await outboxBell.wait(for: .milliseconds(max(wait, 20)))
        }
    }

    /// Sends one message and records what came of it; the message again (with its next attempt)
    /// when it is to be retried, nil when it is done (sent, or failed for good).
    func send(_ message: PendingMessage, client: TelegramClient) async -> PendingMessage? {
        let now = service.clock.now()
        let statement: SQLStatement
        var retry: PendingMessage?
        var result = "sent"
        defer { Counter(label: "sessiond_channel_messages_total", dimensions: [("result", result)]).increment() }
        do throws(TelegramFailure) {
            guard let outgoing = try? JSONDecoder().decode(OutgoingMessage.self, from: Data(message.payload.utf8)) else {
                result = "failed"
                try? await service.storage.write([store.markFailed(message.id, error: "unreadable payload", at: now)])
                return nil
            }
            try await deliver(outgoing, client: client)
            statement = store.markSent(message.id, at: now)
            if reported.withLock({ $0.status }) == .error { await report(.connected) }
        } catch {
            if error.countsAsDone {
                statement = store.markSent(message.id, at: now)
            } else if let seconds = error.retryAfter {
                result = "rate_limited"
                let until = now.milliseconds + Int64(seconds) * 1000
                if let chat = message.chatID { pacing.withLock { $0.block(chat: chat, until: until) } }
                statement = store.retryLater(message.id, error: error.description, at: until)
                retry = message
                retry?.nextAttemptAt = until
            } else if error.isTransient {
                result = "retried"
                await failed(error)
                let backoff = min(Int64(1000) << min(message.attempts, 6), Int64(configuration.maxBackoffSeconds) * 1000)
                statement = store.retryLater(message.id, error: error.description, at: now.milliseconds + backoff)
                retry = message
                retry?.nextAttemptAt = now.milliseconds + backoff
            } else {
                result = "failed"
                try? await store.countError(id)
                statement = store.markFailed(message.id, error: error.description, at: now)
            }
        }
        retry?.attempts += 1
        do {
            try await service.storage.write([statement])
        } catch {
            logger.warning("channels: could not record a message's outcome", metadata: ["channel_id": .string(id), "error": "\(error)"])
        }
        return retry
    }

    func deliver(_ message: OutgoingMessage, client: TelegramClient) async throws(TelegramFailure) {
        switch message {
        case .text(let chatID, let text, let keyboard):
            _ = try await client.call("sendMessage", SendMessage(chatID: chatID, text: text, replyMarkup: keyboard), as: BotAPI.Ignored.self)
        case .inviteQR(let chatID, let url, let caption):
            guard let png = try? QRCode.png(url) else { throw .api(status: 400, description: "could not draw the QR code", retryAfter: nil) }
            try await client.sendPhoto(chatID: chatID, png: png, caption: caption)
        case .callbackAnswer(let queryID, let text):
            _ = try await client.call("answerCallbackQuery", AnswerCallback(callbackQueryID: queryID, text: text), as: BotAPI.Ignored.self)
        case .editKeyboard(let chatID, let messageID, let keyboard):
            _ = try await client.call("editMessageReplyMarkup", EditKeyboard(chatID: chatID, messageID: messageID, replyMarkup: keyboard), as: BotAPI.Ignored.self)
        }
    }

    struct SendMessage: Encodable {
        var chatID: Int64
        var text: String
        var replyMarkup: BotAPI.Keyboard?
        enum CodingKeys: String, CodingKey { case chatID = "chat_id", text, replyMarkup = "reply_markup" }
    }

    struct EditKeyboard: Encodable {
        var chatID: Int64
        var messageID: Int64
        var replyMarkup: BotAPI.Keyboard
        enum CodingKeys: String, CodingKey { case chatID = "chat_id", messageID = "message_id", replyMarkup = "reply_markup" }
    }

    struct AnswerCallback: Encodable {
        var callbackQueryID: String
        var text: String?
        enum CodingKeys: String, CodingKey { case callbackQueryID = "callback_query_id", text }
    }
}

/// An update as `getUpdates` answers it: its id, and its JSON kept whole for the inbox.
struct RawUpdate: Decodable, Sendable {
    var updateID: Int64
    var chatID: Int64?
    var body: String

    init(from decoder: any Decoder) throws {
        let value = try JSONValue(from: decoder)
        guard case .object(let object) = value, case .int(let id)? = object["update_id"] else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "no update_id"))
        }
        updateID = id
        chatID = ChannelStore.chatID(of: value)
        body = String(decoding: (try? JSONValue.encoder.encode(value)) ?? Data(), as: UTF8.self)
    }
}
