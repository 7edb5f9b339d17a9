import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The one place route policies are enforced, placed before idempotency: the route's body limit;
/// for routes that need a key, authentication (API key, else the login cookie), the failed-auth
/// throttle per client address, CSRF (a change made with the cookie needs this server's Origin),
/// the per-key rate limit, and an audit line for each refusal.
public struct AccessMiddleware: RouterMiddleware {
    public typealias Context = SessiondRequestContext
    let access: AccessService
    let routes: RouteRegistry
    let clock: WallClock
    let defaultBodyLimit: Int

    public init(access: AccessService, routes: RouteRegistry, clock: WallClock, defaultBodyLimit: Int) {
        self.access = access
        self.routes = routes
        self.clock = clock
        self.defaultBodyLimit = defaultBodyLimit
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let route = routes.route(method: request.method, path: Substring(request.uri.path))
        context.maxUploadSize = route?.maxBodyBytes ?? defaultBodyLimit
        let needsKey = route.map { $0.access == .key } ?? request.uri.path.hasPrefix("/api/")
        guard needsKey else { return try await next(request, context) }

        let now = clock.now()
        let credential = Self.credential(request.headers)
        let caller: Caller
        do {
            caller = try await access.authenticate(credential, now: now)
        } catch let error as AccessError {
            if credential != .none {
                // The throttle counts failures per client address and refuses only failures: a
                // valid credential is never refused, whoever else shares the address (a proxy, a NAT).
                if access.failureLimiter.isEnabled {
                    let address = context.clientAddress ?? "unknown"
                    let budget = access.failureLimiter.take(address, nowMilliseconds: now.milliseconds)
                    if !budget.allowed { throw AccessError.authThrottled(retryAfter: budget.retryAfter) }
                }
                await access.record(
                    AuditAction.authenticationFailed, .failure, userID: nil, caller: nil,
                    details: ["reason": .string(error.problem.slug), "method": .string(request.method.rawValue), "path": .string(request.uri.path)],
                    ip: context.clientAddress)
            }
            throw error
        }
        if caller.kind == .loginSession, !Self.isSafe(request.method), !isOwnOrigin(request) {
            await access.record(
                AuditAction.accessDenied, .failure, userID: caller.userID, caller: caller,
                details: ["reason": "foreign-origin", "method": .string(request.method.rawValue), "path": .string(request.uri.path)],
                ip: context.clientAddress)
            throw AccessError.foreignOrigin
        }
        var limit: RateLimiter.Decision?
        // Every API key and login session has a budget; the operator's own ADMIN_API_KEY has none.
        if access.keyLimiter.isEnabled, !access.isBootstrapAdmin(caller) {
            let decision = access.keyLimiter.take(caller.credentialID ?? caller.idempotencyScope, nowMilliseconds: now.milliseconds)
            guard decision.allowed else {
                throw AccessError.rateLimited(retryAfter: decision.retryAfter, limit: decision.limit, reset: decision.reset)
            }
            limit = decision
        }
        context.caller = caller
        do {
            // A channel's own key works on its channel's routes only (the channels module answers 404 for another channel).
            if caller.role == AccessRole.channel.rawValue, !(request.uri.path == "/api/channels" || request.uri.path.hasPrefix("/api/channels/")) {
                throw AccessError.forbidden("A channel key is only for /api/channels/{its channel}.")
            }
            var response = try await next(request, context)
            if let limit { Self.addLimitHeaders(&response.headers, limit) }
            return response
        } catch {
            let problem = (error as? Problem) ?? (error as? any ProblemConvertible)?.problem
            if var problem, problem.status == .forbidden {
                await access.record(
                    AuditAction.accessDenied, .failure, userID: caller.userID, caller: caller,
                    details: ["reason": .string(problem.slug), "method": .string(request.method.rawValue), "path": .string(request.uri.path)],
                    ip: context.clientAddress)
                if let limit { Self.addLimitHeaders(&problem.headers, limit) }
                throw problem
            }
            throw error
        }
    }

    static func addLimitHeaders(_ headers: inout HTTPFields, _ limit: RateLimiter.Decision) {
        headers[.rateLimitLimit] = String(limit.limit)
        headers[.rateLimitRemaining] = String(limit.remaining)
        headers[.rateLimitReset] = String(limit.reset)
    }

    /// `Authorization: Bearer KEY`, else `X-API-Key: KEY`, else the login cookie.
    static func credential(_ headers: HTTPFields) -> Credential {
        if let authorization = headers[.authorization] {
            // `Bearer TOKEN`, the scheme in any case; read as bytes (this runs on every request).
            let bytes = Array(authorization.utf8)
            let scheme: [UInt8] = Array("bearer".utf8)
            guard bytes.count > scheme.count, bytes[scheme.count] == 32,
                zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 })
            else { return .malformedHeader }
            return .key(trimmed(bytes[(scheme.count + 1)...]))
        }
        if let key = headers[.apiKey] { return .key(trimmed(Array(key.utf8)[...])) }
        if let token = cookie(AccessConfiguration.cookieName, in: headers) { return .cookie(token) }
        return .none
    }

    static func trimmed(_ bytes: ArraySlice<UInt8>) -> String {
        var slice = bytes
        while let first = slice.first, first == 32 || first == 9 { slice = slice.dropFirst() }
        while let last = slice.last, last == 32 || last == 9 { slice = slice.dropLast() }
        return String(decoding: slice, as: UTF8.self)
    }

    /// A cookie's value from every `Cookie` header line.
    public static func cookie(_ name: String, in headers: HTTPFields) -> String? {
        for line in headers[values: .cookie] {
            for pair in line.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                guard let equals = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<equals] == name { return String(trimmed[trimmed.index(after: equals)...]) }
            }
        }
        return nil
    }

    static func isSafe(_ method: HTTPRequest.Method) -> Bool {
        method == .get || method == .head || method == .options
    }

    /// The request's `Origin` is this server: the configured public URL's origin, or the origin the
    /// request itself was addressed to (its `Host`). A page on another port of the same host is not.
    func isOwnOrigin(_ request: Request) -> Bool {
        Self.isOwnOrigin(request.headers[.origin], host: request.head.authority, publicBaseURL: access.configuration.publicBaseURL)
    }

    public static func isOwnOrigin(_ origin: String?, host: String?, publicBaseURL: String?) -> Bool {
        guard let origin = origin?.lowercased(), origin != "null" else { return false }
        if let publicBaseURL, let own = Self.origin(of: publicBaseURL), own == origin { return true }
        guard let host = host?.lowercased() else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }

    /// `scheme://host[:port]` of a URL, lower-cased.
    static func origin(of url: String) -> String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return (url[..<schemeEnd.lowerBound] + "://" + authority).lowercased()
    }
}
