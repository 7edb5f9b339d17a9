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

/// What a route is, for the OpenAPI document and for telling 405 from 404.
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

    public init(
        _ method: HTTPRequest.Method, _ path: String, summary: String, tag: String,
        request: String? = nil, response: String? = nil, status: Int = 200, errors: [Int] = [],
        query: [QueryParameter] = []
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
    }

    /// The Hummingbird form of the path: `/api/sessions/:id`.
    public var routerPath: RouterPath {
        RouterPath(path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
        }.joined(separator: "/"))
    }

    /// 1 for each constant segment, 0 for each parameter, in order.
    var specificity: [Int] {
        path.split(separator: "/").map { $0.hasPrefix("{") ? 0 : 1 }
    }

    func matches(path requestPath: Substring) -> Bool {
        let pattern = path.split(separator: "/")
        let actual = requestPath.split(separator: "/")
        guard pattern.count == actual.count else { return false }
        for (expected, given) in zip(pattern, actual) where !(expected.hasPrefix("{") || expected == given) {
            return false
        }
        return true
    }
}

/// Every route the application serves. Modules add routes through `RouteRegistry.add`, which both
/// registers the handler with the router and records its description.
public final class RouteRegistry: Sendable {
    private let routes = Mutex<[RouteDescription]>([])

    public init() {}

    public var all: [RouteDescription] { routes.withLock { $0 } }

    public func add(
        _ description: RouteDescription,
        to router: some RouterMethods<SessiondRequestContext>,
        handler: @escaping @Sendable (Request, SessiondRequestContext) async throws -> Response
    ) {
        routes.withLock { $0.append(description) }
        router.on(description.routerPath, method: description.method, use: handler)
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
