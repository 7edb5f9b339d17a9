import Hummingbird
import Logging

/// Who is calling. The access module will fill this from API keys and login cookies; until then
/// every caller is `anonymous`, and services already take it so that rules can grow into it.
public struct Caller: Sendable, Equatable {
    public enum Role: String, Sendable { case anonymous, admin, owner, viewer, deliverer }
    public var role: Role
    public var id: String?
    public var userID: String?
    public var delivererID: String?

    public init(role: Role, id: String? = nil, userID: String? = nil, delivererID: String? = nil) {
        self.role = role
        self.id = id
        self.userID = userID
        self.delivererID = delivererID
    }

    public static let anonymous = Caller(role: .anonymous)
}

public struct SessiondRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String = ""
    public var caller: Caller = .anonymous
    /// JSON bodies over this size are refused with 413 (routes taking photos raise it).
    public var maxUploadSize: Int = 1 << 20

    public init(source: Source) {
        self.coreContext = .init(source: source)
    }
}
