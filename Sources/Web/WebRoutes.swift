import Access
import Delivery
import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The owner's dashboard (the web contract): login by link or API-key form, logout, my sessions,
/// one session live or as history, its CSV export, and the page assets. Decode, call the access
/// and delivery services, render. Every page is HTML, errors included (a 4xx page, never JSON).
public struct WebRoutes: Sendable {
    let access: AccessService
    let delivery: DeliveryService
    let clock: WallClock
    let pages: WebPages

    /// The delivery event types a live page listens to (its stream names each event by type).
    public init(access: AccessService, delivery: DeliveryService, clock: WallClock, liveEventTypes: [String]) throws {
        self.access = access
        self.delivery = delivery
        self.clock = clock
        self.pages = try WebPages(liveEventTypes: liveEventTypes)
    }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let tag = "web"
        let html = "text/html"
        let session = WebSession(access: access, clock: clock)
        let (pages, delivery, access) = (pages, delivery, access)

        routes.add(.init(.get, "/login", summary: "The login page: an API-key form (and where a login link ends when it is not valid)", tag: tag, responseMediaType: html, errorMediaType: html), to: router) { request, _ in
            pages.login(next: WebSession.safeNext(request.queryString("next")), error: nil, status: .ok)
        }
        routes.add(.init(.post, "/auth/login", summary: "Log in with an owner or viewer API key (form field api_key): the login cookie and a 303 to /", tag: tag, status: 303, errors: [401, 403], requestMediaType: "application/x-www-form-urlencoded", responseMediaType: html, errorMediaType: html), to: router) { request, context in
            await pages.page {
                try session.requireOwnOrigin(request)
                var request = request
                let form = FormBody(try await request.collectBody(upTo: context.maxUploadSize))
                let next = WebSession.safeNext(form["next"])
                do {
                    let (login, token) = try await session.logIn(apiKey: form["api_key"] ?? "", request: request, context: context)
                    return AccessRoutes.loggedIn(login, token: token, configuration: access.configuration, location: next ?? "/")
                } catch let error as WebSession.LoginRefused {
                    return pages.login(next: next, error: error.message, status: error.status)
                }
            }
        }
        routes.add(.init(.get, "/auth/login", summary: "Use a login link: sets the login cookie and redirects to /", tag: tag, status: 303, errors: [401], query: [QueryParameter("token", schema: ["type": "string"])], responseMediaType: html, errorMediaType: html), to: router) { request, context in
            await pages.page {
                guard let token = request.queryString("token"), !token.isEmpty else {
                    throw Problem(status: .unauthorized, slug: "invalid-login-link", title: "Login link not valid", detail: "The link has no token.")
                }
                let (login, secret) = try await access.useLoginLink(token, ip: context.clientAddress, userAgent: request.headers[.userAgent])
                return AccessRoutes.loggedIn(login, token: secret, configuration: access.configuration)
            }
        }
        routes.add(.init(.post, "/auth/logout", summary: "End the login session (the cookie is refused from then on), clear the cookie, 303 to /login", tag: tag, status: 303, errors: [403], responseMediaType: html, errorMediaType: html), to: router) { request, context in
            await pages.page {
                try session.requireOwnOrigin(request)
                try await session.logOut(request, context: context)
                var response = Response(status: .seeOther, headers: [.location: "/login", .cacheControl: "no-store"])
                response.headers[.setCookie] = AccessRoutes.clearedCookie(access.configuration)
                return response
            }
        }

        routes.add(.init(.get, "/", summary: "My sessions, newest first (?status=, ?barcode=, ?cursor=)", tag: tag, query: [
            QueryParameter("status", schema: ["type": "string", "enum": .array(SessionStatus.allCases.map { .string($0.rawValue) })]),
            QueryParameter("barcode", schema: ["type": "string"]), .cursor(),
        ], responseMediaType: html, errorMediaType: html), to: router) { request, context in
            await pages.signedInPage(for: request, session: session, context: context) { caller in
                let filter = try SessionFilter(status: request.queryString("status"), barcode: request.queryString("barcode"), cursor: request.queryString("cursor"))
                guard let userID = caller.userID else { throw Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: "This login has no user.") }
                let page = try await delivery.sessions(
                    userID: userID, status: filter.status, barcode: filter.barcode, cursor: filter.cursor, limit: SessionFilter.pageSize, caller: caller)
                return pages.sessions(page.items, next: page.next, filter: filter, caller: caller)
            }
        }
        routes.add(.init(.get, "/sessions/{id}", summary: "One session: live while open, active or paused; its history once closed", tag: tag, errors: [404], responseMediaType: html, errorMediaType: html), to: router) { request, context in
            await pages.signedInPage(for: request, session: session, context: context) { caller in
                let id = try context.parameters.require("id")
                let aggregate = try await delivery.session(id, caller: caller)
                if aggregate.session.isReadOnly {
                    let verification = request.queryString("verify") == nil ? nil : try await delivery.verifyAudit(id, caller: caller)
                    return pages.history(aggregate, verification: verification, caller: caller)
                }
                return pages.live(aggregate, caller: caller)
            }
        }
        routes.add(.init(.get, "/sessions/{id}/export.csv", summary: "A closed session's packages as CSV", tag: tag, errors: [404, 409], responseMediaType: "text/csv", errorMediaType: html), to: router) { request, context in
            await pages.signedInPage(for: request, session: session, context: context) { caller in
                let aggregate = try await delivery.session(try context.parameters.require("id"), caller: caller)
                guard aggregate.session.isReadOnly else {
                    throw Problem(status: .conflict, slug: "session-not-closed", title: "Session not closed", detail: "Only a completed or archived session is exported.")
                }
                return try PackagesCSV.response(aggregate)
            }
        }
        for asset in WebAssets.all {
            routes.add(.init(.get, asset.path, summary: "A dashboard asset (\(asset.contentType))", tag: tag, responseMediaType: asset.contentType), to: router) { request, _ in
                asset.response(ifNoneMatch: request.headers[.ifNoneMatch])
            }
        }
    }
}

/// The listing's filter as the page's query gives it.
struct SessionFilter: Sendable {
    static let pageSize = 50
    var status: SessionStatus?
    var barcode: String?
    var cursor: String?

    init(status: String?, barcode: String?, cursor: String?) throws {
        if let status, !status.isEmpty {
            guard let parsed = SessionStatus(rawValue: status) else {
                throw Problem.validation("status", "status must be one of \(SessionStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            self.status = parsed
        }
        let trimmed = barcode?.trimmingCharacters(in: .whitespaces) ?? ""
        self.barcode = trimmed.isEmpty ? nil : String(trimmed.prefix(128))
        self.cursor = cursor.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// An `application/x-www-form-urlencoded` body.
struct FormBody {
    private var fields: [String: String] = [:]

    init(_ buffer: ByteBuffer) {
        for pair in String(buffer: buffer).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = parts.first.map(Self.decode), fields[name] == nil else { continue }
            fields[name] = parts.count > 1 ? Self.decode(parts[1]) : ""
        }
    }

    subscript(_ name: String) -> String? { fields[name] }

    static func decode(_ text: Substring) -> String {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text)
    }
}
