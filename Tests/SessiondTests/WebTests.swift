import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import NIOCore
import SessiondApp
import Testing

/// The web contract over HTTP with real data: every page, its hooks and headers, the login
/// forms, CSRF and logout (the browser test drives the same pages in Chromium).
@Suite("Web: the dashboard's pages, login, CSRF, export")
struct WebTests {
    static let origin = "http://sessiond.test"
    static let configure: @Sendable (inout ServerConfiguration) -> Void = { $0.access.publicBaseURL = origin }

    static func html(_ response: TestResponse) -> String { String(buffer: response.body) }

    /// `data-value` of every `data-field="name"` in `html`.
    static func values(_ name: String, in html: String) -> [String] {
        let pattern = try! Regex(#"data-field="\#(name)" data-value="([^"]*)""#)
        return html.matches(of: pattern).compactMap { $0.output[1].substring.map(String.init) }
    }

    /// The text of the row element carrying `attribute="value"` (rows do not nest).
    static func row(_ attribute: String, _ value: String, in html: String) -> String? {
        guard let start = html.range(of: "\(attribute)=\"\(value)\"") else { return nil }
        let opening = html[..<start.lowerBound].range(of: "<li", options: .backwards)?.lowerBound ?? start.lowerBound
        guard let end = html.range(of: "</li>", range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[opening..<end.upperBound])
    }

    static func checkPageHeaders(_ response: TestResponse, sourceLocation: SourceLocation = #_sourceLocation) {
        let csp = response.headers[HTTPField.Name("Content-Security-Policy")!] ?? ""
        #expect(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), sourceLocation: sourceLocation)
        #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), sourceLocation: sourceLocation)
        #expect(response.headers[.cacheControl] == "no-store", sourceLocation: sourceLocation)
        #expect(response.headers[.contentType] == "text/html; charset=utf-8", sourceLocation: sourceLocation)
        let text = html(response)
        #expect(text.contains(#"<html lang="pt-BR">"#) && text.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#), sourceLocation: sourceLocation)
        #expect(!text.contains("<script>") && !text.contains("style="), sourceLocation: sourceLocation)
    }

    static func key(_ client: any TestClientProtocol, role: String, user: String? = nil, deliverer: String? = nil) async throws -> String {
        var request: [String: JSONValue] = ["name": "web", "role": .string(role)]
        if let user { request["user_id"] = .string(user) }
        if let deliverer { request["deliverer_id"] = .string(deliverer) }
        return try #require(try await client.json(.post, "/api/keys", body(.object(request)), expect: .created)["key"]?.string)
    }

    static func form(_ fields: [String: String]) -> String {
        fields.map { "\($0)=\($1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $1)" }.joined(separator: "&")
    }

    /// Posts the API-key login form from this server's own page; the cookie.
    static func logIn(_ client: any TestClientProtocol, key: String) async throws -> String {
        let response = try await client.execute(
            uri: "/auth/login", method: .post,
            headers: [.contentType: "application/x-www-form-urlencoded", .origin: origin, TestAuth.noKey: "1"],
            body: ByteBuffer(string: form(["api_key": key])))
        #expect(response.status == .seeOther && response.headers[.location] == "/")
        let setCookie = try #require(response.headers[.setCookie])
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax") && !setCookie.contains(key))
        return String(setCookie.prefix { $0 != ";" })
    }

    static func page(_ client: any TestClientProtocol, _ path: String, cookie: String) async throws -> TestResponse {
        try await client.send(.get, path, headers: [.cookie: cookie])
    }

    @Test("without a login every page but /login redirects there and shows nothing; the login page is a keyboard form")
    func signedOut() async throws {
        try await withApp(configure: Self.configure) { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create(user: "maria", name: "Centro")
            try await flow.add(id, ["SEGREDO-1"])
            for path in ["/", "/sessions/\(id)", "/sessions/\(id)/export.csv", "/?status=open"] {
                let response = try await client.send(.get, path, headers: TestAuth.none)
                #expect(response.status == .seeOther, "\(path)")
                #expect(response.headers[.location]?.hasPrefix("/login") == true, "\(path)")
                #expect(!Self.html(response).contains("SEGREDO"))
            }
            // A stale or forged cookie is no login either.
            let forged = try await client.send(.get, "/sessions/\(id)", headers: [.cookie: "sessiond_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
            #expect(forged.status == .seeOther && !Self.html(forged).contains("SEGREDO"))
            let next = try await client.send(.get, "/sessions/\(id)", headers: TestAuth.none)
            #expect(next.headers[.location]?.hasPrefix("/login?next=%2Fsessions%2F") == true)

            let login = try await client.send(.get, "/login", headers: TestAuth.none)
            #expect(login.status == .ok)
            Self.checkPageHeaders(login)
            let text = Self.html(login)
            #expect(text.contains(#"data-form="login""#) && text.contains(#"name="api_key""#) && text.contains(#"<label for="api_key">"#))
            #expect(text.contains(#"action="/auth/login""#) && text.contains(#"method="post""#))
            // Nothing focusable comes before the field (Tab from the top lands in it).
            let beforeField = String(text[..<text.range(of: #"name="api_key""#)!.lowerBound])
            #expect(!beforeField.contains("<a ") && !beforeField.contains("<button"))

            for asset in ["/assets/app.css", "/assets/app.js", "/assets/icon.svg"] {
                let response = try await client.send(.get, asset, headers: TestAuth.none)
                #expect(response.status == .ok && response.body.readableBytes > 100, "\(asset)")
                let etag = try #require(response.headers[.eTag])
                #expect(try await client.send(.get, asset, headers: [TestAuth.noKey: "1", .ifNoneMatch: etag]).status == .notModified)
            }
        }
    }

    @Test("the login form: an owner or viewer key logs in; wrong keys, other roles and foreign origins do not; link logins; logout ends it")
    func loginForms() async throws {
        try await withApp(configure: Self.configure) { client, _ in
            let owner = try await Self.key(client, role: "owner", user: "maria")
            let viewer = try await Self.key(client, role: "viewer", user: "maria")
            let deliverer = try await Self.key(client, role: "deliverer", user: "maria", deliverer: "ana")
            let revoked = try await Self.key(client, role: "owner", user: "maria")
            let revokedID = try #require(try await client.json(.get, "/api/keys")["items"]!.array.first { $0["prefix"]?.string.map { revoked.hasPrefix($0) } == true }?["key_id"]?.string)
            try await client.json(.post, "/api/keys/\(revokedID)/revoke")

            func post(_ key: String, origin: String?) async throws -> TestResponse {
                var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", TestAuth.noKey: "1"]
                if let origin { headers[.origin] = origin }
                return try await client.execute(uri: "/auth/login", method: .post, headers: headers, body: ByteBuffer(string: Self.form(["api_key": key])))
            }
            // CSRF: the form only from this server's own pages (another port of the same host is another origin).
            for origin in [nil, "http://evil.example", "http://sessiond.test:8081", "null"] {
                let refused = try await post(owner, origin: origin)
                #expect(refused.status == .forbidden && refused.headers[.setCookie] == nil, "\(origin ?? "no origin")")
                Self.checkPageHeaders(refused)
            }
            for (key, status) in [("sdk_wrong", HTTPResponse.Status.unauthorized), (revoked, .unauthorized), ("", .unauthorized), (deliverer, .forbidden), (TestAuth.adminKey, .forbidden)] {
                let refused = try await post(key, origin: Self.origin)
                #expect(refused.status == status && refused.headers[.setCookie] == nil, "\(key.prefix(8)) → \(refused.status.code)")
                #expect(Self.html(refused).contains(#"data-form="login""#))
            }
            let failures = try await client.json(.get, "/api/audits?action=login&status=failure")["items"]!.array
            #expect(failures.count == 5 && failures.allSatisfy { $0["details"]?["method"]?.string == "api_key" })

            let cookie = try await Self.logIn(client, key: owner)
            #expect(Self.html(try await Self.page(client, "/", cookie: cookie)).contains("Minhas sessões"))
            let me = try await client.json(.get, "/api/auth/whoami", headers: [.cookie: cookie])
            #expect(me["kind"]?.string == "login_session" && me["role"]?.string == "owner" && me["user_id"]?.string == "maria")
            let viewerCookie = try await Self.logIn(client, key: viewer)
            #expect(try await client.json(.get, "/api/auth/whoami", headers: [.cookie: viewerCookie])["role"]?.string == "viewer")

            // `next` brings the browser back where it was; only paths of this server.
            let back = try await client.execute(
                uri: "/auth/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded", .origin: Self.origin, TestAuth.noKey: "1"],
                body: ByteBuffer(string: Self.form(["api_key": owner, "next": "/?status=open"])))
            #expect(back.headers[.location] == "/?status=open")
            let away = try await client.execute(
                uri: "/auth/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded", .origin: Self.origin, TestAuth.noKey: "1"],
                body: ByteBuffer(string: Self.form(["api_key": owner, "next": "//evil.example/"])))
            #expect(away.headers[.location] == "/")

            // Login links: once; a used, expired or unknown token is a 4xx page and no login.
            let link = try await client.json(.post, "/api/auth/login-links", body(["user_id": "maria"]), expect: .created)
            let path = String(try #require(link["url"]?.string).dropFirst(Self.origin.count))
            let first = try await client.send(.get, path, headers: TestAuth.none)
            #expect(first.status == .seeOther && first.headers[.location] == "/" && first.headers[.setCookie]?.contains("HttpOnly") == true)
            for bad in [path, "/auth/login?token=nope", "/auth/login?token=", "/auth/login"] {
                let refused = try await client.send(.get, bad, headers: TestAuth.none)
                #expect(refused.status == .unauthorized && refused.headers[.setCookie] == nil, "\(bad)")
                Self.checkPageHeaders(refused)
                #expect(Self.html(refused).contains("Link inválido"))
            }

            // Logout: only from our own pages; afterwards the old cookie opens nothing.
            let foreign = try await client.send(.post, "/auth/logout", headers: [.cookie: cookie, .origin: "http://sessiond.test:8081"])
            #expect(foreign.status == .forbidden)
            #expect(try await Self.page(client, "/", cookie: cookie).status == .ok)
            let out = try await client.send(.post, "/auth/logout", headers: [.cookie: cookie, .origin: Self.origin])
            #expect(out.status == .seeOther && out.headers[.location] == "/login")
            #expect(out.headers[.setCookie]?.hasPrefix("sessiond_session=;") == true && out.headers[.setCookie]?.contains("Max-Age=0") == true)
            let after = try await Self.page(client, "/", cookie: cookie)
            #expect(after.status == .seeOther && after.headers[.location]?.hasPrefix("/login") == true)
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: cookie])
            // The viewer's login is another login session: still live.
            #expect(try await Self.page(client, "/", cookie: viewerCookie).status == .ok)
        }
    }

    @Test("my sessions, one session live and as history, its audit check and CSV export: the figures are the API's")
    func pagesWithData() async throws {
        try await withApp(configure: Self.configure) { client, _ in
            let flow = DeliveryFlow(client: client)
            let cookie = try await Self.logIn(client, key: try await Self.key(client, role: "owner", user: "maria"))
            let viewer = try await Self.logIn(client, key: try await Self.key(client, role: "viewer", user: "maria"))
            let live = try await flow.create(user: "maria", name: "Zona Sul")
            try await flow.add(live, ["BR100", "BR101", "BR102", "XY200"])
            try await flow.start(live, deliverers: ["ana", "bruno"])
            let done = try await flow.create(user: "maria", name: "Zona Norte")
            try await flow.add(done, ["NO1", "NO2", "NO3"], value: { [Int64(1250), 9_999_999, 500][$0] })
            try await flow.start(done, deliverers: ["ana"])
            let open = try await flow.create(user: "maria", name: "Ainda aberta")
            try await flow.add(open, ["AB1"])
            let archived = try await flow.create(user: "maria", name: "Velha")
            try await flow.add(archived, ["VE1"])
            try await flow.start(archived, deliverers: ["ana"])
            let other = try await flow.create(user: "joao", name: "Do João")
            try await flow.add(other, ["BR999"])

            // A session in motion: one delivered, one failed, one picked up.
            let assigned = try await flow.assignments(live)
            try await flow.deliver(live, package: assigned[0].packageID, by: assigned[0].deliverer)
            try await flow.fail(live, package: assigned[1].packageID, by: assigned[1].deliverer, reason: "Portão \"fechado\", sem resposta")
            try await client.json(.post, "/api/sessions/\(live)/delivery/pickup", body(["package_id": .string(assigned[2].packageID), "deliverer_id": .string(assigned[2].deliverer)]))
            // Closed ones.
            for package in try await flow.assignments(done) {
                if package.barcode == "NO2" {
                    try await flow.fail(done, package: package.packageID, by: package.deliverer, reason: "Endereço, número \"12\" não existe")
                } else {
                    try await flow.deliver(done, package: package.packageID, by: package.deliverer)
                }
            }
            for package in try await flow.assignments(archived) { try await flow.deliver(archived, package: package.packageID, by: package.deliverer) }
            try await client.json(.post, "/api/sessions/\(archived)/archive")

            // My sessions: newest first, archived only on request, filters, someone else's never.
            let list = try await Self.page(client, "/", cookie: cookie)
            #expect(list.status == .ok)
            Self.checkPageHeaders(list)
            let listed = Self.html(list).matches(of: try Regex(#"data-session-id="([^"]+)" data-status="([a-z]+)""#)).map { String($0.output[1].substring!) }
            #expect(listed == [open, done, live])
            #expect(Self.html(list).contains(#"<a href="/sessions/\#(live)">"#))
            let statuses = Self.html(list).matches(of: try Regex(#"data-session-id="[^"]+" data-status="([a-z]+)""#)).map { String($0.output[1].substring!) }
            #expect(statuses == ["open", "completed", "active"])
            #expect(Self.html(try await Self.page(client, "/?status=archived", cookie: cookie)).contains(#"data-session-id="\#(archived)""#))
            let active = Self.html(try await Self.page(client, "/?status=active", cookie: cookie))
            #expect(active.contains(#"data-session-id="\#(live)""#) && !active.contains(#"data-session-id="\#(done)""#))
            let byBarcode = Self.html(try await Self.page(client, "/?barcode=br10", cookie: cookie))
            #expect(byBarcode.contains(#"data-session-id="\#(live)""#) && !byBarcode.contains(#"data-session-id="\#(done)""#) && !byBarcode.contains(other))
            let noMatch = Self.html(try await Self.page(client, "/?barcode=%25", cookie: cookie))
            #expect(!noMatch.contains("data-session-id="))
            #expect(try await Self.page(client, "/?status=bogus", cookie: cookie).status == .unprocessableContent)
            #expect(Self.html(try await Self.page(client, "/", cookie: viewer)).contains(#"data-session-id="\#(live)""#))

            // The live page: every figure is the dashboard's value.
            let dashboard = try await client.json(.get, "/api/sessions/\(live)/dashboard")
            let livePage = try await Self.page(client, "/sessions/\(live)", cookie: cookie)
            Self.checkPageHeaders(livePage)
            let liveHTML = Self.html(livePage)
            #expect(liveHTML.contains("data-live-session=\"\(live)\""))
            for name in ["packages_total", "packages_delivered", "packages_failed", "packages_pending", "total_revenue_cents"] {
                let sessionLevel = Self.values(name, in: liveHTML.components(separatedBy: "<h2>")[0])
                #expect(sessionLevel == [String(dashboard[name]!.int!)], "\(name)")
            }
            #expect(Self.values("status", in: liveHTML) == ["active"])
            let progress = try #require(Double(Self.values("progress_percent", in: liveHTML).first ?? ""))
            #expect(abs(progress - dashboard["progress_percent"]!.double!) < 1)
            for deliverer in dashboard["deliverers"]!.array {
                let row = try #require(Self.row("data-deliverer-id", deliverer["deliverer_id"]!.string!, in: liveHTML))
                for name in ["packages_assigned", "packages_delivered", "packages_failed", "total_earned_cents"] {
                    #expect(Self.values(name, in: row) == [String(deliverer[name]!.int!)], "\(name)")
                }
            }
            for package in try await flow.session(live)["packages"]!.array {
                let row = try #require(Self.row("data-package-id", package["package_id"]!.string!, in: liveHTML))
                #expect(row.contains("data-status=\"\(package["delivery_status"]!.string!)\"") && row.contains(package["barcode"]!.string!))
            }
            #expect(liveHTML.contains("Portão &quot;fechado&quot;, sem resposta"))
            #expect(Self.html(try await Self.page(client, "/sessions/\(live)", cookie: viewer)).contains("data-live-session"))

            // Someone else's session and a missing one: the same 404 page; their exports too.
            let missing = "01a2feed-0000-7000-8000-000000000000"
            for path in ["/sessions/\(other)", "/sessions/\(missing)", "/sessions/\(other)/export.csv", "/sessions/\(missing)/export.csv"] {
                let response = try await Self.page(client, path, cookie: cookie)
                #expect(response.status == .notFound, "\(path)")
                Self.checkPageHeaders(response)
                #expect(!Self.html(response).contains("BR999"))
            }
            #expect(try await Self.page(client, "/sessions/\(live)/export.csv", cookie: cookie).status == .conflict)

            // History: the snapshot, the audit trail, its check, the export link.
            let document = try await flow.session(done)
            let snapshot = try #require(document["financial_snapshot"])
            let historyPage = try await Self.page(client, "/sessions/\(done)", cookie: cookie)
            Self.checkPageHeaders(historyPage)
            let history = Self.html(historyPage)
            #expect(!history.contains("data-live-session"))
            #expect(Self.values("status", in: history) == ["completed"])
            let snapshotHTML = String(history[history.range(of: "data-snapshot")!.lowerBound..<history.range(of: "</section>")!.lowerBound])
            for name in ["total_revenue_cents", "total_cost_cents", "total_profit_cents", "packages_total", "packages_delivered", "packages_failed"] {
                #expect(Self.values(name, in: snapshotHTML.components(separatedBy: "data-deliverer-id")[0]) == [String(snapshot[name]!.int!)], "\(name)")
            }
            #expect(snapshotHTML.contains("R$\u{00A0}17,50"))
            for deliverer in snapshot["deliverers"]!.array {
                let row = try #require(Self.row("data-deliverer-id", deliverer["deliverer_id"]!.string!, in: snapshotHTML))
                let earned = deliverer["base_salary_cents"]!.int! + deliverer["commission_per_delivery_cents"]!.int! * deliverer["packages_delivered"]!.int!
                #expect(Self.values("total_earned_cents", in: row) == [String(earned)])
            }
            let audit = document["audit"]!.array
            let rows = history.matches(of: try Regex(#"data-audit-seq="(\d+)" data-audit-action="([a-z_.]+)""#)).map { "\($0.output[1].substring!) \($0.output[2].substring!)" }
            #expect(rows == audit.map { "\($0["seq"]!.int!) \($0["action"]!.string!)" })
            #expect(history.contains(#"data-action="verify-audit""#) && history.contains(#"data-action="export-csv" href="/sessions/\#(done)/export.csv""#))
            #expect(Self.values("audit_valid", in: history).isEmpty)
            let verified = Self.html(try await Self.page(client, "/sessions/\(done)?verify=1", cookie: cookie))
            let check = try await client.json(.get, "/api/sessions/\(done)/audit/verify")
            #expect(Self.values("audit_valid", in: verified) == ["true"] && Self.values("audit_entries", in: verified) == [String(check["entries"]!.int!)])
            #expect(Self.html(try await Self.page(client, "/sessions/\(archived)", cookie: cookie)).contains("data-snapshot"))

            // The export: RFC 4180, one row per package, the API's raw values.
            let export = try await Self.page(client, "/sessions/\(done)/export.csv", cookie: cookie)
            #expect(export.status == .ok && export.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(export.headers[.contentDisposition]?.hasPrefix("attachment;") == true && export.headers[.contentDisposition]?.contains(".csv") == true)
            let csv = Self.html(export)
            let lines = csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            let header = lines[0].components(separatedBy: ",")
            for column in ["package_id", "barcode", "delivery_status", "value_cents", "assigned_deliverer_id"] { #expect(header.contains(column)) }
            #expect(lines.count == 4)
            for package in document["packages"]!.array {
                let line = try #require(lines.first { $0.hasPrefix(package["package_id"]!.string! + ",") })
                #expect(line.contains(",\(package["barcode"]!.string!),\(package["delivery_status"]!.string!),\(package["value_cents"]!.int!),"))
            }
            #expect(csv.contains(#""Endereço, número ""12"" não existe""#))
        }
    }
}
