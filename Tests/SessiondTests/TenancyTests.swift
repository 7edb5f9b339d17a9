import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import Kernel
import NIOCore
import SessiondApp
import Testing

/// The tenancy contract: two owners who choose the same ids for everything never see, change or
/// learn of each other's data.
@Suite("Tenancy: two owners, the same ids")
struct TenancyTests {
    /// A key made by `maker` (the admin unless given); its secret.
    static func key(_ client: any TestClientProtocol, _ request: JSONValue, by maker: HTTPFields = TestAuth.admin, expect status: HTTPResponse.Status = .created) async throws -> JSONValue {
        try await client.json(.post, "/api/keys", body(request), expect: status, headers: maker)
    }

    static func secret(_ created: JSONValue) throws -> HTTPFields { TestAuth.bearer(try #require(created["key"]?.string)) }

    static func problemType(_ response: TestResponse) -> String? {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body)))?["type"]?.string
    }

    @Test("owners make their own deliverer and viewer keys; a deliverer serves one owner, whose sessions and events alone it sees")
    func deliverersServeOneOwner() async throws {
        try await withApp { client, _ in
            let ana = try Self.secret(try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"]))
            let bia = try Self.secret(try await Self.key(client, ["name": "bia", "role": "owner", "user_id": "bia"]))
            // Each owner makes a deliverer "d1": user_id defaults to the owner's own.
            let anaD1 = try await Self.key(client, ["name": "Davi", "role": "deliverer", "deliverer_id": "d1"], by: ana)
            #expect(anaD1["user_id"]?.string == "ana" && anaD1["deliverer_id"]?.string == "d1")
            let biaD1 = try await Self.key(client, ["name": "Davi", "role": "deliverer", "deliverer_id": "d1", "user_id": "bia"], by: bia)
            let anaViewer = try await Self.key(client, ["name": "contadora", "role": "viewer"], by: ana)
            #expect(anaViewer["user_id"]?.string == "ana")
            // Never for another owner, never another role.
            try await Self.key(client, ["name": "x", "role": "deliverer", "deliverer_id": "d2", "user_id": "bia"], by: ana, expect: .forbidden)
            for role in ["owner", "admin"] {
                try await Self.key(client, ["name": "x", "role": .string(role), "user_id": "ana"], by: ana, expect: .forbidden)
            }
            for maker in [try Self.secret(anaD1), try Self.secret(anaViewer)] {
                try await Self.key(client, ["name": "x", "role": "deliverer", "deliverer_id": "d3"], by: maker, expect: .forbidden)
            }
            // The admin names the owner of a deliverer key.
            try await Self.key(client, ["name": "x", "role": "deliverer", "deliverer_id": "d4"], expect: .unprocessableContent)

            // An owner lists, reads and revokes its own deliverers' and viewers' keys only.
            let anaKeys = try await client.json(.get, "/api/keys", headers: ana)["items"]!.array.compactMap { $0["key_id"]?.string }
            #expect(Set(anaKeys) == [anaD1["key_id"]!.string!, anaViewer["key_id"]!.string!])
            try await client.json(.get, "/api/keys/\(biaD1["key_id"]!.string!)", expect: .notFound, headers: ana)
            try await client.json(.post, "/api/keys/\(biaD1["key_id"]!.string!)/revoke", expect: .notFound, headers: ana)

            // The same deliverer id in two owners' sessions.
            let flow = DeliveryFlow(client: client)
            let anaSession = try await flow.create(user: "ana")
            try await flow.add(anaSession, ["SAME-1", "SAME-2"])
            _ = try await flow.start(anaSession, deliverers: ["d1"])
            let biaSession = try await flow.create(user: "bia")
            try await flow.add(biaSession, ["SAME-1", "SAME-2"])
            _ = try await flow.start(biaSession, deliverers: ["d1"])
            let biaPackage = try await flow.assignments(biaSession)[0].packageID
            let anaPackage = try await flow.assignments(anaSession)[0].packageID

            let davi = try Self.secret(anaD1)
            try await client.json(.get, "/api/sessions/\(anaSession)", headers: davi)
            try await client.json(.get, "/api/sessions/\(biaSession)", expect: .notFound, headers: davi)
            try await client.json(.get, "/api/sessions/\(biaSession)/dashboard", expect: .notFound, headers: davi)
            try await client.json(
                .post, "/api/sessions/\(biaSession)/delivery/complete", body(["package_id": .string(biaPackage), "deliverer_id": "d1"]), expect: .notFound,
                headers: davi)
            try await client.json(.post, "/api/sessions/\(anaSession)/delivery/complete", body(["package_id": .string(anaPackage), "deliverer_id": "d1"]), headers: davi)
            let stream = try await client.send(.get, "/api/sessions/\(biaSession)/events", headers: davi)
            #expect(stream.status == .notFound)

            // Events: each deliverer reads its own owner's session only.
            let anaDaviEvents = try await EventsTests.allEvents(client, headers: davi).events
            #expect(Set(anaDaviEvents.compactMap { $0["session_id"]?.string }) == [anaSession])
            #expect(anaDaviEvents.compactMap { $0["type"]?.string } == ["delivery.session.started", "delivery.package.delivered"])
            let biaDaviEvents = try await EventsTests.allEvents(client, headers: try Self.secret(biaD1)).events
            #expect(Set(biaDaviEvents.compactMap { $0["session_id"]?.string }) == [biaSession])
        }
    }

    @Test("a deliverer key stored without an owner is refused with key-needs-owner")
    func delivererKeyWithoutOwner() async throws {
        try await withApp { client, location in
            let created = try await Self.key(client, ["name": "antigo", "role": "deliverer", "deliverer_id": "d1", "user_id": "ana"])
            // As the first version stored deliverer keys.
            try await executeRaw("UPDATE api_keys SET user_id = NULL WHERE key_id = '\(created["key_id"]!.string!)'", on: location)
            let response = try await client.send(.get, "/api/auth/whoami", headers: try Self.secret(created))
            #expect(response.status == .unauthorized)
            #expect(Self.problemType(response) == Problem.typeBase + "key-needs-owner")
        }
    }

    @Test("user_id and deliverer_id are person ids: anything that could read as syntax is a 422 naming the field")
    func personIDs() async throws {
        try await withApp { client, _ in
            for bad in ["x user_id=bia", "", String(repeating: "a", count: 65), "ana bia", "a\"b", "ação", "a=b", "a,b"] {
                let keyAnswer = try await client.json(.post, "/api/keys", body(["name": "x", "role": "owner", "user_id": .string(bad)]), expect: .unprocessableContent)
                #expect(keyAnswer["field"]?.string == "user_id", "\(bad)")
                let delivererAnswer = try await client.json(
                    .post, "/api/keys", body(["name": "x", "role": "deliverer", "user_id": "ana", "deliverer_id": .string(bad)]), expect: .unprocessableContent)
                #expect(delivererAnswer["field"]?.string == "deliverer_id", "\(bad)")
                let session = try await client.json(.post, "/api/sessions/create", body(["user_id": .string(bad)]), expect: .unprocessableContent)
                #expect(session["field"]?.string == "user_id", "\(bad)")
            }
            for good in ["ana", "Ana.Maria_1", "+5511999990000", "ana@example.com", "tg:12345", "a-b"] {
                try await client.json(.post, "/api/keys", body(["name": "x", "role": "owner", "user_id": .string(good)]), expect: .created)
            }
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "ana")
            try await flow.add(session, ["P1"])
            let started = try await client.json(
                .post, "/api/sessions/\(session)/start",
                body(["deliverers": [["deliverer_id": "x user_id=bia", "base_salary_cents": 0, "commission_per_delivery_cents": 0]]]), expect: .unprocessableContent)
            #expect(started["field"]?.string == "deliverers[0].deliverer_id")
        }
    }

    @Test("an event's audience narrows within its tenant and never reaches another, however its tags read")
    func audienceStaysInTenant() {
        let event = Event(
            id: EventID(transaction: 0, position: 1), type: "delivery.session.started", sessionID: "s", seq: 1, version: 1, userID: "ana",
            audience: ["deliverer_id=x", "user_id=bia", "deliverer_id=d1"], createdAt: Timestamp(milliseconds: 0), data: "{}")
        func caller(_ role: String, _ scopes: [String: String], narrowed: Bool = false) -> Caller {
            var caller = Caller(kind: .apiKey, id: "c", role: role, scopes: scopes)
            if narrowed { caller.audienceScope = "deliverer_id" }
            return caller
        }
        #expect(!event.isVisible(to: caller("owner", ["user_id": "bia"])))
        #expect(!event.isVisible(to: caller("deliverer", ["user_id": "bia", "deliverer_id": "d1"], narrowed: true)))
        #expect(!event.isVisible(to: caller("deliverer", ["deliverer_id": "d1"], narrowed: true)))
        #expect(event.isVisible(to: caller("deliverer", ["user_id": "ana", "deliverer_id": "d1"], narrowed: true)))
        #expect(!event.isVisible(to: caller("deliverer", ["user_id": "ana", "deliverer_id": "d2"], narrowed: true)))
        #expect(event.isVisible(to: caller("viewer", ["user_id": "ana"])))
        #expect(event.isVisible(to: caller("admin", [:])))
    }

    @Test("login sessions: an owner acts on its user's (its viewers' too), a viewer on its own only, an admin on a named user's")
    func loginSessions() async throws {
        try await withApp(configure: WebTests.configure) { client, _ in
            let anaKey = try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"])
            let viewerKey = try await Self.key(client, ["name": "contadora", "role": "viewer", "user_id": "ana"])
            let otherViewerKey = try await Self.key(client, ["name": "sócia", "role": "viewer", "user_id": "ana"])
            let biaKey = try await Self.key(client, ["name": "bia", "role": "owner", "user_id": "bia"])
            let anaCookie = try await WebTests.logIn(client, key: anaKey["key"]!.string!)
            let viewerCookie = try await WebTests.logIn(client, key: viewerKey["key"]!.string!)
            _ = try await WebTests.logIn(client, key: otherViewerKey["key"]!.string!)
            _ = try await WebTests.logIn(client, key: biaKey["key"]!.string!)

            func ids(_ headers: HTTPFields, _ query: String = "") async throws -> Set<String> {
                Set(try await client.json(.get, "/api/auth/sessions\(query)", headers: headers)["items"]!.array.compactMap { $0["session_id"]?.string })
            }
            let anaSees = try await ids(try Self.secret(anaKey))
            #expect(anaSees.count == 3)
            let viewerSees = try await ids([.cookie: viewerCookie])
            #expect(viewerSees.count == 1 && anaSees.isSuperset(of: viewerSees))
            #expect(try await ids(try Self.secret(viewerKey)) == viewerSees)
            #expect(try await ids(try Self.secret(biaKey)).count == 1)
            #expect(try await ids(TestAuth.admin, "?user_id=ana") == anaSees)

            // The viewer cannot end the owner's login session, nor another viewer's: 404.
            let otherViewerSees = try await ids(try Self.secret(otherViewerKey))
            #expect(otherViewerSees.count == 1 && otherViewerSees != viewerSees)
            let anaOwn = try #require(anaSees.subtracting(viewerSees).subtracting(otherViewerSees).first)
            try await client.json(.post, "/api/auth/sessions/\(anaOwn)/revoke", expect: .notFound, headers: try Self.secret(viewerKey))
            let others = try await client.json(.post, "/api/auth/sessions/revoke-others", headers: [.cookie: viewerCookie, .origin: WebTests.origin])
            #expect(others["revoked"]?.int == 0)
            let stillIn = try await client.send(.get, "/api/auth/whoami", headers: [.cookie: anaCookie])
            #expect(stillIn.status == .ok)
            // Bia's key ends none of ana's.
            try await client.json(.post, "/api/auth/sessions/\(anaOwn)/revoke", expect: .notFound, headers: try Self.secret(biaKey))

            // An admin names the user; then ends all of that user's.
            let unnamed = try await client.json(.post, "/api/auth/sessions/revoke-others", expect: .unprocessableContent)
            #expect(unnamed["field"]?.string == "user_id")
            let ended = try await client.json(.post, "/api/auth/sessions/revoke-others?user_id=ana")
            #expect(ended["revoked"]?.int == 3)
            #expect(try await client.send(.get, "/api/auth/whoami", headers: [.cookie: anaCookie]).status == .unauthorized)
            #expect(try await ids(try Self.secret(biaKey)).count == 1)
        }
    }

    @Test("conversations belong to an owner: the same channel and contact are two conversations; reads, turns, consent, expiry, history and erasure stay in the tenant")
    func conversations() async throws {
        try await withApp { client, _ in
            let ana = try Self.secret(try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"]))
            let bia = try Self.secret(try await Self.key(client, ["name": "bia", "role": "owner", "user_id": "bia"]))
            let anaViewer = try Self.secret(try await Self.key(client, ["name": "v", "role": "viewer"], by: ana))
            let anaDeliverer = try Self.secret(try await Self.key(client, ["name": "d", "role": "deliverer", "deliverer_id": "d1"], by: ana))
            let same: JSONValue = ["channel": "whatsapp", "contact": "5511999990000"]
            let anaConversation = try await client.json(.post, "/api/conversations", body(same), expect: .created, headers: ana)
            let biaConversation = try await client.json(.post, "/api/conversations", body(same), expect: .created, headers: bia)
            let anaID = try #require(anaConversation["conversation_id"]?.string)
            let biaID = try #require(biaConversation["conversation_id"]?.string)
            #expect(anaID != biaID && anaConversation["user_id"]?.string == "ana" && biaConversation["user_id"]?.string == "bia")
            // Both ids are contact:unix_ms, even when made in the same millisecond.
            #expect(anaID.hasPrefix("5511999990000:") && biaID.hasPrefix("5511999990000:"))
            try await client.json(.post, "/api/conversations", body(same), expect: .ok, headers: ana)
            // An admin names the tenant; without it, 422.
            let unnamed = try await client.json(.post, "/api/conversations", body(same), expect: .unprocessableContent)
            #expect(unnamed["field"]?.string == "user_id")
            let adminOpened = try await client.json(.post, "/api/conversations", body(["channel": "whatsapp", "contact": "5511999990000", "user_id": "ana"]), expect: .ok)
            #expect(adminOpened["conversation_id"]?.string == anaID)
            // An owner names no other tenant.
            try await client.json(.post, "/api/conversations", body(["channel": "whatsapp", "contact": "x", "user_id": "bia"]), expect: .forbidden, headers: ana)

            // Another tenant's conversation is a 404 everywhere.
            try await client.json(.get, "/api/conversations/\(biaID)", expect: .notFound, headers: ana)
            try await client.json(.get, "/api/conversations/\(biaID)/messages", expect: .notFound, headers: ana)
            try await client.json(.post, "/api/conversations/\(biaID)/turns", body(["turn_id": 1]), expect: .notFound, headers: ana)
            try await client.json(.post, "/api/conversations/\(biaID)/consent", body(["given": true]), expect: .notFound, headers: ana)
            try await client.json(.post, "/api/conversations/\(biaID)/expire", expect: .notFound, headers: ana)
            // Viewers read; they change nothing. Deliverers neither read nor change.
            try await client.json(.get, "/api/conversations/\(anaID)", headers: anaViewer)
            try await client.json(.get, "/api/conversations/\(biaID)", expect: .notFound, headers: anaViewer)
            try await client.json(.post, "/api/conversations/\(anaID)/turns", body(["turn_id": 1]), expect: .forbidden, headers: anaViewer)
            try await client.json(.post, "/api/conversations", body(same), expect: .forbidden, headers: anaViewer)
            try await client.json(.delete, "/api/conversations/contact/5511999990000", expect: .forbidden, headers: anaViewer)
            try await client.json(.get, "/api/conversations/\(anaID)", expect: .forbidden, headers: anaDeliverer)

            try await client.json(.post, "/api/conversations/\(anaID)/turns", body(["turn_id": 1, "messages": [["role": "user", "content": "oi da ana"]]]), headers: ana)
            try await client.json(.post, "/api/conversations/\(biaID)/turns", body(["turn_id": 1, "messages": [["role": "user", "content": "oi da bia"]]]), headers: bia)
            try await client.json(.post, "/api/conversations/\(anaID)/expire", headers: ana)
            try await client.json(.post, "/api/conversations/\(biaID)/expire", headers: bia)
            let anaHistory = try await client.json(.get, "/api/conversations/contact/5511999990000/history", headers: ana)["items"]!.array
            #expect(anaHistory.compactMap { $0["conversation_id"]?.string } == [anaID])
            let viewerHistory = try await client.json(.get, "/api/conversations/contact/5511999990000/history", headers: anaViewer)["items"]!.array
            #expect(viewerHistory.compactMap { $0["conversation_id"]?.string } == [anaID])
            let adminHistory = try await client.json(.get, "/api/conversations/contact/5511999990000/history")["items"]!.array
            #expect(Set(adminHistory.compactMap { $0["conversation_id"]?.string }) == [anaID, biaID])
            let adminBia = try await client.json(.get, "/api/conversations/contact/5511999990000/history?user_id=bia")["items"]!.array
            #expect(adminBia.compactMap { $0["conversation_id"]?.string } == [biaID])

            // Events: each owner reads its own conversations' events only.
            let anaEvents = try await EventsTests.allEvents(client, headers: ana).events.filter { $0["type"]?.string?.hasPrefix("conversation.") == true }
            #expect(!anaEvents.isEmpty && Set(anaEvents.compactMap { $0["session_id"]?.string }) == [anaID])

            // Ana erases the contact: hers only.
            let erased = try await client.json(.delete, "/api/conversations/contact/5511999990000", headers: ana)
            #expect(erased["erased"]?["conversations"]?.int == 1 && erased["erased"]?["messages"]?.int == 1)
            try await client.json(.get, "/api/conversations/\(anaID)", expect: .notFound, headers: ana)
            let biaMessages = try await client.json(.get, "/api/conversations/\(biaID)/messages", headers: bia)["items"]!.array
            #expect(biaMessages.compactMap { $0["content"]?.string } == ["oi da bia"])
        }
    }

    @Test("erasing a contact also removes the stored idempotent answers that named it")
    func erasureReachesStoredAnswers() async throws {
        try await withApp { client, location in
            let ana = try Self.secret(try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"]))
            var headers = ana
            headers[.idempotencyKey] = "open-1"
            try await client.json(.post, "/api/conversations", body(["channel": "whatsapp", "contact": "5599911112222"]), expect: .created, headers: headers)
            func answers() async throws -> Int64 {
                try await queryRaw("SELECT COUNT(*) FROM idempotency_keys WHERE body LIKE '%5599911112222%'", on: location)[0].int(0)
            }
            #expect(try await answers() == 1)
            try await client.json(.delete, "/api/conversations/contact/5599911112222", headers: ana)
            #expect(try await answers() == 0)
        }
    }

    @Test("exports neutralise spreadsheet formulas: a cell beginning with = + - @, a tab or a carriage return gets a leading '")
    func formulaSafeCSV() async throws {
        #expect(SpreadsheetCell.safe("=HYPERLINK(\"http://evil.example\",\"x\")") == "'=HYPERLINK(\"http://evil.example\",\"x\")")
        for text in ["+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "-1.", "=1"] { #expect(SpreadsheetCell.safe(text) == "'" + text, "\(text)") }
        for text in ["Ana", "", "1590", "-3499", "+12.5", "R$ 10", " =x"] { #expect(SpreadsheetCell.safe(text) == text, "\(text)") }
        try await withApp(configure: WebTests.configure) { client, _ in
            let ana = try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"])
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "ana")
            try await client.json(.post, "/api/sessions/\(session)/packages", body(["packages": [["barcode": "F1", "recipient": "=HYPERLINK(\"http://evil.example\")"]]]))
            _ = try await flow.start(session, deliverers: ["d1"])
            let package = try await flow.assignments(session)[0].packageID
            try await flow.fail(session, package: package, by: "d1", reason: "@SUM(1+1)")
            // The last package resolved completes the session by itself.
            #expect(try await flow.session(session)["status"]?.string == "completed")
            let cookie = try await WebTests.logIn(client, key: ana["key"]!.string!)
            let csv = String(buffer: try await WebTests.page(client, "/sessions/\(session)/export.csv", cookie: cookie).body)
            #expect(csv.contains("'=HYPERLINK(") && !csv.contains(",=HYPERLINK(") && !csv.contains("\"=HYPERLINK("))
            #expect(csv.contains("'@SUM(1+1)"))
        }
    }

    @Test("METRICS_KEY: /metrics needs it when set")
    func metricsKey() async throws {
        try await withApp(configure: { $0.metricsKey = "metrics-key-0123456789" }) { client, _ in
            #expect(try await client.send(.get, "/metrics", headers: TestAuth.none).status == .unauthorized)
            #expect(try await client.send(.get, "/metrics", headers: TestAuth.bearer("metrics-key-012345678")).status == .unauthorized)
            #expect(try await client.send(.get, "/metrics").status == .unauthorized)
            let scraped = try await client.send(.get, "/metrics", headers: TestAuth.bearer("metrics-key-0123456789"))
            #expect(scraped.status == .ok && String(buffer: scraped.body).contains("sessiond_"))
        }
        try await withApp { client, _ in
            let open = try await client.send(.get, "/metrics", headers: TestAuth.none)
            #expect(open.status == .ok)
        }
    }

    @Test("behind a trusted proxy the throttle counts failures per forwarded client and never refuses a valid credential")
    func throttleBehindProxy() async throws {
        try await withApp(.live, configure: {
            $0.access.authFailuresPerSecond = 0.001
            $0.access.authFailureBurst = 3
            $0.trustedProxies = TrustedProxies(ranges: [IPRange("127.0.0.1/32")!, IPRange("::1")!])
        }) { client, _ in
            let ana = try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"])
            let wrong = TestAuth.bearer("sdk_this-is-not-a-key-at-all-0000000000")
            func call(_ auth: HTTPFields, from address: String) async throws -> HTTPResponse.Status {
                var headers = auth
                headers[HTTPField.Name("X-Forwarded-For")!] = "203.0.113.77, \(address)"
                return try await client.send(.get, "/api/auth/whoami", headers: headers).status
            }
            // One client behind the proxy spends its budget…
            for _ in 0..<3 { #expect(try await call(wrong, from: "198.51.100.1") == .unauthorized) }
            #expect(try await call(wrong, from: "198.51.100.1") == .tooManyRequests)
            // …its valid key still works, and every other client behind the same proxy is untouched.
            #expect(try await call(try Self.secret(ana), from: "198.51.100.1") == .ok)
            #expect(try await call(wrong, from: "198.51.100.2") == .unauthorized)
            #expect(try await call(try Self.secret(ana), from: "198.51.100.2") == .ok)
            // The audit records the forwarded client.
            let failed = try await client.json(.get, "/api/audits?action=authentication.failed&limit=100")["items"]!.array
            #expect(failed.count == 4)
        }
        // A header from an untrusted peer is not believed: one address, one budget.
        #expect(TrustedProxies().client(peer: "127.0.0.1", forwarded: [], forwardedFor: ["1.2.3.4"]) == "127.0.0.1")
        let proxies = try TrustedProxies.parse("10.0.0.0/8").get()
        #expect(proxies.client(peer: "192.0.2.9", forwarded: [], forwardedFor: ["1.2.3.4"]) == "192.0.2.9")
        #expect(proxies.client(peer: "10.1.1.1", forwarded: [], forwardedFor: ["6.6.6.6, 1.2.3.4, 10.2.2.2"]) == "1.2.3.4")
        #expect(proxies.client(peer: "10.1.1.1", forwarded: [#"for="[2001:db8::1]:4711";proto=https, for=10.3.3.3"#], forwardedFor: ["9.9.9.9"]) == "2001:db8::1")
        #expect(proxies.client(peer: "10.1.1.1", forwarded: [], forwardedFor: []) == "10.1.1.1")
        #expect(proxies.client(peer: "10.1.1.1", forwarded: [], forwardedFor: ["1.2.3.4:5555"]) == "1.2.3.4")
    }

    @Test("a stream ends within 5 s of its key's or login session's revocation and carries nothing committed after it; streams are capped per credential")
    func streamsFollowTheCredential() async throws {
        try await withApp(.live, configure: {
            WebTests.configure(&$0)
            $0.streamsPerCredential = 3
            // A client gone is noticed when the next keep-alive fails to go out.
            $0.events.heartbeat = .milliseconds(300)
            $0.events.tick = .milliseconds(300)
        }) { client, _ in
            let port = try #require(client.port)
            let anaKey = try await Self.key(client, ["name": "ana", "role": "owner", "user_id": "ana"])
            let anaSecret = try #require(anaKey["key"]?.string)
            let cookie = try await WebTests.logIn(client, key: anaSecret)
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "ana")

            // The cap: three streams per credential, the fourth is a 429; another credential is not counted with them.
            var streams = try (0..<3).map { _ in try SSEClient(port: port, path: "/api/events/stream", headers: ["Authorization": "Bearer \(anaSecret)"]) }
            for stream in streams { try await stream.waitForHead() }
            #expect(streams.allSatisfy { $0.status == 200 })
            let fourth = try SSEClient(port: port, path: "/api/events/stream", headers: ["Authorization": "Bearer \(anaSecret)"])
            try await fourth.waitForHead()
            #expect(fourth.status == 429)
            fourth.close()
            let byCookie = try SSEClient(port: port, path: "/api/sessions/\(session)/events", headers: ["Cookie": cookie])
            try await byCookie.waitForHead()
            #expect(byCookie.status == 200)
            // A closed stream gives its place back (once the server notices: its next keep-alive).
            streams[2].close()
            var reopened: SSEClient?
            for _ in 0..<100 {
                let attempt = try SSEClient(port: port, path: "/api/events/stream", headers: ["Authorization": "Bearer \(anaSecret)"])
                try await attempt.waitForHead()
                if attempt.status == 200 { reopened = attempt; break }
                attempt.close()
                try await Task.sleep(for: .milliseconds(50))
            }
            streams[2] = try #require(reopened)

            try await flow.add(session, ["BEFORE-1"])
            for stream in streams { _ = try await stream.wait { $0.contains { $0.event == "delivery.packages.added" } } }
            _ = try await byCookie.wait { $0.contains { $0.event == "delivery.packages.added" } }

            // The key is revoked: its streams end within 5 s, and a change after it never reaches them.
            let revokedAt = ContinuousClock.now
            try await client.json(.post, "/api/keys/\(anaKey["key_id"]!.string!)/revoke")
            try await flow.add(session, ["AFTER-1"])
            for stream in streams {
                while !stream.hasEnded, ContinuousClock.now - revokedAt < .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }
                #expect(stream.hasEnded && ContinuousClock.now - revokedAt < .seconds(5))
                #expect(!stream.messages.contains { $0.data.contains("AFTER-1") })
                stream.close()
            }
            // The login session lives on until it is ended itself.
            _ = try await byCookie.wait { $0.contains { $0.data.contains("AFTER-1") } }
            let loggedOutAt = ContinuousClock.now
            try await client.json(.post, "/api/auth/logout", headers: [.cookie: cookie, .origin: WebTests.origin])
            try await flow.add(session, ["AFTER-2"])
            while !byCookie.hasEnded, ContinuousClock.now - loggedOutAt < .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }
            #expect(byCookie.hasEnded && ContinuousClock.now - loggedOutAt < .seconds(5))
            #expect(!byCookie.messages.contains { $0.data.contains("AFTER-2") })
            byCookie.close()
        }
    }
}
