import Foundation
import Hummingbird
import Kernel

/// A bot connection: one Telegram bot working for one owner (`user_id`). The token, the proxy
/// password and the webhook secret are kept sealed and never leave this module's store.
public struct Channel: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable { case polling, webhook }
    public enum Desired: String, Sendable { case connected, disconnected }
    public enum Status: String, Sendable { case disconnected, connecting, connected, error }

    public struct Proxy: Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable { case http, socks5 }
        public var type: Kind
        public var host: String
        public var port: Int
        public var username: String?
        public var hasPassword: Bool
    }

    public struct Bot: Sendable, Equatable, Codable {
        public var id: Int64
        public var username: String?
        public var firstName: String
    }

    public var id: String
    public var kind: String
    public var name: String
    public var userID: String
    public var mode: Mode
    public var proxy: Proxy?
    public var defaultPackageValueCents: Int64
    public var bot: Bot?
    public var desired: Desired
    public var status: Status
    public var lastError: String?
    public var lastErrorAt: Timestamp?
    public var since: Timestamp
    /// Bumped by every change of what the connection uses (token, mode, proxy) and by `connect`:
    /// a running connection with an older generation starts again.
    public var generation: Int64
    public var apiKeyID: String
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    /// The bot's id: the digits before `:` in its token (one live channel per bot).
    public static func botID(ofToken token: String) -> String? {
        guard let colon = token.firstIndex(of: ":") else { return nil }
        let digits = token[..<colon]
        let rest = token[token.index(after: colon)...]
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), rest.count >= 20,
            rest.unicodeScalars.allSatisfy({ Self.secretCharacters.contains($0) })
        else { return nil }
        return String(digits)
    }

    /// `A-Z a-z 0-9 _ -`: the characters of token secrets, webhook secrets and invite tokens.
    static let secretCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

    public func webhookURL(base: String?) -> String? {
        guard mode == .webhook, let base else { return nil }
        return Self.trimmedBase(base) + "/telegram/webhook/" + id
    }

    static func trimmedBase(_ base: String) -> String {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

/// A one-time deep link that links a Telegram user to the owner or to a deliverer.
public struct Invite: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable { case owner, deliverer }
    public var id: String
    public var channelID: String
    public var role: Role
    public var userID: String?
    public var delivererID: String?
    public var name: String?
    public var baseSalaryCents: Int64
    public var commissionPerDeliveryCents: Int64
    public var createdAt: Timestamp
    public var expiresAt: Timestamp
    public var usedAt: Timestamp?
    public var usedByTelegramUserID: Int64?
    /// Set once the owner or an admin revoked it: it links nobody from then on.
    public var revokedAt: Timestamp? = nil

    /// Whether it still links the person who opens it.
    public func isOpen(at now: Timestamp) -> Bool { usedAt == nil && revokedAt == nil && expiresAt > now }
}

/// A Telegram user linked to a channel as its owner or as one of the owner's deliverers.
public struct ChannelLink: Sendable, Equatable {
    public var id: String
    public var channelID: String
    public var role: Invite.Role
    public var userID: String?
    public var delivererID: String?
    public var name: String?
    public var baseSalaryCents: Int64
    public var commissionPerDeliveryCents: Int64
    public var telegramUserID: Int64
    public var chatID: Int64
    public var telegramUsername: String?
    public var createdAt: Timestamp
}

public struct ChannelStats: Sendable, Equatable {
    public var channelID: String
    public var updatesIn: Int64
    public var messagesOut: Int64
    public var errors: Int64
    public var lastActivityAt: Timestamp?
}

/// Everything the channels module refuses, each with its problem+json form.
public enum ChannelError: ProblemConvertible, Equatable {
    case notFound(String)
    case forbidden(String)
    case invalid(field: String, detail: String)
    case noSecretKey
    case tokenInUse
    case notConnected
    case noProxy
    case inviteGone
    case unauthorizedWebhook
    case notAnUpdate(String)
    case secretUnreadable(String)

    public var problem: Problem {
        switch self {
        case .notFound(let detail): .notFound(detail)
        case .forbidden(let detail): Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: detail)
        case .invalid(let field, let detail): .validation(field, detail)
        case .noSecretKey:
            Problem(
                status: .serviceUnavailable, slug: "no-secret-key", title: "No secret key",
                detail: "Set CHANNELS_SECRET_KEY (32 bytes in base64) so bot tokens can be stored encrypted.")
        case .tokenInUse: Problem(status: .conflict, slug: "token-in-use", title: "Bot already connected", detail: "Another channel already has this bot.")
        case .notConnected:
            Problem(status: .conflict, slug: "not-connected", title: "Bot not reached yet", detail: "The bot's username is not known yet: connect the channel first.")
        case .noProxy: Problem(status: .conflict, slug: "no-proxy", title: "No proxy", detail: "This channel has no proxy.")
        case .inviteGone: Problem(status: .gone, slug: "invite-gone", title: "Invite used, revoked or expired", detail: "This invite was used, revoked or has expired.")
        case .unauthorizedWebhook:
            Problem(status: .unauthorized, slug: "bad-webhook-secret", title: "Bad webhook secret", detail: "X-Telegram-Bot-Api-Secret-Token is missing or wrong.")
        case .notAnUpdate(let detail): Problem(status: .badRequest, slug: "not-an-update", title: "Not a Telegram update", detail: detail)
        case .secretUnreadable(let id):
            Problem(
                status: .internalServerError, slug: "secret-unreadable", title: "Stored secret unreadable",
                detail: "A secret of channel \(id) does not open with this server's CHANNELS_SECRET_KEY.")
        }
    }
}

/// The channels module's event types.
public enum ChannelEvents {
    public static let types: [(type: String, summary: String)] = [
        ("channel.created", "A bot channel was created."),
        ("channel.updated", "A channel's name, token, mode, proxy or default package value changed."),
        ("channel.deleted", "A channel was deleted: its polling or webhook stopped, its key revoked, its links and invites gone."),
        ("channel.connected", "A channel reached Telegram and is receiving updates."),
        ("channel.disconnected", "A channel was disconnected."),
        ("channel.error", "A channel's calls to the Bot API fail (data.error); the server retries by itself."),
        ("channel.invite.created", "An invite (one-time deep link) was made for a channel."),
        ("channel.invite.revoked", "An unused invite was revoked: it links nobody."),
        ("channel.link.created", "A Telegram user was linked to a channel as its owner or a deliverer."),
        ("channel.link.removed", "A link was removed; the person is a stranger to the bot again."),
    ]
}
