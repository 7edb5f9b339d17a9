import Hummingbird
import NIOCore
import Logging

/// Who is calling: a principal with a role and the scopes it is limited to. The kernel knows no
/// roles; the access module fills this from API keys and login cookies, and each domain module
/// decides what a role may do with its own aggregates.
public struct Caller: Sendable, Equatable {
    /// How the caller proved who it is.
    public enum Kind: String, Sendable {
        case anonymous
        case apiKey = "api_key"
        case loginSession = "login_session"
    }

    public var kind: Kind
    /// The principal, as the audit trail's `actor_id` names it (a user id, a deliverer id, `admin`).
    public var id: String?
    /// The credential that authenticated this request (an API key id or a login session id).
    public var credentialID: String?
    /// The access module's role name (`admin`, `owner`, `viewer`, `deliverer`, `channel`).
    public var role: String
    /// What the principal is limited to, by name (`user_id`, `deliverer_id`).
    public var scopes: [String: String]
    /// When the credential stops being accepted (nil: never, or not known).
    public var expiresAt: Timestamp?
    /// Set for a principal that sees only part of its tenant's data: the scope an event's
    /// audience must name (with this caller's value of it) for this caller to read the event. A
    /// deliverer (`deliverer_id`) reads its owner's events about the sessions it delivers in only.
    public var audienceScope: String?

    public init(kind: Kind, id: String?, credentialID: String? = nil, role: String, scopes: [String: String] = [:], expiresAt: Timestamp? = nil) {
        self.kind = kind
        self.id = id
        self.credentialID = credentialID
        self.role = role
        self.scopes = scopes
        self.expiresAt = expiresAt
    }

    public static let anonymous = Caller(kind: .anonymous, id: nil, role: "anonymous")
    /// The operator on the command line or a background job acting for the system.
    public static let system = Caller(kind: .anonymous, id: "system", role: "admin")

    public var isAdmin: Bool { role == "admin" }
    /// The tenant: the owner whose data this principal acts on or reads (deliverers serve one too).
    public var userID: String? { scopes["user_id"] }
    public func scope(_ name: String) -> String? { scopes[name] }

    /// What idempotency keys are scoped to: the same principal through any of its credentials.
    public var idempotencyScope: String { "\(role):\(id ?? "anonymous")" }
}

public struct SessiondRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String = ""
    public var caller: Caller = .anonymous
    /// Request bodies over this size are refused with 413 (a route's policy may raise it).
    public var maxUploadSize: Int = 1 << 20
    private let channel: any Channel

    /// Set by `RequestLogMiddleware` when the peer is a trusted proxy (`TRUSTED_PROXIES`): the
    /// client it forwarded for.
    public var forwardedClientAddress: String?

    /// The client's IP address: the one a trusted proxy forwarded for, else the socket's peer (nil
    /// in the in-process test framework). The peer is read from the channel only when asked
    /// (refusals, audits, login), not on every request.
    public var clientAddress: String? { forwardedClientAddress ?? peerAddress }

    /// The socket's peer.
    public var peerAddress: String? { channel.remoteAddress?.ipAddress }

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
