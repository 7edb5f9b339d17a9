import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

/// The event log and its readers: `GET /api/events`, `/api/events/types`, and the SSE streams.
@Suite("Events: the log, its cursors and live streams")
struct EventsTests {
    /// Reads every page of `/api/events` from `after`, following `next_cursor`.
    static func allEvents(
        _ client: any TestClientProtocol, query: String = "", after: String? = nil, limit: Int = 7, headers: HTTPFields = [:]
    ) async throws -> (events: [JSONValue], cursor: String) {
        var cursor = after
        var events: [JSONValue] = []
        while true {
            var uri = "/api/events?limit=\(limit)" + query
            if let cursor { uri += "&after=\(cursor)" }
            let page = try await client.json(.get, uri, headers: headers)
            let items = page["items"]!.array
            events += items
            cursor = page["next_cursor"]?.string
            if items.count < limit { break }
        }
        return (events, cursor ?? "")
    }

    @Test("every change leaves one event, in order, numbered per session without gaps; pages resume without repeats")
    func logInOrder() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["E1", "E2", "E3", "E1"])
            _ = try await flow.start(id, deliverers: ["d1"])
            let packages = try await flow.assignments(id)
            try await flow.deliver(id, package: packages[0].packageID, by: "d1")
            try await flow.deliver(id, package: packages[0].packageID, by: "d1")  // again: no change, no event
            try await flow.fail(id, package: packages[1].packageID, by: "d1")
            try await flow.deliver(id, package: packages[2].packageID, by: "d1")  // the last one: completes the session
            try await client.json(.post, "/api/sessions/\(id)/archive")
            try await client.json(.post, "/api/keys", body(["name": "k", "role": "owner", "user_id": "owner-1"]), expect: .created)

            let (events, cursor) = try await Self.allEvents(client)
            let mine = events.filter { $0["session_id"]?.string == id }
            #expect(mine.map { $0["type"]!.string! } == [
                "delivery.session.created", "delivery.packages.added", "delivery.session.started", "delivery.package.delivered",
                "delivery.package.failed", "delivery.package.delivered", "delivery.session.completed", "delivery.session.archived",
            ])
            #expect(mine.map { $0["seq"]!.int! } == Array(1...8))
            // The same numbering as the audit trail: each event is its audit entry.
            let audit = try await flow.session(id)["audit"]!.array
            #expect(audit.map { "delivery." + $0["action"]!.string! } == mine.map { $0["type"]!.string! })
            let ids = events.map { $0["event_id"]!.string! }
            #expect(ids == ids.sorted() && Set(ids).count == ids.count)
            #expect(events.last?["type"]?.string == "access.key.created")
            #expect(events.last?["data"]?["key"] == nil && events.last?["data"]?["role"]?.string == "owner")
            let delivered = mine[3]
            #expect(delivered["user_id"]?.string == "owner-1")
            #expect(delivered["data"]?["details"]?["barcode"]?.string == packages[0].barcode)
            #expect(delivered["data"]?["session"]?["packages_delivered"]?.int == 1)
            #expect(delivered["created_at"]?.string != nil)
            #expect(mine[1]["data"]?["details"]?["duplicates"]?.array == ["E1"])

            // From the last cursor there is nothing more; a new change is the only thing after it.
            #expect(try await client.json(.get, "/api/events?after=\(cursor)")["items"]?.array.count == 0)
            _ = try await flow.create()
            let next = try await client.json(.get, "/api/events?after=\(cursor)")
            #expect(next["items"]?.array.map { $0["type"]!.string! } == ["delivery.session.created"])

            // Filters: exact types and prefixes, together.
            let packageEvents = try await Self.allEvents(client, query: "&types=delivery.package.*").events
            #expect(Set(packageEvents.map { $0["type"]!.string! }) == ["delivery.package.delivered", "delivery.package.failed"])
            let mixed = try await Self.allEvents(client, query: "&types=delivery.session.archived,access.*").events
            #expect(mixed.map { $0["type"]!.string! } == ["delivery.session.archived", "access.key.created"])

            let problem = try await client.send(.get, "/api/events?after=not-a-cursor")
            #expect(problem.status == .unprocessableContent)
        }
    }

    @Test("GET /api/events/types lists every type the modules emit")
    func types() async throws {
        try await withApp { client, _ in
            let types = try await client.json(.get, "/api/events/types")["items"]!.array.map { $0["type"]!.string! }
            for type in [
                "delivery.session.created", "delivery.session.started", "delivery.session.paused", "delivery.session.resumed",
                "delivery.session.completed", "delivery.session.archived", "delivery.packages.added", "delivery.package.removed",
                "delivery.package.reassigned", "delivery.package.picked_up", "delivery.package.delivered", "delivery.package.failed",
                "access.key.created", "access.key.revoked",
            ] {
                #expect(types.contains(type), "\(type)")
            }
            let document = try await client.json(.get, "/openapi.json", headers: TestAuth.none)
            #expect(document["paths"]?["/api/events/stream"] != nil)
            #expect(document["paths"]?["/api/sessions/{id}/events"] != nil)
        }
    }

    @Test("each caller sees only the events its role may see")
    func visibility() async throws {
        try await withApp { client, _ in
            func key(_ payload: JSONValue) async throws -> HTTPFields {
                TestAuth.bearer(try await client.json(.post, "/api/keys", body(payload), expect: .created)["key"]!.string!)
            }
            let maria = try await key(["name": "maria", "role": "owner", "user_id": "maria"])
            let joana = try await key(["name": "joana", "role": "owner", "user_id": "joana"])
            let viewer = try await key(["name": "maria's accountant", "role": "viewer", "user_id": "maria"])
            let joao = try await key(["name": "joão", "role": "deliverer", "deliverer_id": "joao", "user_id": "maria"])
            let flow = DeliveryFlow(client: client)
            let mariaSession = try await flow.create(user: "maria")
            try await flow.add(mariaSession, ["M1", "M2"])
            _ = try await flow.start(mariaSession, deliverers: ["joao"])
            let joanaSession = try await flow.create(user: "joana")

            func sessions(_ headers: HTTPFields) async throws -> Set<String> {
                Set(try await Self.allEvents(client, headers: headers).events.map { $0["session_id"]?.string ?? "none" })
            }
            #expect(try await sessions(maria) == [mariaSession])
            #expect(try await sessions(viewer) == [mariaSession])
            #expect(try await sessions(joana) == [joanaSession])
            // A deliverer reads the session from the change that brought it in.
            let joaoEvents = try await Self.allEvents(client, headers: joao).events
            #expect(joaoEvents.map { $0["type"]!.string! } == ["delivery.session.started"])
            // Keys are the admin's: only the admin sees their events.
            #expect(try await sessions(TestAuth.admin).contains("none"))
            // Another owner's session stream is a 404, as the session itself is.
            let stranger = try await client.send(.get, "/api/sessions/\(mariaSession)/events", headers: joana)
            #expect(stranger.status == .notFound)
        }
    }
}

/// Live streams over real HTTP connections.
@Suite("Events: Server-Sent Events")
struct EventStreamTests {
    @Test("the stream sends each event with id, event and data; resumes after Last-Event-ID without loss or repeats; keeps alive")
    func streamAndResume() async throws {
        try await withApp(.live, configure: {
            $0.events.pollInterval = .milliseconds(100)
            $0.events.tick = .milliseconds(100)
            $0.events.heartbeat = .milliseconds(300)
        }) { client, _ in
            let port = try #require(client.port)
            let auth = "Bearer \(TestAuth.adminKey)"
            let stream = try SSEClient(port: port, path: "/api/events/stream", headers: ["Authorization": auth])
            try await stream.waitForHead()
            #expect(stream.status == 200)
            #expect(stream.header("Content-Type")?.hasPrefix("text/event-stream") == true)
            #expect(stream.header("Cache-Control") == "no-cache")
            #expect(stream.header("X-Accel-Buffering") == "no")

            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["S1", "S2", "S3"])
            let first = try await stream.wait { $0.count >= 2 }
            #expect(first.map(\.event) == ["delivery.session.created", "delivery.packages.added"])
            let data = try JSONDecoder().decode(JSONValue.self, from: Data(first[1].data.utf8))
            #expect(data["event_id"]?.string == first[1].id)
            #expect(data["session_id"]?.string == id)
            #expect(stream.retries.isEmpty == false)
            // Quiet: a comment line comes at least every heartbeat.
            let quietUntil = ContinuousClock.now + .seconds(5)
            while !stream.comments.contains(": keep-alive"), ContinuousClock.now < quietUntil {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(stream.comments.contains(": keep-alive"))
            stream.close()

            // Changes while the client is away…
            _ = try await flow.start(id, deliverers: ["d1"])
            let packages = try await flow.assignments(id)
            try await flow.deliver(id, package: packages[0].packageID, by: "d1")
            // …arrive when it comes back with the last id it saw, and nothing it had already.
            let again = try SSEClient(port: port, path: "/api/events/stream", headers: ["Authorization": auth, "Last-Event-ID": first[1].id!])
            let resumed = try await again.wait { $0.count >= 2 }
            #expect(resumed.map(\.event) == ["delivery.session.started", "delivery.package.delivered"])
            try await flow.deliver(id, package: packages[1].packageID, by: "d1")
            let live = try await again.wait { $0.count >= 3 }
            #expect(live.map(\.event) == ["delivery.session.started", "delivery.package.delivered", "delivery.package.delivered"])
            let ids = live.compactMap(\.id)
            #expect(ids == ids.sorted() && ids.allSatisfy { $0 > first[1].id! })
            again.close()
        }
    }

    @Test("a session's stream carries that session's events only, to whoever may read it, filtered by type")
    func sessionStream() async throws {
        try await withApp(.live) { client, _ in
            let port = try #require(client.port)
            let joaoKey = try await client.json(.post, "/api/keys", body(["name": "j", "role": "deliverer", "deliverer_id": "joao", "user_id": "owner-1"]), expect: .created)["key"]!.string!
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let other = try await flow.create()
            try await flow.add(id, ["A1", "A2"])
            _ = try await flow.start(id, deliverers: ["joao"])
            let packages = try await flow.assignments(id)
            // From the beginning of the log (after = all zeros), only this session, only deliveries.
            let stream = try SSEClient(
                port: port, path: "/api/sessions/\(id)/events?after=\(String(repeating: "0", count: 32))&types=delivery.package.delivered",
                headers: ["Authorization": "Bearer \(joaoKey)"])
            try await flow.add(other, ["B1"])
            try await flow.deliver(id, package: packages[0].packageID, by: "joao")
            let got = try await stream.wait { $0.count >= 1 }
            #expect(got.map(\.event) == ["delivery.package.delivered"])
            let all = try SSEClient(
                port: port, path: "/api/sessions/\(id)/events?after=\(String(repeating: "0", count: 32))",
                headers: ["Authorization": "Bearer \(TestAuth.adminKey)"])
            let everything = try await all.wait { $0.count >= 4 }
            #expect(everything.map(\.event) == [
                "delivery.session.created", "delivery.packages.added", "delivery.session.started", "delivery.package.delivered",
            ])
            stream.close()
            all.close()
        }
    }

    @Test("an SSE client on one server sees the events of writes made through another")
    func acrossServers() async throws {
        try await withApp(.live) { a, location in
            try await testApplication(on: location).test(.live) { b in
                let stream = try SSEClient(port: try #require(b.port), path: "/api/events/stream", headers: ["Authorization": "Bearer \(TestAuth.adminKey)"])
                try await stream.waitForHead()
                let id = try await DeliveryFlow(client: a).create()
                let got = try await stream.wait { $0.contains { $0.event == "delivery.session.created" } }
                #expect(got.first?.data.contains(id) == true)
                stream.close()
            }
        }
    }
}
