import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The access contract's HTTP surface: decode, call the service, encode.
public struct AccessRoutes: Sendable {
    let access: AccessService
    let submissions: SubmissionService

    public init(access: AccessService, submissions: SubmissionService) {
        self.access = access
        self.submissions = submissions
    }

    struct CreateKeyBody: Decodable {
        var name: String
        var role: String
        var userID: String?
        var delivererID: String?
        var expiresAt: String?
        enum CodingKeys: String, CodingKey { case name, role, userID = "user_id", delivererID = "deliverer_id", expiresAt = "expires_at" }
    }

    struct LoginLinkBody: Decodable {
        var userID: String?
        enum CodingKeys: String, CodingKey { case userID = "user_id" }
    }

    struct SubmissionBody: Decodable {
        var automationSlug: String
        var payload: JSONValue
        enum CodingKeys: String, CodingKey { case automationSlug = "automation_slug", payload }
    }

    /// A new key's answer: the only one with its secret, so never cached and never replayed.
    static func created(_ created: AccessService.CreatedKey) -> RenderedAnswer {
        .json(created.key.json(secret: created.secret), status: .created, headers: [.location: "/api/keys/\(created.key.id)", .cacheControl: "no-store"])
    }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let (access, submissions) = (access, submissions)
        let tag = "access"

        routes.add(.init(.post, "/api/keys", summary: "Create an API key (admin); the secret is in this answer only", tag: tag, request: "CreateKey", response: "CreatedKey", status: 201, errors: [400, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: CreateKeyBody.self, context: context)
            return try await IdempotencySlot.respond {
                let (key, secret) = try await access.createKey(
                    .init(name: body.name, role: body.role, userID: body.userID, delivererID: body.delivererID, expiresAt: body.expiresAt),
                    caller: context.caller, ip: context.clientAddress)
                return AccessService.CreatedKey(key: key, secret: secret)
            } render: { Self.created($0) }
        }
        routes.add(.init(.get, "/api/keys", summary: "API keys, newest first, without secrets (admin)", tag: tag, response: "KeyPage", errors: [422], query: [.limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let result = try await access.keys(after: request.queryString("cursor"), limit: limit, caller: context.caller)
            return try JSONResponse.make(page(result.items.map { $0.json() }, next: result.next))
        }
        routes.add(.init(.get, "/api/keys/{key_id}", summary: "One API key, without its secret (admin)", tag: tag, response: "Key", errors: [404]), to: router) { _, context in
            try JSONResponse.make(try await access.key(try context.parameters.require("key_id"), caller: context.caller).json())
        }
        routes.add(.init(.post, "/api/keys/{key_id}/revoke", summary: "Revoke an API key at once, on every server (admin)", tag: tag, response: "Key", errors: [404]), to: router) { _, context in
            let keyID = try context.parameters.require("key_id")
            return try await IdempotencySlot.respond {
                try await access.revokeKey(keyID, caller: context.caller, ip: context.clientAddress)
            } render: { .json($0.json()) }
        }
        routes.add(.init(.post, "/api/keys/{key_id}/rotate", summary: "A new key in place of this one, which is revoked (admin)", tag: tag, response: "CreatedKey", status: 201, errors: [404]), to: router) { _, context in
            let keyID = try context.parameters.require("key_id")
            return try await IdempotencySlot.respond {
                let (key, secret) = try await access.rotateKey(keyID, caller: context.caller, ip: context.clientAddress)
                return AccessService.CreatedKey(key: key, secret: secret)
            } render: { Self.created($0) }
        }

        routes.add(.init(.post, "/api/auth/login-links", summary: "A one-time login link, valid 10 minutes (admin, or an owner for itself)", tag: tag, request: "LoginLinkRequest", response: "LoginLink", status: 201, errors: [400, 422]), to: router) { request, context in
            var request = request
            let buffer = try await request.collectBody(upTo: context.maxUploadSize)
            let body = buffer.readableBytes == 0 ? LoginLinkBody(userID: nil) : try JSONBody.decode(LoginLinkBody.self, from: buffer)
            let link = try await access.createLoginLink(userID: body.userID, caller: context.caller, baseURL: Self.baseURL(request), ip: context.clientAddress)
            return try JSONResponse.make(
                ["url": .string(link.url), "expires_at": .string(link.expiresAt.rfc3339)] as JSONValue, status: .created, headers: [.cacheControl: "no-store"])
        }
        routes.add(.init(.get, "/api/auth/whoami", summary: "Who this request is authenticated as", tag: tag, response: "WhoAmI"), to: router) { _, context in
            JSONResponse.write(WhoAmI(caller: context.caller), capacity: 256)
        }
        routes.add(.init(.get, "/api/auth/sessions", summary: "Login sessions the caller may see: an owner's user's (its own and its viewers'), a viewer's own, an admin's all (or ?user_id=)", tag: tag, response: "LoginSessionPage", errors: [422], query: [QueryParameter("user_id", schema: ["type": "string"]), .limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let result = try await access.loginSessions(caller: context.caller, userID: request.queryString("user_id"), after: request.queryString("cursor"), limit: limit)
            let current = context.caller.kind == .loginSession ? context.caller.credentialID : nil
            return try JSONResponse.make(page(result.items.map { $0.json(current: current) }, next: result.next))
        }
        routes.add(.init(.post, "/api/auth/sessions/revoke-others", summary: "End every other login session the caller may see (an owner: its user's; a viewer: its own; an admin: ?user_id='s)", tag: tag, response: "RevokedCount", errors: [422], query: [QueryParameter("user_id", schema: ["type": "string"])]), to: router) { request, context in
            let count = try await access.revokeOtherLoginSessions(caller: context.caller, userID: request.queryString("user_id"), ip: context.clientAddress)
            return try JSONResponse.make(["revoked": .int(Int64(count))] as JSONValue)
        }
        routes.add(.init(.post, "/api/auth/sessions/{session_id}/revoke", summary: "End one login session", tag: tag, response: "LoginSession", errors: [404]), to: router) { _, context in
            let session = try await access.revokeLoginSession(try context.parameters.require("session_id"), caller: context.caller, ip: context.clientAddress)
            let current = context.caller.kind == .loginSession ? context.caller.credentialID : nil
            return try JSONResponse.make(session.json(current: current))
        }
        routes.add(.init(.post, "/api/auth/logout", summary: "End the login session this request came with and clear its cookie", tag: tag, response: "LoggedOut"), to: router) { _, context in
            try await access.logout(caller: context.caller, ip: context.clientAddress)
            var response = try JSONResponse.make(["logged_out": true] as JSONValue)
            response.headers[.setCookie] = Self.clearedCookie(access.configuration)
            return response
        }

        routes.add(.init(.get, "/api/audits", summary: "The auth audit, newest first (admin)", tag: tag, response: "AuditLogPage", errors: [422], query: [
            QueryParameter("user_id", schema: ["type": "string"]), QueryParameter("action", schema: ["type": "string"]),
            QueryParameter("status", schema: ["type": "string", "enum": ["success", "failure"]]),
            QueryParameter("since", schema: ["type": "string", "format": "date-time"]), QueryParameter("until", schema: ["type": "string", "format": "date-time"]),
            .limit(maximum: 500), .cursor(),
        ]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 100, range: 1...500)
            let query = AccessService.AuditQuery(
                userID: request.queryString("user_id"), action: request.queryString("action"), status: request.queryString("status"),
                since: request.queryString("since"), until: request.queryString("until"))
            let result = try await access.audits(query, after: request.queryString("cursor"), limit: limit, caller: context.caller)
            return try JSONResponse.make(page(result.items.map(\.json), next: result.next))
        }

        routes.add(.init(.post, "/api/submissions", summary: "Submit an automation job (package-import, session-report, barcode-scan); runs in the background", tag: tag, request: "SubmissionRequest", response: "Submission", status: 202, errors: [400, 404, 422], maxBodyBytes: 16 << 20), to: router) { request, context in
            let body = try await request.decodeJSON(as: SubmissionBody.self, context: context)
            return try await IdempotencySlot.respond {
                try await submissions.submit(slug: body.automationSlug, payload: body.payload, caller: context.caller, ip: context.clientAddress)
            } render: { submission in
                .json(SubmissionJSON(submission: submission, full: false), status: .accepted, headers: [.location: "/api/submissions/\(submission.id)"])
            }
        }
        routes.add(.init(.get, "/api/submissions/{id}", summary: "A submission with its payload, result and error", tag: tag, response: "SubmissionDetail", errors: [404]), to: router) { _, context in
            let submission = try await submissions.submission(try context.parameters.require("id"), caller: context.caller)
            return JSONResponse.write(SubmissionJSON(submission: submission, full: true), capacity: 1024 + (submission.result?.utf8.count ?? 0))
        }
        routes.add(.init(.get, "/api/submissions", summary: "Submissions, newest first", tag: tag, response: "SubmissionPage", errors: [422], query: [
            QueryParameter("status", schema: ["type": "string", "enum": .array(SubmissionStatus.allCases.map { .string($0.rawValue) })]),
            QueryParameter("automation_slug", schema: ["type": "string"]), .limit(maximum: 200), .cursor(),
        ]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let result = try await submissions.submissions(
                status: request.queryString("status"), slug: request.queryString("automation_slug"), after: request.queryString("cursor"),
                limit: limit, caller: context.caller)
            return JSONResponse.write(SubmissionPage(items: result.items, next: result.next), capacity: 256 * (result.items.count + 1))
        }
    }

    /// Who the caller is, written straight into the response (every client asks this often).
    struct WhoAmI: JSONWritable {
        var caller: Caller

        func write(to writer: inout JSONWriter) {
            writer.beginObject()
            writer.field("kind", caller.kind.rawValue)
            writer.field("role", caller.role)
            writer.field("principal_id", caller.id)
            writer.field("user_id", caller.userID)
            writer.field("deliverer_id", caller.scope("deliverer_id"))
            writer.field("key_id", caller.kind == .apiKey ? caller.credentialID : nil)
            writer.field("session_id", caller.kind == .loginSession ? caller.credentialID : nil)
            writer.field("expires_at", caller.expiresAt)
            writer.endObject()
        }
    }

    /// The answer that logs a browser in: the cookie, and a 303 to `/`.
    public static func loggedIn(_ session: LoginSession, token: String, configuration: AccessConfiguration, location: String = "/") -> Response {
        let maxAge = max(0, (session.expiresAt.milliseconds - session.createdAt.milliseconds) / 1000)
        var cookie = "\(AccessConfiguration.cookieName)=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Lax"
        if configuration.cookieIsSecure { cookie += "; Secure" }
        return Response(status: .seeOther, headers: [.location: location, .setCookie: cookie, .cacheControl: "no-store"])
    }

    public static func clearedCookie(_ configuration: AccessConfiguration) -> String {
        "\(AccessConfiguration.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax" + (configuration.cookieIsSecure ? "; Secure" : "")
    }

    /// Where the request was addressed, for links when no public URL is configured.
    static func baseURL(_ request: Request) -> String {
        "http://" + (request.head.authority ?? "localhost")
    }
}
