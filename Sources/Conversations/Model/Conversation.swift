import Foundation
import Kernel

/// One message of a conversation's memory.
public struct ConversationMessage: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable { case user, assistant, system }
    public var seq: Int64
    public var role: Role
    public var content: String
    public var createdAt: Timestamp
}

/// A turn as the bot sends it: its number, new messages, and what it changes.
public struct Turn: Sendable {
    public var turnID: Int64
    public var messages: [(role: ConversationMessage.Role, content: String)]
    public var state: ConversationState?
    public var profile: [String: JSONValue]?
    public var summary: String?
    /// The request body's digest: the same turn again must be the same body.
    public var digest: String

    public init(turnID: Int64, messages: [(role: ConversationMessage.Role, content: String)], state: ConversationState?, profile: [String: JSONValue]?, summary: String?, digest: String) {
        self.turnID = turnID
        self.messages = messages
        self.state = state
        self.profile = profile
        self.summary = summary
        self.digest = digest
    }
}

/// A chatbot conversation with one contact on one channel of one owner: the aggregate the kernel's
/// store keeps.
public struct Conversation: Sendable, Equatable {
    public var id: String
    /// The tenant: the owner whose conversation this is (empty for rows from before tenancy,
    /// which only an admin sees).
    public var userID: String
    public var channel: String
    public var contact: String
    public var state: ConversationState
    public var turnID: Int64
    public var summary: String?
    public var profile: LeadProfile
    public var consentGiven: Bool
    public var consentAt: Timestamp?
    /// The digest of the body of turn `turnID` (an identical repeat answers without a change).
    public var lastTurnDigest: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var expiresAt: Timestamp
    public var archivedAt: Timestamp?
    public var version: Int64
    public var messages: [ConversationMessage]

    /// A new live conversation; its id is `contact:unix_ms` (`idTime`: the creation time, or a
    /// later millisecond when that id is taken).
    public static func new(userID: String, channel: String, contact: String, at now: Timestamp, idTime: Int64? = nil, ttlSeconds: Int64) -> Conversation {
        Conversation(
            id: "\(contact):\(idTime ?? now.milliseconds)", userID: userID, channel: channel, contact: contact, state: .greeting, turnID: 0, summary: nil, profile: LeadProfile(),
            consentGiven: false, consentAt: nil, lastTurnDigest: nil, createdAt: now, updatedAt: now,
            expiresAt: Timestamp(milliseconds: now.milliseconds + ttlSeconds * 1000), archivedAt: nil, version: 1, messages: [])
    }

    public var interactionCount: Int { messages.reduce(0) { $0 + ($1.role == .user ? 1 : 0) } }
    public var qualificationScore: Int { profile.qualificationScore(interactionCount: interactionCount) }
    public var isLive: Bool { archivedAt == nil }

    public enum TurnOutcome: Sendable { case applied, repeated }

    /// Applies a turn: `turn_id` is the current one + 1; the current one again with the same body
    /// changes nothing; anything else is a conflict. Until consent, no profile and no leaving `greeting`.
    public mutating func apply(_ turn: Turn, at now: Timestamp, ttlSeconds: Int64) throws(ConversationError) -> TurnOutcome {
        guard isLive else { throw .archived(id) }
        if turn.turnID == turnID, turnID > 0 {
            guard turn.digest == lastTurnDigest else { throw .turnConflict("turn \(turn.turnID) was already applied with another body") }
            return .repeated
        }
        guard turn.turnID == turnID + 1 else {
            throw .turnConflict(turn.turnID <= turnID ? "turn \(turn.turnID) is older than the current turn \(turnID)" : "turn \(turn.turnID) skips turns: the next is \(turnID + 1)")
        }
        if let next = turn.state, next != state {
            guard consentGiven || state != .greeting else { throw .consentRequired("leaving greeting needs the contact's consent") }
            guard state.canMove(to: next) else { throw .invalidTransition(from: state, to: next) }
            state = next
        }
        if let patch = turn.profile, !patch.isEmpty {
            guard consentGiven else { throw .consentRequired("profile fields need the contact's consent") }
            do {
                profile = try profile.merging(patch)
            } catch {
                throw .invalid(field: error.field, detail: error.detail)
            }
        }
        if let summary = turn.summary { self.summary = summary }
        for message in turn.messages {
            messages.append(ConversationMessage(seq: Int64(messages.count + 1), role: message.role, content: message.content, createdAt: now))
        }
        turnID = turn.turnID
        lastTurnDigest = turn.digest
        touch(now, ttlSeconds: ttlSeconds)
        return .applied
    }

    /// Consent given (or withdrawn: the profile is cleared).
    public mutating func consent(_ given: Bool, at now: Timestamp, ttlSeconds: Int64) throws(ConversationError) {
        guard isLive else { throw .archived(id) }
        guard given != consentGiven else { return }
        consentGiven = given
        consentAt = given ? now : nil
        if !given { profile = LeadProfile() }
        touch(now, ttlSeconds: ttlSeconds)
    }

    /// Leaves the live set (idle past its time, or asked to).
    public mutating func archive(at now: Timestamp) {
        guard isLive else { return }
        archivedAt = now
        updatedAt = now
    }

    mutating func touch(_ now: Timestamp, ttlSeconds: Int64) {
        updatedAt = max(now, updatedAt)
        expiresAt = Timestamp(milliseconds: now.milliseconds + ttlSeconds * 1000)
    }
}

public enum ConversationError: ProblemConvertible, Equatable {
    case notFound(String)
    case archived(String)
    case turnConflict(String)
    case invalidTransition(from: ConversationState, to: ConversationState)
    case consentRequired(String)
    case invalid(field: String, detail: String)
    case forbidden(String)

    public var problem: Problem {
        switch self {
        case .notFound(let id): .notFound("No conversation \(id).")
        case .archived(let id): .conflict("conversation-archived", "Conversation \(id) is archived; start a new one with POST /api/conversations.")
        case .turnConflict(let detail): .conflict("turn-conflict", detail + ".", title: "Turn out of order")
        case .invalidTransition(let from, let to): .conflict("invalid-transition", "A conversation does not go from \(from.rawValue) to \(to.rawValue).", title: "State change not allowed")
        case .consentRequired(let detail): .conflict("consent-required", detail + " (POST /api/conversations/{id}/consent).", title: "Consent required")
        case .invalid(let field, let detail): .validation(field, detail)
        case .forbidden(let detail): Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: detail)
        }
    }
}
