import HTTPTypes
import Hummingbird
import Kernel

/// Everything the access module refuses, each with its problem+json form.
public enum AccessError: ProblemConvertible, Equatable {
    case missingKey
    case malformedKey
    case invalidKey
    case expiredKey
    case revokedKey
    /// A deliverer key made before deliverers served one owner: it has no `user_id`.
    case keyNeedsOwner
    case malformedSession
    case invalidSession
    case expiredSession
    case revokedSession
    case forbidden(String)
    case foreignOrigin
    case rateLimited(retryAfter: Int, limit: Int, reset: Int)
    case authThrottled(retryAfter: Int)
    case notFound(String)
    case notLoginSession
    case invalid(field: String, detail: String)

    public var problem: Problem {
        switch self {
        case .missingKey:
            return Self.unauthorized("missing-key", "Missing API key", "This route needs an API key: `Authorization: Bearer KEY` or `X-API-Key: KEY`.")
        case .malformedKey:
            return Self.unauthorized("malformed-key", "Malformed API key", "The credential is not a well-formed API key (check for a typo or a cut-off copy).")
        case .invalidKey:
            return Self.unauthorized("invalid-key", "Invalid API key", "No such API key.")
        case .expiredKey:
            return Self.unauthorized("expired-key", "Expired API key", "This API key has expired.")
        case .revokedKey:
            return Self.unauthorized("revoked-key", "Revoked API key", "This API key was revoked.")
        case .keyNeedsOwner:
            return Self.unauthorized(
                "key-needs-owner", "Key needs an owner",
                "This deliverer key names no owner (user_id); an admin or the owner makes a new one with deliverer_id and user_id.")
        case .malformedSession:
            return Self.unauthorized("malformed-session", "Malformed login session", "The login cookie is not one this server gives out; log in again.")
        case .invalidSession:
            return Self.unauthorized("invalid-session", "Unknown login session", "No such login session; log in again.")
        case .expiredSession:
            return Self.unauthorized("expired-session", "Expired login session", "This login session has expired; log in again.")
        case .revokedSession:
            return Self.unauthorized("revoked-session", "Revoked login session", "This login session was ended; log in again.")
        case .forbidden(let detail):
            return Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: detail)
        case .foreignOrigin:
            return Problem(
                status: .forbidden, slug: "forbidden-origin", title: "Cross-site request refused",
                detail: "A change made with the login cookie must come from this server's own pages (Origin).")
        case .rateLimited(let retryAfter, let limit, let reset):
            var problem = Problem(
                status: .tooManyRequests, slug: "rate-limited", title: "Too many requests",
                detail: "This key's request budget is spent; retry after \(retryAfter) s.")
            problem.headers[.retryAfter] = String(retryAfter)
            problem.headers[.rateLimitLimit] = String(limit)
            problem.headers[.rateLimitRemaining] = "0"
            problem.headers[.rateLimitReset] = String(reset)
            return problem
        case .authThrottled(let retryAfter):
            var problem = Problem(
                status: .tooManyRequests, slug: "auth-throttled", title: "Too many failed authentications",
                detail: "Too many failed authentications from this address; retry after \(retryAfter) s.")
            problem.headers[.retryAfter] = String(retryAfter)
            return problem
        case .notFound(let detail):
            return .notFound(detail)
        case .notLoginSession:
            return .conflict("not-a-login-session", "This request is authenticated by an API key, not a login session.", title: "Not a login session")
        case .invalid(let field, let detail):
            return .validation(field, detail)
        }
    }

    static func unauthorized(_ slug: String, _ title: String, _ detail: String) -> Problem {
        var problem = Problem(status: .unauthorized, slug: slug, title: title, detail: detail)
        problem.headers[.wwwAuthenticate] = "Bearer realm=\"sessiond\""
        return problem
    }
}

extension HTTPField.Name {
    public static let retryAfter = HTTPField.Name("Retry-After")!
    public static let rateLimitLimit = HTTPField.Name("RateLimit-Limit")!
    public static let rateLimitRemaining = HTTPField.Name("RateLimit-Remaining")!
    public static let rateLimitReset = HTTPField.Name("RateLimit-Reset")!
    public static let apiKey = HTTPField.Name("X-API-Key")!
}
