import Foundation
import Kernel

/// What the channels module takes in and keeps of chats: Telegram's webhook POSTs (the secret
/// checked in constant time before anything is stored), and the retention and erasure of chats'
/// updates and texts.
extension ChannelService {
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
