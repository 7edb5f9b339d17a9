import Kernel

/// The roles a key or login session can have. What a role may do with a domain's aggregates is
/// decided by that domain (delivery sessions: `DeliveryAccess`); here they only name principals.
public enum AccessRole: String, Sendable, CaseIterable {
    case admin, owner, viewer, deliverer, channel

    /// Every key but the admin's belongs to a tenant (an owner's `user_id`); a deliverer key also
    /// names the deliverer, who serves that owner only.
    var needsUserID: Bool { self != .admin }
    var needsDelivererID: Bool { self == .deliverer }
}

/// An API key as stored (never the secret itself).
public struct APIKey: Sendable, Equatable {
    public var id: String
    public var name: String
    public var role: AccessRole
    public var userID: String?
    public var delivererID: String?
    /// The first characters of the key, for telling keys apart in listings.
    public var prefix: String
    public var hash: String
    public var createdAt: Timestamp
    public var expiresAt: Timestamp?
    public var revokedAt: Timestamp?
    public var lastUsedAt: Timestamp?
    /// Set when the key was rotated: the key that replaced it.
    public var replacedBy: String?
    /// A `channel` key's channel (the channels module makes these keys with their channel).
    public var channelID: String? = nil

    public var revoked: Bool { revokedAt != nil }

    /// The principal this key authenticates.
    public var caller: Caller {
        var caller = Caller.principal(kind: .apiKey, credentialID: id, role: role, userID: userID, delivererID: delivererID)
        if let channelID { caller.scopes["channel_id"] = channelID }
        caller.expiresAt = expiresAt
        return caller
    }
}

extension Caller {
    /// A principal of the access module: its id is what audit trails show as `actor_id`. Front
    /// ends acting for a person they linked (a bot's chat) make theirs here too, so a deliverer is
    /// the same principal however it comes.
    public static func principal(kind: Kind, credentialID: String?, role: AccessRole, userID: String?, delivererID: String?) -> Caller {
        var scopes: [String: String] = [:]
        if let userID { scopes["user_id"] = userID }
        if let delivererID { scopes["deliverer_id"] = delivererID }
        let id: String
        switch role {
        case .admin: id = "admin"
        case .deliverer: id = delivererID ?? "deliverer"
        case .owner, .viewer, .channel: id = userID ?? role.rawValue
        }
        var caller = Caller(kind: kind, id: id, credentialID: credentialID, role: role.rawValue, scopes: scopes)
        // A deliverer reads its owner's events about the sessions it delivers in, no others.
        if role == .deliverer { caller.audienceScope = "deliverer_id" }
        return caller
    }

    var accessRole: AccessRole? { AccessRole(rawValue: role) }
}

/// A person's login in the browser (or, later, the bot): the original design's `sessions` table.
public struct LoginSession: Sendable, Equatable {
    public var id: String
    public var tokenHash: String
    public var userID: String?
    public var delivererID: String?
    public var role: AccessRole
    public var ip: String?
    public var userAgent: String?
    public var createdAt: Timestamp
    public var expiresAt: Timestamp
    public var lastSeenAt: Timestamp
    public var revoked: Bool
    /// What started it: the API key's id (the web's key form) or `link:` and the login link's id.
    /// A viewer's login sessions are the ones its own key started.
    public var startedBy: String? = nil

    public var caller: Caller {
        var caller = Caller.principal(kind: .loginSession, credentialID: id, role: role, userID: userID, delivererID: delivererID)
        caller.expiresAt = expiresAt
        return caller
    }
}

/// One line of the auth audit log.
public struct AuthAudit: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable { case success, failure }
    public var id: String
    public var timestamp: Timestamp
    public var userID: String?
    public var action: String
    public var status: Status
    /// Canonical JSON text; never a secret.
    public var details: String
}

/// The auth audit's actions.
public enum AuditAction {
    public static let login = "login"
    public static let logout = "logout"
    public static let loginLinkCreated = "login_link.created"
    public static let keyCreated = "key.created"
    public static let keyRevoked = "key.revoked"
    public static let keyRotated = "key.rotated"
    public static let sessionRevoked = "session.revoked"
    public static let authenticationFailed = "authentication.failed"
    public static let accessDenied = "access.denied"
    public static let automationSubmitted = "automation.submitted"
}

public enum SubmissionStatus: String, Sendable, CaseIterable {
    case pending, processing, success, error
}

/// An automation job: accepted at once (202), run by `SubmissionWorker`.
public struct Submission: Sendable, Equatable {
    public var id: String
    public var automationSlug: String
    public var status: SubmissionStatus
    public var payload: JSONValue
    /// JSON text, kept as stored: a large import's result is written out without being re-parsed.
    public var result: String?
    /// JSON text.
    public var error: String?
    /// The principal that submitted it; the job runs as that principal.
    public var caller: Caller
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var attempts: Int
}
