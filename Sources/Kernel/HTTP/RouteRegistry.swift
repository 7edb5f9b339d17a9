import Hummingbird
import Synchronization

/// A query parameter as the OpenAPI document shows it.
public struct QueryParameter: Sendable {
    public var name: String
    public var schema: JSONValue

    public init(_ name: String, schema: JSONValue) {
        self.name = name
        self.schema = schema
    }

    public static func limit(maximum: Int) -> QueryParameter {
        QueryParameter("limit", schema: ["type": "integer", "minimum": 1, "maximum": .int(Int64(maximum))])
    }

    public static func cursor(pattern: String? = nil) -> QueryParameter {
        var schema: [String: JSONValue] = ["type": "string", "description": "next_cursor of the previous page"]
        if let pattern { schema["pattern"] = .string(pattern) }
        return QueryParameter("cursor", schema: .object(schema))
    }
}

/// Who may call a route, declared where the route is registered and enforced by one middleware.
public enum RouteAccess: Sendable, Equatable {
    /// No credential needed (`/health`, `/ready`, `/openapi.json`, login links).
    case `public`
    /// An API key or a login session is required.
    case key
}

/// What a route is, for the OpenAPI document, for telling 405 from 404, and for its policy.
public struct RouteDescription: Sendable {
    public var method: HTTPRequest.Method
    /// Path in OpenAPI form: `/api/sessions/{id}`.
    public var path: String
    public var summary: String
    public var tag: String
    public var requestSchema: String?
    public var responseSchema: String?
    public var successStatus: Int
    public var errorStatuses: [Int]
    public var queryParameters: [QueryParameter]
    public var access: RouteAccess
    /// The largest request body this route takes; nil means the server's default.
    public var maxBodyBytes: Int?
    /// The request body's media type, for the OpenAPI document.
    public var requestMediaType: String
    /// Further media types the route takes, each with its own schema (a photo as raw bytes or as a form).
    public var alternativeRequests: [String: String] = [:]
    /// The success answer's media type, for the OpenAPI document.
    public var responseMediaType: String
    /// How errors are answered: problem+json, or an HTML page for the dashboard's pages.
    public var errorMediaType: String

    public init(
        _ method: HTTPRequest.Method, _ path: String, summary: String, tag: String,
        request: String? = nil, response: String? = nil, status: Int = 200, errors: [Int] = [],
        query: [QueryParameter] = [], access: RouteAccess? = nil, maxBodyBytes: Int? = nil,
        requestMediaType: String = "application/json", responseMediaType: String = "application/json",
        errorMediaType: String = "application/problem+json"
    ) {
        self.method = method
        self.path = path
        self.summary = summary
        self.tag = tag
        self.requestSchema = request
        self.responseSchema = response
        self.successStatus = status
        self.errorStatuses = errors
        self.queryParameters = query
        // Everything under /api/ needs a key unless a route says otherwise.
        self.access = access ?? (path.hasPrefix("/api/") ? .key : .public)
        self.maxBodyBytes = maxBodyBytes
        self.requestMediaType = requestMediaType
        self.responseMediaType = responseMediaType
        self.errorMediaType = errorMediaType
    }

    /// The Hummingbird form of the path: `/api/sessions/:id`.
    public var routerPath: RouterPath {
        RouterPath(path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
        }.joined(separator: "/"))
    }

    /// The path's segments; nil where the segment is a parameter.
    var segments: [String?] {
        path.split(separator: "/").map { $0.hasPrefix("{") ? nil : String($0) }
    }

    /// 1 for each constant segment, 0 for each parameter, in order.
    var specificity: [Int] { segments.map { $0 == nil ? 0 : 1 } }

    func matches(path requestPath: Substring) -> Bool {
        Self.matches(segments, requestPath.split(separator: "/"))
    }

    static func matches(_ pattern: [String?], _ actual: [Substring]) -> Bool {
        guard pattern.count == actual.count else { return false }
        for (expected, given) in zip(pattern, actual) {
            if let expected, expected != given { return false }
        }
        return true
    }
}

/// Every route the application serves. Modules add routes through `RouteRegistry.add`, which both
/// registers the handler with the router and records its description.
public final class RouteRegistry: Sendable {
    private let routes = Mutex<[RouteDescription]>([])
    private struct Compiled: Sendable {
        var route: RouteDescription
        var segments: [String?]
        var specificity: [Int]
    }
    private let compiled = Mutex<[Compiled]>([])

    public init() {}

    public var all: [RouteDescription] { routes.withLock { $0 } }

    public func add(
        _ description: RouteDescription,
        to router: some RouterMethods<SessiondRequestContext>,
        handler: @escaping @Sendable (Request, SessiondRequestContext) async throws -> Response
    ) {
        routes.withLock { $0.append(description) }
        compiled.withLock { $0.append(Compiled(route: description, segments: description.segments, specificity: description.specificity)) }
        router.on(description.routerPath, method: description.method, use: handler)
    }

    /// The route that serves `method` on `path`, or (for a 405) the most specific route on that path.
    /// Like the router, a constant segment beats a parameter.
    /// Runs on every request, so the patterns are split once, when routes are added.
    public func route(method: HTTPRequest.Method, path: Substring) -> RouteDescription? {
        let actual = path.split(separator: "/")
        var best: (route: RouteDescription, specificity: [Int])?
        for compiled in compiled.withLock({ $0 }) where RouteDescription.matches(compiled.segments, actual) {
            if let current = best {
                if current.specificity.lexicographicallyPrecedes(compiled.specificity)
                    || (current.specificity == compiled.specificity && current.route.method != method && compiled.route.method == method)
                {
                    best = (compiled.route, compiled.specificity)
                }
            } else {
                best = (compiled.route, compiled.specificity)
            }
        }
        return best?.route
    }

    /// The methods served on `path`, when some route matches it (a 405 rather than a 404). Like
    /// the router, a constant segment beats a parameter: `/api/sessions/create` is the create
    /// route's path, not a session id.
    public func allowedMethods(for path: Substring) -> [HTTPRequest.Method] {
        let matching = routes.withLock { routes in routes.filter { $0.matches(path: path) } }
        guard let best = matching.map(\.specificity).max(by: { $0.lexicographicallyPrecedes($1) }) else { return [] }
        return matching.filter { $0.specificity == best }.map(\.method)
    }
}
