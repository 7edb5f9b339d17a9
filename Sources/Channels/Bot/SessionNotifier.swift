import Delivery
import Kernel
import Logging
import ServiceLifecycle

/// Reads the event log for session starts and completions, from chat or from the HTTP API alike,
/// and writes the bot's messages for them: each linked deliverer gets one message per package
/// assigned to them (with `✅ Entregue` / `❌ Falhou`), each linked owner chat the money summary.
/// The messages and the log cursor commit in one transaction guarded by the cursor's old value,
/// so servers racing share the work and a crash reads the same events again: never lost, never twice.
public final class SessionNotifier: Service, Sendable {
    let channels: ChannelService
    let delivery: DeliveryService
    let logger: Logger
    static let cursorName = "delivery-bot"
    private let bell = Doorbell()
    let onMessages: @Sendable () -> Void

    public init(channels: ChannelService, delivery: DeliveryService, logger: Logger, onMessages: @escaping @Sendable () -> Void) {
        self.channels = channels
        self.delivery = delivery
        self.logger = logger
        self.onMessages = onMessages
    }

    public func wake() { bell.ring() }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                do {
                    while try await round() {}
                } catch {
                    logger.warning("channels: session notifier", metadata: ["error": "\(error)"])
                }
                // Woken by the event feed (this server's commits, and other servers' through it);
                // the wait is only the fallback for a wake-up lost.
                await bell.wait(for: .seconds(2))
            }
        }
    }

    /// Reads one page after the cursor; true when there may be more.
    func round() async throws -> Bool {
        let storage = channels.storage
        let rows = try await storage.query("SELECT event_id FROM channel_event_cursor WHERE name = ?", [.text(Self.cursorName)])
        guard let text = try rows.first?.string(0), let cursor = EventID(text) else {
            // First start: from the log's present (sessions started before the bot existed had nobody linked).
            let head = try await channels.events.head(storage)
            try await storage.write([
                SQLStatement("INSERT INTO channel_event_cursor (name, event_id) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(Self.cursorName), .text(head.description)])
            ])
            return true
        }
        let events = try await channels.events.read(storage, after: cursor, limit: 200)
        guard let last = events.last else { return false }
        var statements: [SQLStatement] = []
        var wrote = false
        for event in events where event.type == "delivery.session.started" || event.type == "delivery.session.completed" {
            guard let sessionID = event.sessionID else { continue }
            let aggregate: DeliveryAggregate
            do {
                aggregate = try await delivery.session(sessionID, caller: .system)
            } catch DeliveryError.sessionNotFound {
                continue  // erased since: nobody to tell
            }
            // Any other failure ends the round before the cursor moves: the page is read again,
            // and no session's messages are skipped.
            let messages = event.type == "delivery.session.started" ? try await packageMessages(aggregate) : try await summaries(aggregate)
            let now = channels.clock.now()
            for (channelID, message) in messages {
                statements.append(ChannelSQL.enqueue(message, id: channels.ids.make(), channelID: channelID, at: now))
                wrote = true
            }
        }
        statements.append(
            SQLStatement(
                "UPDATE channel_event_cursor SET event_id = ? WHERE name = ? AND event_id = ?", [.text(last.id.description), .text(Self.cursorName), .text(cursor.description)],
                expectedChanges: 1))
        do {
            try await storage.write(statements)
        } catch StorageError.conflict {
            return true  // another server moved the cursor: read on from there
        }
        if wrote { onMessages() }
        return events.count == 200
    }

    func packageMessages(_ aggregate: DeliveryAggregate) async throws -> [(String, OutgoingMessage)] {
        let links = try await channels.store.links(userID: aggregate.session.userID, role: .deliverer)
        var messages: [(String, OutgoingMessage)] = []
        let session = aggregate.session
        for link in links {
            guard let delivererID = link.delivererID, aggregate.deliverer(id: delivererID) != nil else { continue }
            let mine = aggregate.packages.filter { $0.assignedDelivererID == delivererID }
            messages.append((link.channelID, .text(chatID: link.chatID, text: "🚚 \(BotTexts.title(session)) começou! Você tem \(BotTexts.packages(mine.count)):", keyboard: nil)))
            for package in mine {
                let keys = CompactID.encode(session.id) + ":" + CompactID.encode(package.id)
                var text = "📦 \(package.barcode)"
                if let recipient = package.recipient { text += "\n👤 \(recipient)" }
                if let addressID = package.addressID, let address = aggregate.addresses.first(where: { $0.id == addressID }) {
                    text += "\n📍 " + [address.street, address.number, address.district, address.city].compactMap { $0 }.joined(separator: ", ")
                }
                messages.append(
                    (link.channelID,
                     .text(
                        chatID: link.chatID, text: text,
                        keyboard: BotAPI.Keyboard([[BotAPI.Button(BotTexts.delivered, data: "ok:" + keys), BotAPI.Button(BotTexts.failed, data: "fail:" + keys)]]))))
            }
        }
        return messages
    }

    func summaries(_ aggregate: DeliveryAggregate) async throws -> [(String, OutgoingMessage)] {
        let text = BotTexts.summary(aggregate)
        return try await channels.store.links(userID: aggregate.session.userID, role: .owner).map { link in
            (link.channelID, .text(chatID: link.chatID, text: text, keyboard: nil))
        }
    }
}
