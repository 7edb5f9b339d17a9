import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

/// Webhooks end to end: the real server, a real receiver on 127.0.0.1, real signatures.
@Suite("Webhooks: endpoints, signed deliveries, retries, replay")
struct WebhookTests {
    /// Loopback receivers allowed, retries every second, a circuit that closes again within 2 s.
    static func fast(_ configuration: inout ServerConfiguration) {
        configuration.webhooks.allowPrivate = true
        configuration.webhooks.policy.retrySchedule = Array(repeating: 1, count: 20)
        configuration.webhooks.policy.circuitCooldown = 1
        configuration.webhooks.policy.circuitMaximum = 2
    }

    static func create(_ client: any TestClientProtocol, url: String, events: [String] = [], headers: HTTPFields = [:]) async throws -> (id: String, secret: String) {
        let created = try await client.json(
            .post, "/api/webhooks", body(["url": .string(url), "events": .array(events.map(JSONValue.string)), "description": "ERP"]), expect: .created, headers: headers)
        return (try #require(created["endpoint_id"]?.string), try #require(created["secret"]?.string))
    }

    /// Checks a delivery's signature the way a receiver would, with swift-crypto directly.
    static func verifies(_ delivery: WebhookReceiver.Delivery, secret: String) -> Bool {
        guard let bytes = Data(base64Encoded: String(secret.dropFirst("whsec_".count))) else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(delivery.id).\(delivery.timestamp).\(delivery.body)".utf8), using: SymmetricKey(data: bytes))
        let expected = "v1," + Data(mac).base64EncodedString()
        return delivery.signature.split(separator: " ").contains { String($0) == expected }
    }

    static func ids(_ deliveries: [WebhookReceiver.Delivery]) -> [String] { deliveries.map(\.id) }

    /// Polls until `probe` holds (what the server records after the receiver answered commits a
    /// moment later, and PostgreSQL readers see an event once older transactions have ended).
    @discardableResult
    static func eventually<T>(seconds: Double = 15, _ probe: () async throws -> T, until done: (T) -> Bool) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let value = try await probe()
            if done(value) || Date() > deadline { return value }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func log(_ client: any TestClientProtocol, _ id: String, query: String = "") async throws -> [JSONValue] {
        try await client.json(.get, "/api/webhooks/\(id)/deliveries" + query)["items"]!.array
    }

    @Test("an endpoint gets the events it asked for, signed, with webhook-id = event_id and the event as the body; its secret is shown once")
    func signedDeliveries() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, secret) = try await Self.create(client, url: receiver.url, events: ["delivery.session.*"])
                #expect(secret.hasPrefix("whsec_"))
                let flow = DeliveryFlow(client: client)
                var sessions: [String] = []
                for user in ["u1", "u2", "u3"] { sessions.append(try await flow.create(user: user)) }
                try await client.json(.post, "/api/keys", body(["name": "k", "role": "owner", "user_id": "u1"]), expect: .created)  // not asked for

                let deliveries = try await receiver.wait { $0.count >= 3 }
                try await Task.sleep(for: .milliseconds(300))
                #expect(receiver.deliveries.count == 3)
                let log = try await Self.eventually({ try await EventsTests.allEvents(client, query: "&types=delivery.session.created").events }, until: { $0.count == 3 })
                #expect(Set(Self.ids(deliveries)) == Set(log.map { $0["event_id"]!.string! }))
                for delivery in deliveries {
                    #expect(Self.verifies(delivery, secret: secret))
                    #expect(delivery.json?["event_id"] as? String == delivery.id)
                    #expect(delivery.type == "delivery.session.created")
                    #expect(abs((Double(delivery.timestamp) ?? 0) - Date().timeIntervalSince1970) < 60)
                    #expect(!Self.verifies(delivery, secret: WebhookSignatureFixture.otherSecret))
                }
                #expect(Set(deliveries.compactMap { ($0.json?["session_id"] as? String) }) == Set(sessions))

                // Never shown again.
                let endpoint = try await client.json(.get, "/api/webhooks/\(id)")
                #expect(endpoint["secret"] == nil && endpoint["url"]?.string == receiver.url && endpoint["enabled"]?.bool == true)
                let listed = try await client.send(.get, "/api/webhooks")
                #expect(!String(buffer: listed.body).contains(secret))
                let log2 = try await Self.eventually({ try await Self.log(client, id) }, until: { $0.count == 3 })
                #expect(log2.count == 3)
                #expect(log2.allSatisfy { $0["status"]?.string == "succeeded" && $0["attempt"]?.int == 1 && $0["response_status"]?.int == 200 && $0["latency_ms"]?.int != nil })
                let body = try await client.send(.get, "/api/events")
                #expect(!String(buffer: body.body).contains(secret))
            }
        }
    }

    @Test("owners manage their own endpoints, which get their own user's events only; other roles are refused")
    func ownership() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                func key(_ role: String, _ user: String) async throws -> HTTPFields {
                    TestAuth.bearer(try await client.json(.post, "/api/keys", body(["name": "k", "role": .string(role), "user_id": .string(user)]), expect: .created)["key"]!.string!)
                }
                let (maria, joao, viewer) = (try await key("owner", "maria"), try await key("owner", "joao"), try await key("viewer", "maria"))
                let (id, _) = try await Self.create(client, url: receiver.url, events: ["delivery.*"], headers: maria)
                try await client.json(.get, "/api/webhooks/\(id)", expect: .notFound, headers: joao)
                try await client.json(.patch, "/api/webhooks/\(id)", body(["enabled": false]), expect: .notFound, headers: joao)
                try await client.json(.post, "/api/webhooks", body(["url": .string(receiver.url)]), expect: .forbidden, headers: viewer)
                try await client.json(.post, "/api/webhooks", body(["url": .string(receiver.url), "user_id": "joao"]), expect: .forbidden, headers: maria)
                #expect(try await client.json(.get, "/api/webhooks", headers: joao)["items"]!.array.isEmpty)
                #expect(try await client.json(.get, "/api/webhooks", headers: maria)["items"]!.array.count == 1)
                #expect(try await client.json(.get, "/api/webhooks")["items"]!.array.count == 1)

                let flow = DeliveryFlow(client: client)
                let mine = try await flow.create(user: "maria")
                _ = try await flow.create(user: "joao")
                let other = try await flow.create(user: "joao")
                _ = other
                try await flow.add(mine, ["M1"])
                let deliveries = try await receiver.wait { $0.count >= 2 }
                try await Task.sleep(for: .milliseconds(400))
                #expect(receiver.deliveries.count == 2)
                #expect(deliveries.allSatisfy { ($0.json?["session_id"] as? String) == mine })

                try await client.json(.delete, "/api/webhooks/\(id)", expect: .noContent, headers: maria)
                try await client.json(.get, "/api/webhooks/\(id)", expect: .notFound, headers: maria)
            }
        }
    }

    @Test("bad endpoints are refused with 422 naming the field, private receivers too unless allowed")
    func validation() async throws {
        try await withApp { client, _ in
            for (url, field) in [("ftp://example.com/x", "url"), ("not a url", "url"), ("http://127.0.0.1:9/x", "url"), ("http://localhost/x", "url"),
                                 ("http://10.0.0.5/x", "url"), ("http://169.254.169.254/latest", "url"), ("http://[::1]/x", "url")] {
                let problem = try await client.json(.post, "/api/webhooks", body(["url": .string(url)]), expect: .unprocessableContent)
                #expect(problem["field"]?.string == field, "\(url)")
            }
            let unknown = try await client.json(.post, "/api/webhooks", body(["url": "http://93.184.216.34/x", "events": ["delivery.session.created", "delivery.nope"]]), expect: .unprocessableContent)
            #expect(unknown["field"]?.string == "events[1]")
            try await client.json(.post, "/api/webhooks", body(["url": "http://93.184.216.34/x", "events": ["nothing.*"]]), expect: .unprocessableContent)
            try await client.json(.post, "/api/webhooks", body(["events": ["delivery.*"]]), expect: .unprocessableContent)
            let ok = try await client.json(.post, "/api/webhooks", body(["url": "http://93.184.216.34/x", "events": ["delivery.*", "access.key.created"], "enabled": false]), expect: .created)
            #expect(ok["enabled"]?.bool == false)
            try await client.json(.patch, "/api/webhooks/\(ok["endpoint_id"]!.string!)", body(["url": "http://192.168.0.1/"]), expect: .unprocessableContent)
            try await client.json(.get, "/api/webhooks/whep_nope", expect: .notFound)
        }
    }

    @Test("a failed attempt is retried under the same webhook-id until the receiver takes it; the delivery log shows each attempt")
    func retries() async throws {
        try await withReceiver({ _, attempt in attempt < 3 ? .init(status: .internalServerError, body: "boom \(attempt)") : .init() }) { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, secret) = try await Self.create(client, url: receiver.url, events: ["webhook.test"])
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                // Retries 1 s apart; a CI machine busy with the whole suite once needed more than 15 s
                // (an attempt whose record failed waits for its lease to run out, 15 s later).
                let deliveries = try await receiver.wait(seconds: 45) { $0.count >= 3 }
                #expect(Set(Self.ids(deliveries)).count == 1)
                #expect(deliveries.allSatisfy { Self.verifies($0, secret: secret) && $0.type == "webhook.test" })
                let log = try await Self.eventually({ try await Self.log(client, id) }, until: { $0.count == 3 })
                #expect(log.map { $0["attempt"]!.int! } == [3, 2, 1])
                #expect(log.map { $0["status"]!.string! } == ["succeeded", "failed", "failed"])
                #expect(log[1]["response_status"]?.int == 500 && log[1]["response_body"]?.string == "boom 2")
                #expect(Set(log.map { $0["event_id"]!.string! }) == [deliveries[0].id])
                let failed = try await client.json(.get, "/api/webhooks/\(id)/deliveries?status=failed&limit=1")
                #expect(failed["items"]!.array.count == 1 && failed["next_cursor"]?.string != nil)
                let rest = try await client.json(.get, "/api/webhooks/\(id)/deliveries?status=failed&cursor=\(failed["next_cursor"]!.string!)")
                #expect(rest["items"]!.array.map { $0["attempt"]!.int! } == [1])
                let stats = try await client.json(.get, "/api/webhooks/stats")["items"]![0]!
                #expect(stats["succeeded"]?.int == 1 && stats["pending"]?.int == 0 && stats["attempts_24h"]?.int == 3 && stats["failed_attempts_24h"]?.int == 2)
            }
        }
    }

    @Test("a receiver down for a while gets every event once it is back; meanwhile the circuit opens")
    func downThenBack() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url, events: ["delivery.session.created"])
                await receiver.stop()
                let flow = DeliveryFlow(client: client)
                for index in 0..<20 { _ = try await flow.create(user: "u\(index % 3)") }
                let down = try await Self.eventually({ try await client.json(.get, "/api/webhooks/\(id)") }, until: { ($0["consecutive_failures"]?.int ?? 0) >= 5 })
                #expect((down["consecutive_failures"]?.int ?? 0) >= 5)
                let failures = try await client.json(.get, "/api/webhooks/\(id)/deliveries?status=failed")["items"]!.array
                #expect(!failures.isEmpty && failures.allSatisfy { $0["response_status"]?.isNull == true && $0["error"]?.string != nil })
                await receiver.start()
                let log = Set(try await Self.eventually({ try await EventsTests.allEvents(client, query: "&types=delivery.session.created").events }, until: { $0.count == 20 })
                    .map { $0["event_id"]!.string! })
                #expect(log.count == 20)
                try await receiver.wait(seconds: 20) { Set(Self.ids($0)) == log }
                let up = try await Self.eventually({ try await client.json(.get, "/api/webhooks/\(id)") }, until: { $0["consecutive_failures"]?.int == 0 })
                #expect(up["consecutive_failures"]?.int == 0 && up["circuit_open_until"]?.isNull == true)
            }
        }
    }

    @Test("410 Gone disables the endpoint (an event says so) and keeps its backlog; enabling it again sends the backlog")
    func goneDisables() async throws {
        try await withReceiver({ _, _ in .init(status: .gone) }) { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url)
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                let first = try await receiver.wait { $0.count >= 1 }[0]
                let endpoint = try await Self.eventually({ try await client.json(.get, "/api/webhooks/\(id)") }, until: { $0["enabled"]?.bool == false })
                #expect(endpoint["enabled"]?.bool == false && endpoint["disabled_reason"]?.string == "gone")
                let disabled = try await Self.eventually({ try await EventsTests.allEvents(client, query: "&types=webhook.endpoint.disabled").events }, until: { !$0.isEmpty })
                #expect(disabled.count == 1 && disabled[0]["data"]?["endpoint_id"]?.string == id && disabled[0]["data"]?["reason"]?.string == "gone")
                try await Task.sleep(for: .milliseconds(1500))
                #expect(receiver.deliveries.count == 1)  // no more attempts while disabled

                receiver.respond { _, _ in .init() }
                let enabled = try await client.json(.patch, "/api/webhooks/\(id)", body(["enabled": true]))
                #expect(enabled["enabled"]?.bool == true && enabled["disabled_reason"]?.isNull == true)
                try await receiver.wait { $0.filter { $0.id == first.id }.count == 2 }
            }
        }
    }

    @Test("an endpoint failing for WEBHOOK_DISABLE_AFTER is disabled, and an event says so")
    func disableAfter() async throws {
        let clock = ManualClock()
        try await withReceiver({ _, _ in .init(status: .internalServerError) }) { receiver in
            try await withApp(clock: clock.wallClock, configure: { configuration in
                Self.fast(&configuration)
                configuration.webhooks.policy.disableAfter = 3600
            }) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url, events: ["webhook.test"])
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                try await receiver.wait { $0.count == 1 }
                let failing = try await Self.eventually({ try await client.json(.get, "/api/webhooks/\(id)") }, until: { $0["failing_since"]?.string != nil })
                #expect(failing["enabled"]?.bool == true && failing["consecutive_failures"]?.int == 1)
                clock.advance(seconds: 1800)  // the retry is due; failing for half the time: still enabled
                try await receiver.wait { $0.count == 2 }
                #expect(try await Self.eventually({ try await Self.log(client, id) }, until: { $0.count == 2 }).count == 2)
                #expect(try await client.json(.get, "/api/webhooks/\(id)")["enabled"]?.bool == true)
                clock.advance(seconds: 1801)  // failing for longer than an hour at the next attempt
                try await receiver.wait { $0.count == 3 }
                let disabled = try await Self.eventually({ try await client.json(.get, "/api/webhooks/\(id)") }, until: { $0["enabled"]?.bool == false })
                #expect(disabled["enabled"]?.bool == false && disabled["disabled_reason"]?.string == "failing")
                let events = try await Self.eventually({ try await EventsTests.allEvents(client, query: "&types=webhook.endpoint.disabled").events }, until: { !$0.isEmpty })
                #expect(events.count == 1 && events[0]["data"]?["reason"]?.string == "failing")
                // Disabled, it keeps its backlog and sends nothing.
                clock.advance(seconds: 60)
                try await Task.sleep(for: .milliseconds(1200))
                #expect(receiver.deliveries.count == 3)
                let stats = try await client.json(.get, "/api/webhooks/stats")["items"]![0]!
                #expect(stats["pending"]?.int == 1 && stats["enabled"]?.bool == false)
            }
        }
    }

    @Test("the circuit opens after consecutive failures: nothing is sent while it is open; then it lets deliveries through again")
    func circuitBreaker() async throws {
        let clock = ManualClock()
        try await withReceiver({ _, _ in .init(status: .internalServerError) }) { receiver in
            try await withApp(clock: clock.wallClock, configure: { configuration in
                Self.fast(&configuration)
                configuration.webhooks.policy.circuitCooldown = 30
                configuration.webhooks.batch = 1
            }) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url, events: ["webhook.test"])
                for _ in 0..<12 { try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted) }
                let open = try await Self.eventually({ try await client.json(.get, "/api/webhooks/stats")["items"]![0]! }, until: { $0["circuit"]?.string == "open" })
                #expect(open["circuit"]?.string == "open")
                let sent = receiver.deliveries.count
                #expect(sent >= 5 && sent < 12)
                try await Task.sleep(for: .milliseconds(1500))
                #expect(receiver.deliveries.count == sent)  // the clock stands still: the circuit stays open
                receiver.respond { _, _ in .init() }
                clock.advance(seconds: 31)
                let delivered = try await receiver.wait { Set($0.map(\.id)).count == 12 }
                #expect(Set(delivered.map(\.id)).count == 12)
                let closed = try await Self.eventually({ try await client.json(.get, "/api/webhooks/stats")["items"]![0]! }, until: { $0["circuit"]?.string == "closed" })
                #expect(closed["circuit"]?.string == "closed" && closed["consecutive_failures"]?.int == 0)
            }
        }
    }

    @Test("secrets are sealed at rest; a secret that does not open is never sent unsigned: the attempt fails and says why")
    func sealedSecrets() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, location in
                let (id, secret) = try await Self.create(client, url: receiver.url, events: ["webhook.test"])
                let stored = try await queryRaw("SELECT secret FROM webhook_endpoints WHERE endpoint_id = '\(id)'", on: location)[0].string(0)
                #expect(stored.hasPrefix("v1:") && !stored.contains(secret) && !stored.contains(String(secret.dropFirst(6))))
                try await executeRaw("UPDATE webhook_endpoints SET secret = 'v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE endpoint_id = '\(id)'", on: location)
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                let log = try await Self.eventually({ try await Self.log(client, id) }, until: { !$0.isEmpty })
                #expect(log.first?["status"]?.string == "failed" && log.first?["error"]?.string?.contains("WEBHOOK_SECRET_KEY") == true)
                #expect(receiver.deliveries.isEmpty)
            }
        }
    }

    @Test("the SSRF guard also runs at every attempt: a receiver allowed when the endpoint was made and refused now gets nothing")
    func guardAtSendTime() async throws {
        let location = try await TestDatabase.make()
        try await withReceiver { receiver in
            // Made by a server that allows loopback receivers…
            let id = try await testApplication(on: location, configure: Self.fast).test(.router) { client in
                try await Self.create(client, url: receiver.url, events: ["webhook.test"]).id
            }
            // …sent by one that does not (the default).
            try await testApplication(on: location).test(.router) { client in
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                let log = try await Self.eventually({ try await Self.log(client, id) }, until: { !$0.isEmpty })
                #expect(log.first?["status"]?.string == "failed" && log.first?["response_status"]?.isNull == true)
                #expect(log.first?["error"]?.string?.contains("127.0.0.1 is a loopback address") == true)
                #expect(receiver.deliveries.isEmpty)
            }
        }
        await TestDatabase.drop(location)
    }

    @Test("webhook-delivery: abort-message stops the retries of that event")
    func abortStops() async throws {
        try await withReceiver({ _, _ in .init(status: .internalServerError, headers: [HTTPField.Name("webhook-delivery")!: "abort-message"]) }) { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url)
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                try await receiver.wait { $0.count >= 1 }
                try await Task.sleep(for: .milliseconds(2500))
                #expect(receiver.deliveries.count == 1)
                let stats = try await Self.eventually({ try await client.json(.get, "/api/webhooks/stats")["items"]![0]! }, until: { $0["aborted"]?.int == 1 })
                #expect(stats["aborted"]?.int == 1 && stats["pending"]?.int == 0)
            }
        }
    }

    @Test("429/503 with Retry-After is honoured (here 2 s, where the schedule says 1 s)")
    func retryAfter() async throws {
        try await withReceiver({ _, attempt in attempt == 1 ? .init(status: .serviceUnavailable, headers: [.retryAfter: "2"]) : .init() }) { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, _) = try await Self.create(client, url: receiver.url)
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                // 2 s apart; 45 s allowed as in `retries` (an attempt whose record failed under the
                // whole suite's load is due again when its lease runs out).
                let deliveries = try await receiver.wait(seconds: 45) { $0.count >= 2 }
                #expect(deliveries[1].receivedAt.timeIntervalSince(deliveries[0].receivedAt) >= 1.9)
            }
        }
    }

    @Test("rotate-secret: a new secret, shown once; both sign for 24 h, space-separated")
    func rotation() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, old) = try await Self.create(client, url: receiver.url, events: ["webhook.test"])
                let rotated = try await client.json(.post, "/api/webhooks/\(id)/rotate-secret")
                let new = try #require(rotated["secret"]?.string)
                #expect(new != old && new.hasPrefix("whsec_"))
                let expires = try #require(rotated["previous_secret_expires_at"]?.string.flatMap(Timestamp.init(rfc3339:)))
                #expect(abs(expires.milliseconds - Int64(Date().timeIntervalSince1970 * 1000) - 86_400_000) < 60_000)
                try await client.json(.post, "/api/webhooks/\(id)/test", expect: .accepted)
                let delivery = try await receiver.wait { $0.count >= 1 }[0]
                #expect(delivery.signature.split(separator: " ").count == 2)
                #expect(Self.verifies(delivery, secret: new) && Self.verifies(delivery, secret: old))
                #expect(try await client.json(.get, "/api/webhooks/\(id)")["secret"] == nil)
            }
        }
    }

    @Test("replay sends one event again, or every event since a time, under the same webhook-id")
    func replay() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let before = Timestamp(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 1000)
                let (id, _) = try await Self.create(client, url: receiver.url, events: ["delivery.*"])
                let flow = DeliveryFlow(client: client)
                let session = try await flow.create()
                try await flow.add(session, ["R1", "R2"])
                let first = try await receiver.wait { $0.count >= 2 }
                let one = try await client.json(.post, "/api/webhooks/\(id)/replay", body(["event_id": .string(first[0].id)]), expect: .accepted)
                #expect(one["queued"]?.int == 1)
                // A replay wakes a worker at once (idle workers otherwise look only every 5 s; 4 s
                // leaves room for the whole suite starting at once on 2 cores, where 2 s once ran out).
                let again = try await receiver.wait(seconds: 4) { $0.count >= 3 }
                #expect(again[2].id == first[0].id)
                let all = try await client.json(.post, "/api/webhooks/\(id)/replay", body(["since": .string(before.rfc3339)]), expect: .accepted)
                #expect(all["queued"]?.int == 2)
                let everything = try await receiver.wait(seconds: 4) { $0.count >= 5 }
                #expect(Set(Self.ids(everything)) == Set(Self.ids(first)))
                try await client.json(.post, "/api/webhooks/\(id)/replay", body(["event_id": "0000000000000000000000000000ffff"]), expect: .notFound)
                try await client.json(.post, "/api/webhooks/\(id)/replay", body(["since": "yesterday"]), expect: .unprocessableContent)
                try await client.json(.post, "/api/webhooks/\(id)/replay", body([:]), expect: .unprocessableContent)
            }
        }
    }

    @Test("deliveries never carry a key, token or secret")
    func noSecretsOut() async throws {
        try await withReceiver { receiver in
            try await withApp(configure: Self.fast) { client, _ in
                let (id, secret) = try await Self.create(client, url: receiver.url)
                let key = try await client.json(.post, "/api/keys", body(["name": "k", "role": "owner", "user_id": "u1"]), expect: .created)["key"]!.string!
                let rotated = try await client.json(.post, "/api/webhooks/\(id)/rotate-secret")["secret"]!.string!
                let (_, otherSecret) = try await Self.create(client, url: receiver.url + "?token=abc123", events: ["webhook.test"])
                let link = try await client.json(.post, "/api/auth/login-links", body(["user_id": "u1"]), expect: .created)["url"]!.string!
                let deliveries = try await receiver.wait { $0.count >= 3 }
                let types = Set(deliveries.compactMap(\.type))
                #expect(types.isSuperset(of: ["access.key.created", "webhook.endpoint.created", "webhook.endpoint.updated"]))
                let token = String(link.split(separator: "=").last ?? "")
                for delivery in deliveries {
                    for secretText in [secret, rotated, otherSecret, key, "abc123", token] {
                        #expect(!delivery.body.contains(secretText))
                    }
                    #expect(!delivery.body.contains("whsec_"))
                }
            }
        }
    }

    @Test("two servers on one database share the deliveries: each event arrives exactly once")
    func twoServers() async throws {
        try await withReceiver({ _, _ in .init(delay: .milliseconds(5)) }) { receiver in
            try await withApp(configure: Self.fast) { client, location in
                let (_, _) = try await Self.create(client, url: receiver.url, events: ["delivery.session.created"])
                try await withSecondServer(on: location, configure: Self.fast) { second in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for (server, name) in [(client, "a"), (second, "b")] {
                            group.addTask {
                                let flow = DeliveryFlow(client: server)
                                for index in 0..<60 { _ = try await flow.create(user: "\(name)\(index % 4)") }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let log = Set(try await Self.eventually({ try await EventsTests.allEvents(client, query: "&types=delivery.session.created", limit: 500).events }, until: { $0.count == 120 })
                        .map { $0["event_id"]!.string! })
                    #expect(log.count == 120)
                    let deliveries = try await receiver.wait(seconds: 30) { Set(Self.ids($0)) == log }
                    try await Task.sleep(for: .milliseconds(1500))
                    let all = Self.ids(receiver.deliveries)
                    #expect(all.count == 120, "duplicates: \(all.count - Set(all).count)")
                    _ = deliveries
                }
            }
        }
    }
}

enum WebhookSignatureFixture {
    static let otherSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
}
