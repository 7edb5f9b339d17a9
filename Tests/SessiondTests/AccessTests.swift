import Access
import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import NIOCore
import SessiondApp
import Testing

/// Keys made by the admin for the access tests.
struct AccessKeys {
    var owner: String
    var otherOwner: String
    var viewer: String
    var deliverer: String
    var revoked: String
    var expiring: String
    var ownerKeyID: String

    /// Creates the keys through `POST /api/keys` (the expiring one lives 60 s of the test's clock).
    static func make(_ client: any TestClientProtocol, clock: ManualClock? = nil) async throws -> AccessKeys {
        func key(_ body: JSONValue) async throws -> JSONValue {
            try await client.json(.post, "/api/keys", AccessTests.text(body), expect: .created)
        }
        let owner = try await key(["name": "maria", "role": "owner", "user_id": "maria"])
        let other = try await key(["name": "joana", "role": "owner", "user_id": "joana"])
        let viewer = try await key(["name": "maria's accountant", "role": "viewer", "user_id": "maria"])
        let deliverer = try await key(["name": "joão", "role": "deliverer", "deliverer_id": "joao", "user_id": "maria"])
        let revoked = try await key(["name": "old", "role": "owner", "user_id": "maria"])
        try await client.json(.post, "/api/keys/\(revoked["key_id"]!.string!)/revoke")
        let now = clock.map { $0.wallClock.now() } ?? WallClock.system.now()
        let expiring = try await key(["name": "temp", "role": "owner", "user_id": "maria", "expires_at": .string(Timestamp(milliseconds: now.milliseconds + 60_000).rfc3339)])
        return AccessKeys(
            owner: owner["key"]!.string!, otherOwner: other["key"]!.string!, viewer: viewer["key"]!.string!,
            deliverer: deliverer["key"]!.string!, revoked: revoked["key"]!.string!, expiring: expiring["key"]!.string!,
            ownerKeyID: owner["key_id"]!.string!)
    }
}

@Suite("Access: keys, roles, login sessions, audits")
struct AccessTests {
    static func text(_ value: JSONValue) -> String { value.canonicalText() }

    enum Expect: Equatable, CustomStringConvertible {
        /// Authorized: anything but 401, 403 and 404 (the session's state may still say 409).
        case allowed
        case status(Int)
        var description: String { if case .status(let code) = self { "\(code)" } else { "allowed" } }
    }

    /// `keyCreate`, `keyListing`, `keyRead`: an owner manages its own user's deliverer and viewer keys.
    enum Kind { case create, read, listing, manage, mark, adminOnly, loginLink, anyone, submit, keyCreate, keyListing, keyRead }

    struct Call {
        var method: HTTPRequest.Method
        var path: String
        var body: String?
        var kind: Kind
    }

    static func expectation(_ kind: Kind, _ principal: String) -> Expect {
        switch (kind, principal) {
        case (_, "admin"): return .allowed
        case (.anyone, _): return .allowed
        case (.create, "owner"), (.read, "owner"), (.listing, "owner"), (.manage, "owner"), (.mark, "owner"), (.loginLink, "owner"), (.submit, "owner"): return .allowed
        case (.read, "viewer"), (.listing, "viewer"): return .allowed
        case (.keyCreate, "owner"), (.keyListing, "owner"), (.keyListing, "other"), (.keyRead, "owner"): return .allowed
        case (.keyRead, "other"): return .status(404)
        case (.read, "deliverer"), (.mark, "deliverer"): return .allowed
        case (.read, "other"), (.listing, "other"), (.manage, "other"), (.mark, "other"), (.submit, "other"), (.listing, "deliverer"): return .status(404)
        default: return .status(403)
        }
    }

    /// Every /api/ route, with a body that is valid for it.
    static func calls(session: String, package: String, otherPackage: String, keyID: String) -> [Call] {
        let mark = text(["package_id": .string(package), "deliverer_id": "joao"])
        return [
            Call(method: .post, path: "/api/sessions/create", body: text(["user_id": "maria"]), kind: .create),
            Call(method: .get, path: "/api/sessions/user/maria", body: nil, kind: .listing),
            Call(method: .get, path: "/api/sessions/\(session)", body: nil, kind: .read),
            Call(method: .get, path: "/api/sessions/\(session)/dashboard", body: nil, kind: .read),
            Call(method: .get, path: "/api/sessions/\(session)/audit", body: nil, kind: .read),
            Call(method: .get, path: "/api/sessions/\(session)/audit/verify", body: nil, kind: .read),
            Call(method: .post, path: "/api/sessions/\(session)/packages", body: text(["packages": [["barcode": "NEW-1"]]]), kind: .manage),
            Call(method: .delete, path: "/api/sessions/\(session)/packages/\(otherPackage)", body: nil, kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/packages/\(otherPackage)/reassign", body: text(["deliverer_id": "joao"]), kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/reuse", body: text(["user_id": "maria"]), kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/start", body: text(["deliverers": [["deliverer_id": "joao", "base_salary_cents": 100, "commission_per_delivery_cents": 10]]]), kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/delivery/pickup", body: mark, kind: .mark),
            Call(method: .post, path: "/api/sessions/\(session)/delivery/complete", body: mark, kind: .mark),
            Call(method: .post, path: "/api/sessions/\(session)/delivery/fail", body: text(["package_id": .string(package), "deliverer_id": "joao", "reason": "ausente"]), kind: .mark),
            Call(method: .post, path: "/api/sessions/\(session)/pause", body: nil, kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/resume", body: nil, kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/complete", body: nil, kind: .manage),
            Call(method: .post, path: "/api/sessions/\(session)/archive", body: nil, kind: .manage),
            Call(method: .post, path: "/api/keys", body: text(["name": "n", "role": "viewer", "user_id": "maria"]), kind: .keyCreate),
            Call(method: .get, path: "/api/keys", body: nil, kind: .keyListing),
            Call(method: .get, path: "/api/keys/\(keyID)", body: nil, kind: .keyRead),
            Call(method: .post, path: "/api/keys/\(keyID)/rotate", body: nil, kind: .keyRead),
            Call(method: .post, path: "/api/keys/\(keyID)/revoke", body: nil, kind: .keyRead),
            Call(method: .get, path: "/api/audits", body: nil, kind: .adminOnly),
            Call(method: .post, path: "/api/auth/login-links", body: text(["user_id": "maria"]), kind: .loginLink),
            Call(method: .get, path: "/api/auth/whoami", body: nil, kind: .anyone),
            Call(method: .get, path: "/api/auth/sessions", body: nil, kind: .anyone),
            Call(method: .post, path: "/api/auth/sessions/revoke-others", body: nil, kind: .anyone),
            Call(method: .post, path: "/api/submissions", body: text(["automation_slug": "package-import", "payload": ["session_id": .string(session), "csv": "barcode\nCSV-1\n"]]), kind: .submit),
            Call(method: .get, path: "/api/submissions", body: nil, kind: .anyone),
        ]
    }

    @Test("every route as no key, malformed, unknown, revoked, expired, another owner, viewer, deliverer, owner and admin")
    func roleTable() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock) { client, _ in
            let keys = try await AccessKeys.make(client, clock: clock)
            let maria = TestAuth.bearer(keys.owner)
            let session = try await client.json(.post, "/api/sessions/create", Self.text(["user_id": "maria"]), expect: .created, headers: maria)["session_id"]!.string!
            let added = try await client.json(.post, "/api/sessions/\(session)/packages", Self.text(["packages": [["barcode": "P1"], ["barcode": "P2"], ["barcode": "P3"]]]), headers: maria)
            let packages = added["added"]!.array.map { $0["package_id"]!.string! }
            try await client.json(.post, "/api/sessions/\(session)/start", Self.text(["deliverers": [["deliverer_id": "joao", "base_salary_cents": 100, "commission_per_delivery_cents": 10]]]), headers: maria)
            // A key the admin may rotate and revoke in the table (not one the table uses).
            let spare = try await client.json(.post, "/api/keys", Self.text(["name": "spare", "role": "viewer", "user_id": "maria"]), expect: .created)
            let calls = Self.calls(session: session, package: packages[0], otherPackage: packages[1], keyID: spare["key_id"]!.string!)
            let typo = String(keys.owner.dropLast()) + (keys.owner.hasSuffix("A") ? "B" : "A")

            let failures: [(String, HTTPFields, String)] = [
                ("no key", TestAuth.none, "missing-key"),
                ("malformed", TestAuth.bearer("not-a-key"), "malformed-key"),
                ("typo", TestAuth.bearer(typo), "malformed-key"),
                ("basic scheme", [.authorization: "Basic bWFyaWE6c2VjcmV0"], "malformed-key"),
                ("unknown", TestAuth.bearer(KeyFormat.makeKey()), "invalid-key"),
                ("unknown via X-API-Key", [HTTPField.Name("X-API-Key")!: KeyFormat.makeKey()], "invalid-key"),
                ("revoked", TestAuth.bearer(keys.revoked), "revoked-key"),
            ]
            for call in calls {
                for (name, headers, type) in failures {
                    let response = try await client.send(call.method, call.path, json: call.body, headers: headers)
                    #expect(response.status == .unauthorized, "\(name): \(call.method) \(call.path) → \(response.status.code)")
                    #expect(response.headers[.contentType] == "application/problem+json")
                    let problem = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                    #expect(problem["type"]?.string == Problem.typeBase + type, "\(name): \(call.method) \(call.path)")
                }
            }
            let principals: [(String, String)] = [
                ("other", keys.otherOwner), ("viewer", keys.viewer), ("deliverer", keys.deliverer), ("owner", keys.owner), ("admin", TestAuth.adminKey),
            ]
            // Refusals first (they change nothing), then the calls that may change state.
            for allowedPass in [false, true] {
                for call in calls {
                    for (principal, key) in principals where (Self.expectation(call.kind, principal) == .allowed) == allowedPass {
                        let response = try await client.send(call.method, call.path, json: call.body, headers: TestAuth.bearer(key))
                        let label = "\(principal): \(call.method) \(call.path) → \(response.status.code) \(String(buffer: response.body).prefix(160))"
                        switch Self.expectation(call.kind, principal) {
                        case .allowed:
                            #expect(![401, 403, 404].contains(Int(response.status.code)), "\(label)")
                        case .status(let code):
                            #expect(Int(response.status.code) == code, "\(label)")
                            let problem = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                            #expect(problem["type"]?.string == Problem.typeBase + (code == 403 ? "forbidden" : "not-found"), "\(label)")
                        }
                    }
                }
            }
            // A deliverer marks only with its own deliverer_id.
            let someoneElse = try await client.send(
                .post, "/api/sessions/\(session)/delivery/complete", json: Self.text(["package_id": .string(packages[2]), "deliverer_id": "pedro"]),
                headers: TestAuth.bearer(keys.deliverer))
            #expect(someoneElse.status == .forbidden)

            clock.advance(seconds: 120)
            for call in calls {
                let response = try await client.send(call.method, call.path, json: call.body, headers: TestAuth.bearer(keys.expiring))
                #expect(response.status == .unauthorized, "expired: \(call.method) \(call.path)")
                let problem = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                #expect(problem["type"]?.string == Problem.typeBase + "expired-key")
            }
            // Public routes need no key.
            try await client.json(.get, "/health", headers: TestAuth.none)
            try await client.json(.get, "/ready", headers: TestAuth.none)
            try await client.json(.get, "/openapi.json", headers: TestAuth.none)

            let denied = try await client.json(.get, "/api/audits?action=access.denied&status=failure&limit=500")
            #expect(denied["items"]!.array.count >= 10)
            let failed = try await client.json(.get, "/api/audits?action=authentication.failed")
            #expect(!failed["items"]!.array.isEmpty)
            let created = try await client.json(.get, "/api/audits?action=key.created")
            #expect(created["items"]!.array.allSatisfy { $0["status"]?.string == "success" && $0["details"]?["key_id"] != nil })
        }
    }

    @Test("the audit trail's actor_id is the authenticated principal, not what the body asserts")
    func actorIsPrincipal() async throws {
        try await withApp { client, _ in
            let keys = try await AccessKeys.make(client)
            let maria = TestAuth.bearer(keys.owner)
            let session = try await client.json(.post, "/api/sessions/create", Self.text(["user_id": "maria"]), expect: .created, headers: maria)["session_id"]!.string!
            let added = try await client.json(.post, "/api/sessions/\(session)/packages", Self.text(["packages": [["barcode": "A1"]]]), headers: maria)
            try await client.json(.post, "/api/sessions/\(session)/start", Self.text(["deliverers": [["deliverer_id": "joao", "base_salary_cents": 0, "commission_per_delivery_cents": 0]]]))
            let package = added["added"]![0]!["package_id"]!.string!
            try await client.json(
                .post, "/api/sessions/\(session)/delivery/complete", Self.text(["package_id": .string(package), "deliverer_id": "joao"]),
                headers: TestAuth.bearer(keys.deliverer))
            let audit = try await client.json(.get, "/api/sessions/\(session)/audit", headers: maria)["items"]!.array
            // Created and filled by maria's key, started by the admin, delivered by joão's key; the
            // last delivery completes the session by itself.
            #expect(audit.map { $0["actor_id"]?.string } == ["maria", "maria", "admin", "joao", "system"])
        }
    }

    @Test("keys: the secret only at creation, listed without it, rotated and revoked; last use kept")
    func keyLifecycle() async throws {
        try await withApp { client, _ in
            let created = try await client.json(.post, "/api/keys", Self.text(["name": "caixa", "role": "owner", "user_id": "ana"]), expect: .created)
            let secret = try #require(created["key"]?.string)
            #expect(secret.hasPrefix("sdk_") && secret.count >= 32)
            #expect(created["prefix"]?.string.map { secret.hasPrefix($0) } == true)
            for field in ["key_id", "prefix", "name", "role", "user_id", "deliverer_id", "created_at", "expires_at"] {
                #expect(created[field] != nil, "\(field)")
            }
            try await client.json(.get, "/api/auth/whoami", headers: TestAuth.bearer(secret))
            let list = try await client.json(.get, "/api/keys")
            let listed = try #require(list["items"]!.array.first { $0["key_id"] == created["key_id"] })
            #expect(listed["key"] == nil)
            #expect(listed["revoked"]?.bool == false)
            #expect(listed["last_used_at"]?.string != nil)
            #expect(!String(describing: list).contains(secret))

            let rotated = try await client.json(.post, "/api/keys/\(created["key_id"]!.string!)/rotate", expect: .created)
            let newSecret = try #require(rotated["key"]?.string)
            #expect(rotated["user_id"]?.string == "ana" && rotated["role"]?.string == "owner")
            let old = try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(secret))
            #expect(old["type"]?.string == Problem.typeBase + "revoked-key")
            let whoami = try await client.json(.get, "/api/auth/whoami", headers: TestAuth.bearer(newSecret))
            #expect(whoami["kind"]?.string == "api_key" && whoami["role"]?.string == "owner" && whoami["user_id"]?.string == "ana")
            #expect(whoami["deliverer_id"]?.isNull == true)

            let revoked = try await client.json(.post, "/api/keys/\(rotated["key_id"]!.string!)/revoke")
            #expect(revoked["revoked"]?.bool == true)
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(newSecret))

            // Validation: role, scope, expiry.
            try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "boss"]), expect: .unprocessableContent)
            try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "owner"]), expect: .unprocessableContent)
            try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "deliverer"]), expect: .unprocessableContent)
            try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "owner", "user_id": "u", "expires_at": "next week"]), expect: .unprocessableContent)
            // A time already past makes a key that is expired from the start; no offset means UTC.
            let born = try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "owner", "user_id": "u", "expires_at": "2001-01-01T00:00:00"]), expect: .created)
            #expect(born["expires_at"]?.string == "2001-01-01T00:00:00.000Z")
            let expired = try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(born["key"]!.string!))
            #expect(expired["type"]?.string == Problem.typeBase + "expired-key")
        }
    }

    @Test("revoking a key is seen at once by a second server on the same database")
    func revocationAcrossServers() async throws {
        try await withApp { client, location in
            let created = try await client.json(.post, "/api/keys", Self.text(["name": "x", "role": "owner", "user_id": "rita"]), expect: .created)
            let key = TestAuth.bearer(created["key"]!.string!)
            try await withSecondServer(on: location) { second in
                try await second.json(.get, "/api/sessions/user/rita", headers: key)
                try await client.json(.post, "/api/keys/\(created["key_id"]!.string!)/revoke")
                let refused = try await second.json(.get, "/api/sessions/user/rita", expect: .unauthorized, headers: key)
                #expect(refused["type"]?.string == Problem.typeBase + "revoked-key")
            }
        }
    }

    /// Logs in through a one-time link; returns the cookie header value.
    static func login(_ client: any TestClientProtocol, user: String) async throws -> String {
        let link = try await client.json(.post, "/api/auth/login-links", text(["user_id": .string(user)]), expect: .created)
        let url = try #require(link["url"]?.string)
        let path = String(url[try #require(url.range(of: "/auth/login"))!.lowerBound...])
        let response = try await client.send(.get, path, headers: TestAuth.none)
        #expect(response.status == .seeOther)
        #expect(response.headers[.location] == "/")
        let setCookie = try #require(response.headers[.setCookie])
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax"))
        return String(setCookie.prefix { $0 != ";" })
    }

    @Test("a login link works once; the cookie authenticates; CSRF is refused without the server's Origin")
    func loginAndCSRF() async throws {
        try await withApp(configure: { $0.access.publicBaseURL = "http://sessiond.test" }) { client, _ in
            let link = try await client.json(.post, "/api/auth/login-links", Self.text(["user_id": "maria"]), expect: .created)
            let url = try #require(link["url"]?.string)
            #expect(url.hasPrefix("http://sessiond.test/auth/login?token="))
            #expect(link["expires_at"]?.string != nil)
            let path = String(url.dropFirst("http://sessiond.test".count))
            let first = try await client.send(.get, path, headers: TestAuth.none)
            #expect(first.status == .seeOther)
            let cookie = String(try #require(first.headers[.setCookie]).prefix { $0 != ";" })
            #expect(first.headers[.setCookie]?.contains("Secure") == false)
            let second = try await client.send(.get, path, headers: TestAuth.none)
            #expect(second.status == .unauthorized)
            #expect(second.headers[.setCookie] == nil)

            let me = try await client.json(.get, "/api/auth/whoami", headers: [.cookie: cookie])
            #expect(me["kind"]?.string == "login_session" && me["role"]?.string == "owner" && me["user_id"]?.string == "maria")
            #expect(me["expires_at"]?.string != nil)

            let create = Self.text(["user_id": "maria"])
            for origin in [nil, "http://evil.example", "http://sessiond.test:8081", "null"] {
                var headers: HTTPFields = [.cookie: cookie]
                if let origin { headers[.origin] = origin }
                let refused = try await client.json(.post, "/api/sessions/create", create, expect: .forbidden, headers: headers)
                #expect(refused["type"]?.string == Problem.typeBase + "forbidden-origin")
            }
            #expect(try await client.json(.get, "/api/sessions/user/maria", headers: [.cookie: cookie])["items"]!.array.isEmpty)
            try await client.json(.post, "/api/sessions/create", create, expect: .created, headers: [.cookie: cookie, .origin: "http://sessiond.test"])
            let failures = try await client.json(.get, "/api/audits?action=login&status=failure")
            #expect(failures["items"]!.array.count == 1)
        }
    }

    @Test("login sessions: listed, one revoked, the others revoked, logout ends the current one")
    func loginSessions() async throws {
        try await withApp(configure: { $0.access.publicBaseURL = "http://sessiond.test" }) { client, _ in
            let a = try await Self.login(client, user: "maria")
            let b = try await Self.login(client, user: "maria")
            let c = try await Self.login(client, user: "maria")
            _ = try await Self.login(client, user: "joana")
            let listed = try await client.json(.get, "/api/auth/sessions", headers: [.cookie: a])["items"]!.array
            #expect(listed.count == 3)
            #expect(listed.filter { $0["current"]?.bool == true }.count == 1)
            for field in ["session_id", "user_id", "ip", "user_agent", "created_at", "expires_at", "last_seen_at", "revoked"] {
                #expect(listed[0][field] != nil, "\(field)")
            }
            let bID = try await client.json(.get, "/api/auth/whoami", headers: [.cookie: b])["session_id"]!.string!
            try await client.json(.post, "/api/auth/sessions/\(bID)/revoke", headers: [.cookie: a, .origin: "http://sessiond.test"])
            let revoked = try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: b])
            #expect(revoked["type"]?.string == Problem.typeBase + "revoked-session")
            // Another user's session is not found.
            let joanas = try await client.json(.get, "/api/auth/sessions?user_id=joana")["items"]!.array
            try await client.json(.post, "/api/auth/sessions/\(joanas[0]["session_id"]!.string!)/revoke", expect: .notFound, headers: [.cookie: a, .origin: "http://sessiond.test"])

            let others = try await client.json(.post, "/api/auth/sessions/revoke-others", headers: [.cookie: a, .origin: "http://sessiond.test"])
            #expect(others["revoked"]?.int == 1)
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: c])
            try await client.json(.get, "/api/auth/whoami", headers: [.cookie: a])

            let logout = try await client.send(.post, "/api/auth/logout", headers: [.cookie: a, .origin: "http://sessiond.test"])
            #expect(logout.status == .ok)
            #expect(logout.headers[.setCookie]?.contains("Max-Age=0") == true)
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: a])
            // Garbage cookies are a 401 problem, never a 500.
            for garbage in ["sessiond_session=", "sessiond_session=%%%", "sessiond_session=" + String(repeating: "a", count: 43)] {
                try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: garbage])
            }
        }
    }

    @Test("a login session ends after its idle timeout and after its absolute lifetime")
    func idleTimeout() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: {
            $0.access.loginIdleTimeoutSeconds = 600
            $0.access.loginSessionLifetimeSeconds = 3600
        }) { client, _ in
            let cookie = try await Self.login(client, user: "maria")
            for _ in 0..<5 {
                clock.advance(seconds: 500)  // used within the idle timeout each time: still alive
                try await client.json(.get, "/api/auth/whoami", headers: [.cookie: cookie])
            }
            clock.advance(seconds: 601)
            let idle = try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: cookie])
            #expect(idle["type"]?.string == Problem.typeBase + "expired-session")

            let fresh = try await Self.login(client, user: "maria")
            for _ in 0..<7 { clock.advance(seconds: 500); try await client.json(.get, "/api/auth/whoami", headers: [.cookie: fresh]) }
            clock.advance(seconds: 200)  // 3,700 s after login: past the absolute lifetime
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: fresh])
        }
    }

    @Test("an owner makes login links for itself only; viewers and deliverers make none")
    func loginLinkRules() async throws {
        try await withApp { client, _ in
            let keys = try await AccessKeys.make(client)
            try await client.json(.post, "/api/auth/login-links", "{}", expect: .created, headers: TestAuth.bearer(keys.owner))
            try await client.json(.post, "/api/auth/login-links", Self.text(["user_id": "joana"]), expect: .forbidden, headers: TestAuth.bearer(keys.owner))
            try await client.json(.post, "/api/auth/login-links", "{}", expect: .forbidden, headers: TestAuth.bearer(keys.viewer))
            try await client.json(.post, "/api/auth/login-links", "{}", expect: .unprocessableContent)
        }
    }

    @Test("the per-key rate limit answers 429 with Retry-After and RateLimit headers; other keys are unaffected")
    func rateLimit() async throws {
        // The test's clock stands still: no token comes back while it runs, however slow the machine.
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: {
            $0.access.rateLimitPerSecond = 1
            $0.access.rateLimitBurst = 20
        }) { client, _ in
            let keys = try await AccessKeys.make(client, clock: clock)
            var statuses: [UInt] = []
            var limited: TestResponse?
            for _ in 0..<23 {
                let response = try await client.send(.get, "/api/auth/whoami", headers: TestAuth.bearer(keys.owner))
                statuses.append(UInt(response.status.code))
                if response.status == .tooManyRequests { limited = response }
                #expect(response.headers[.rateLimitLimit] == "20")
            }
            #expect(statuses.prefix(20).allSatisfy { $0 == 200 })
            #expect(statuses.suffix(2).allSatisfy { $0 == 429 })
            let response = try #require(limited)
            #expect(Int(response.headers[HTTPField.Name("Retry-After")!] ?? "") ?? 0 >= 1)
            #expect(response.headers[.rateLimitRemaining] == "0")
            #expect(response.headers[.rateLimitReset] != nil)
            try await client.json(.get, "/api/auth/whoami", headers: TestAuth.bearer(keys.viewer))
            // The operator's ADMIN_API_KEY has no budget.
            for _ in 0..<30 { try await client.json(.get, "/api/auth/whoami") }
        }
    }

    @Test("failed authentication is throttled per client address")
    func failureThrottle() async throws {
        try await withApp(configure: {
            $0.access.authFailuresPerSecond = 0.01
            $0.access.authFailureBurst = 3
        }) { client, _ in
            for _ in 0..<3 { try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(KeyFormat.makeKey())) }
            let throttled = try await client.json(.get, "/api/auth/whoami", expect: .tooManyRequests, headers: TestAuth.bearer(KeyFormat.makeKey()))
            #expect(throttled["type"]?.string == Problem.typeBase + "auth-throttled")
        }
    }

    @Test("key format: a typo is malformed, a well-formed stranger is plausible; hashes compare in constant time")
    func keyFormat() {
        let key = KeyFormat.makeKey()
        #expect(key.count == KeyFormat.length)
        #expect(KeyFormat.shape(of: key) == .plausible)
        var characters = Array(key)
        characters[10] = characters[10] == "a" ? "b" : "a"
        #expect(KeyFormat.shape(of: String(characters)) == .malformed)
        #expect(KeyFormat.shape(of: String(key.dropLast())) == .malformed)
        #expect(KeyFormat.shape(of: "short") == .malformed)
        #expect(KeyFormat.shape(of: "with space " + String(repeating: "x", count: 40)) == .malformed)
        #expect(KeyFormat.shape(of: String(repeating: "z", count: 40)) == .plausible)
        #expect(Set((0..<100).map { _ in KeyFormat.makeKey() }).count == 100)
        #expect(KeyFormat.constantTimeEqual(KeyFormat.hash(key), KeyFormat.hash(key)))
        #expect(!KeyFormat.constantTimeEqual(KeyFormat.hash(key), KeyFormat.hash(key + "x")))
    }
}

@Suite("Idempotency keys across principals and servers")
struct IdempotencyClaimTests {
    @Test("a key claimed by a request running on another server is a 409 until that claim expires; keys are per principal")
    func claimedInTheDatabase() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock) { client, location in
            let body = #"{"user_id":"maria"}"#
            let hash = IdempotencyMiddleware.fingerprint(method: "POST", path: "/api/sessions/create", body: ByteBuffer(string: body))
            let now = clock.wallClock.now().milliseconds
            // What another server leaves while it runs the request: a claim, no answer yet.
            try await executeRaw(
                """
                INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, content_type, body, created_at, expires_at, headers, claimed_until)
                VALUES ('admin:admin', 'shared-key', '\(hash)', 0, NULL, '', \(now), \(now + 86_400_000), NULL, \(now + 60_000))
                """, on: location)
            let busy = try await client.json(.post, "/api/sessions/create", body, expect: .conflict, headers: [.idempotencyKey: "shared-key"])
            #expect(busy["type"]?.string == Problem.typeBase + "idempotency-key-in-flight")
            // Another principal's key of the same name is its own.
            let keys = try await AccessKeys.make(client, clock: clock)
            try await client.json(.post, "/api/sessions/create", body, expect: .created, headers: [.idempotencyKey: "shared-key", .authorization: "Bearer \(keys.owner)"])
            // The other server died: once its claim expires, the request runs here, once.
            clock.advance(seconds: 61)
            let first = try await client.send(.post, "/api/sessions/create", json: body, headers: [.idempotencyKey: "shared-key"])
            #expect(first.status == .created)
            let again = try await client.send(.post, "/api/sessions/create", json: body, headers: [.idempotencyKey: "shared-key"])
            #expect(again.status == .created)
            #expect(again.headers[.idempotentReplayed] == "true")
            #expect(String(buffer: again.body) == String(buffer: first.body))
        }
    }
}
