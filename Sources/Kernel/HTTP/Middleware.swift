import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Outermost: gives every request an id (the caller's `X-Request-Id` when it is sane), puts it in
/// the logger's metadata, echoes it on the response, and logs one structured line per request.
public struct RequestLogMiddleware: RouterMiddleware {
    public typealias Context = SessiondRequestContext
    let ids: IDGenerator
    let trustedProxies: TrustedProxies

    public init(ids: IDGenerator, trustedProxies: TrustedProxies = TrustedProxies()) {
        self.ids = ids
        self.trustedProxies = trustedProxies
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let given = request.headers[.requestID]
        context.requestID = given.flatMap { Self.isAcceptable($0) ? $0 : nil } ?? ids.make()
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        if !trustedProxies.isEmpty {
            let peer = context.peerAddress
            let client = trustedProxies.client(
                peer: peer, forwarded: request.headers[values: .forwarded], forwardedFor: request.headers[values: .xForwardedFor])
            if client != peer { context.forwardedClientAddress = client }
        }
        let started = ContinuousClock.now
        var response = try await next(request, context)
        response.headers[.requestID] = context.requestID
        let elapsed = ContinuousClock.now - started
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        context.logger.info(
            "request",
            metadata: [
                "method": .string(request.method.rawValue),
                "path": .string(request.uri.path),
                "status": .stringConvertible(response.status.code),
                "duration_us": .stringConvertible(micros),
            ])
        return response
    }

    static func isAcceptable(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { $0 > 32 && $0 < 127 }
    }
}

extension HTTPField.Name {
    public static let requestID = HTTPField.Name("X-Request-Id")!
    public static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    public static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    public static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    public static let forwarded = HTTPField.Name("Forwarded")!
}

/// Turns every error into problem+json. Known problems render as they are; Hummingbird's own
/// errors (404, 413, …) get a stable type; a route that exists with another method is a 405 with
/// `Allow`; anything else is logged at error level with the request id and answered with a bare 500.
public struct ProblemMiddleware: RouterMiddleware {
    public typealias Context = SessiondRequestContext
    let routes: RouteRegistry

    public init(routes: RouteRegistry) { self.routes = routes }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return render(error, request: request, context: context)
        }
    }

    public func render(_ error: any Error, request: Request, context: Context) -> Response {
        switch error {
        case let problem as Problem:
            return problem.response()
        case let convertible as any ProblemConvertible:
            return convertible.problem.response()
        case let error as HTTPError:
            return problem(for: error, request: request).response()
        case is NIOTooManyBytesError:
            return problem(for: HTTPError(.contentTooLarge), request: request).response()
        default:
            context.logger.error("unhandled error", metadata: ["error": .string(String(reflecting: error))])
            return Problem.internalError.response()
        }
    }

    func problem(for error: HTTPError, request: Request) -> Problem {
        switch error.status {
        case .notFound:
            let allowed = routes.allowedMethods(for: Substring(request.uri.path))
            if !allowed.isEmpty {
                var problem = Problem(
                    status: .methodNotAllowed, slug: "method-not-allowed", title: "Method not allowed",
                    detail: "\(request.method.rawValue) is not served on \(request.uri.path); use \(allowed.map(\.rawValue).joined(separator: ", ")).")
                problem.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
                return problem
            }
            return Problem(status: .notFound, slug: "route-not-found", title: "Not found", detail: "No route serves \(request.uri.path).")
        case .contentTooLarge:
            return Problem(status: .contentTooLarge, slug: "body-too-large", title: "Request body too large", detail: "The request body is larger than this route accepts.")
        case .badRequest:
            return .malformedBody(error.body ?? "The request could not be read.")
        default:
            return Problem(status: error.status, slug: "http-\(error.status.code)", title: error.status.reasonPhrase, detail: error.body ?? error.status.reasonPhrase)
        }
    }
}
