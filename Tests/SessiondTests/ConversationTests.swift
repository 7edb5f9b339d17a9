import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// Conversations over HTTP on both databases: racing get-or-create, idempotent and ordered turns,
/// consent, expiry and history, erasure.
@Suite("Conversations: live per contact, turns, consent, expiry, erasure")
struct ConversationTests {
    static func open(_ client: any TestClientProtocol, _ contact: String, channel: String = "whatsapp", expect status: HTTPResponse.Status = .created) async throws -> String {
        try #require(try await client.json(.post, "/api/conversations", body(["channel": .string(channel), "contact": .string(contact), "user_id": "owner-1"]), expect: status)["conversation_id"]?.string)
    }

    static func turn(_ client: any TestClientProtocol, _ id: String, _ turn: JSONValue, expect status: HTTPResponse.Status = .ok) async throws -> JSONValue {
        try await client.json(.post, "/api/conversations/\(id)/turns", body(turn), expect: status)
    }

    @Test("100 racing get-or-create calls for one contact yield one conversation; the id is contact:unix_ms")
    func racingOpen() async throws {
        try await withApp { client, _ in
            let ids = try await withThrowingTaskGroup(of: (String, UInt).self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        let response = try await client.send(.post, "/api/conversations", json: #"{"channel":"whatsapp","contact":"5511999990000","user_id":"owner-1"}"#)
                        let object = try JSONDecoder().decode(JSONValue.self, from: Data(String(buffer: response.body).utf8))
                        return (object["conversation_id"]?.string ?? "", UInt(response.status.code))
                    }
                }
                var all: [(String, UInt)] = []
                for try await result in group { all.append(result) }
                return all
            }
            #expect(Set(ids.map(\.0)).count == 1)
            #expect(ids.filter { $0.1 == 201 }.count == 1 && ids.filter { $0.1 == 200 }.count == 99)
            let id = ids[0].0
            #expect(id.hasPrefix("5511999990000:") && Int64(id.split(separator: ":").last ?? "") != nil)
            // Another channel is another conversation.
            #expect(try await Self.open(client, "5511999990000", channel: "telegram") != id)
        }
    }

    @Test("200 copies of one turn apply once; older, skipped or different ones are 409; turns apply in order")
    func idempotentTurns() async throws {
        try await withApp { client, _ in
            let id = try await Self.open(client, "c1")
            try await client.json(.post, "/api/conversations/\(id)/consent", body(["given": true]))
            let first: JSONValue = ["turn_id": 1, "messages": [["role": "user", "content": "Oi, quero um carro"]], "state": "collecting_profile"]
            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for _ in 0..<200 {
                    group.addTask { UInt(try await client.send(.post, "/api/conversations/\(id)/turns", json: body(first)).status.code) }
                }
                var all: [UInt] = []
                for try await status in group { all.append(status) }
                return all
            }
            #expect(statuses.allSatisfy { $0 == 200 })
            let messages = try await client.json(.get, "/api/conversations/\(id)/messages")["items"]!.array
            #expect(messages.count == 1)
            // Keys in another order: the same turn.
            try await Self.turn(client, id, ["state": "collecting_profile", "messages": [["content": "Oi, quero um carro", "role": "user"]], "turn_id": 1])
            try await Self.turn(client, id, ["turn_id": 1, "messages": [["role": "user", "content": "outra coisa"]]], expect: .conflict)
            try await Self.turn(client, id, ["turn_id": 3], expect: .conflict)
            try await Self.turn(client, id, ["turn_id": 0], expect: .conflict)
            for turn in 2...6 {
                try await Self.turn(client, id, ["turn_id": .int(Int64(turn)), "messages": [["role": turn % 2 == 0 ? "assistant" : "user", "content": .string("m\(turn)")]]])
            }
            try await Self.turn(client, id, ["turn_id": 2], expect: .conflict)
            let last = try await client.json(.get, "/api/conversations/\(id)/messages?limit=3")["items"]!.array
            #expect(last.map { $0["content"]!.string! } == ["m4", "m5", "m6"])
            let conversation = try await client.json(.get, "/api/conversations/\(id)")
            #expect(conversation["turn_id"]?.int == 6 && conversation["interaction_count"]?.int == 3)
        }
    }

    @Test("turns sent all at once apply strictly in order: out-of-order ones are refused until their turn comes")
    func orderUnderConcurrency() async throws {
        try await withApp { client, _ in
            let id = try await Self.open(client, "c-order")
            var pending = Set(1...30)
            var rounds = 0
            while !pending.isEmpty, rounds < 100 {
                rounds += 1
                let applied = try await withThrowingTaskGroup(of: (Int, UInt).self) { group in
                    for turn in pending {
                        group.addTask {
                            let response = try await client.send(
                                .post, "/api/conversations/\(id)/turns", json: body(["turn_id": .int(Int64(turn)), "messages": [["role": "user", "content": .string("m\(turn)")]]]))
                            return (turn, UInt(response.status.code))
                        }
                    }
                    var applied: [Int] = []
                    for try await (turn, status) in group {
                        #expect(status == 200 || status == 409)
                        if status == 200 { applied.append(turn) }
                    }
                    return applied
                }
                pending.subtract(applied)
            }
            #expect(pending.isEmpty)
            let messages = try await client.json(.get, "/api/conversations/\(id)/messages?limit=100")["items"]!.array
            #expect(messages.map { $0["content"]!.string! } == (1...30).map { "m\($0)" })
            #expect(messages.map { $0["seq"]!.int! } == Array(1...30))
        }
    }

    @Test("consent gates the profile and leaving greeting; transitions outside the pinned ones are 409; figures are computed on read")
    func consentAndScoring() async throws {
        try await withApp { client, _ in
            let id = try await Self.open(client, "c2")
            let refused = try await Self.turn(client, id, ["turn_id": 1, "profile": ["city": "Recife"]], expect: .conflict)
            #expect(refused["type"]?.string == Problem.typeBase + "consent-required")
            try await Self.turn(client, id, ["turn_id": 1, "state": "collecting_profile"], expect: .conflict)
            try await Self.turn(client, id, ["turn_id": 1, "messages": [["role": "user", "content": "oi"]]])
            let consented = try await client.json(.post, "/api/conversations/\(id)/consent", body(["given": true]))
            #expect(consented["consent_given"]?.bool == true && consented["consent_at"]?.string != nil)
            try await Self.turn(client, id, ["turn_id": 2, "state": "qualifying"], expect: .conflict)  // skips collecting_profile
            let bad = try await Self.turn(client, id, ["turn_id": 2, "profile": ["budget_min": 90_000, "budget_max": 50_000]], expect: .unprocessableContent)
            #expect(bad["field"]?.string == "profile.budget_min")
            let scored = try await Self.turn(client, id, [
                "turn_id": 2, "state": "collecting_profile",
                "profile": ["budget_min": 50_000, "budget_max": 80_000, "urgency": "immediate", "main_use": "família", "priorities": ["espaço"]],
                "messages": [["role": "user", "content": "até 80 mil"]],
            ])
            // 30 budget + 25 immediate + 10 a priority + 8 main use + 10 (2 user messages) = 83; 0.25 + 0.25 = 0.5.
            #expect(scored["qualification_score"]?.int == 83 && scored["lead_class"]?.string == "high" && scored["completeness"]?.double == 0.5)
            #expect(scored["profile"]?["budget_max"]?.int == 80_000 && scored["state"]?.string == "collecting_profile")
            try await Self.turn(client, id, ["turn_id": 3, "state": "closed"])
            try await Self.turn(client, id, ["turn_id": 4, "state": "handoff"], expect: .conflict)
        }
    }

    @Test("expire archives a conversation with its messages; the next open starts a new one; history lists archived ones newest first")
    func expiryAndHistory() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: { $0.conversationTTLSeconds = 3600 }) { client, _ in
            let first = try await Self.open(client, "c3")
            try await Self.turn(client, first, ["turn_id": 1, "messages": [["role": "user", "content": "primeira"]]])
            let archived = try await client.json(.post, "/api/conversations/\(first)/expire")
            #expect(archived["archived_at"]?.string != nil)
            try await Self.turn(client, first, ["turn_id": 2], expect: .conflict)
            clock.advance(seconds: 1)
            let second = try await Self.open(client, "c3")
            #expect(second != first)
            // Idle past the TTL: the next open archives it and starts another.
            clock.advance(seconds: 3601)
            let third = try await Self.open(client, "c3")
            #expect(third != second)
            let history = try await client.json(.get, "/api/conversations/contact/c3/history")["items"]!.array
            #expect(history.map { $0["conversation_id"]!.string! } == [second, first])
            #expect(try await client.json(.get, "/api/conversations/\(first)/messages")["items"]!.array.count == 1)
        }
    }

    @Test("the background sweep archives exactly the conversations idle past CONVERSATION_TTL")
    func sweep() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: { $0.conversationTTLSeconds = 3600; $0.conversationSweep = .milliseconds(50) }) { client, _ in
            let idle = try await Self.open(client, "idle-1")
            let idleToo = try await Self.open(client, "idle-2")
            clock.advance(seconds: 3000)
            let busy = try await Self.open(client, "busy")
            try await Self.turn(client, idle, ["turn_id": 1, "messages": [["role": "user", "content": "ainda aqui"]]])  // idle-1 is busy again
            clock.advance(seconds: 700)  // idle-2 is 3,700 s idle; idle-1 700 s; busy 700 s
            let archived = try await WebhookTests.eventually({ try await client.json(.get, "/api/conversations/\(idleToo)") }, until: { $0["archived_at"]?.string != nil })
            #expect(archived["archived_at"]?.string != nil)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.json(.get, "/api/conversations/\(idle)")["archived_at"]?.isNull == true)
            #expect(try await client.json(.get, "/api/conversations/\(busy)")["archived_at"]?.isNull == true)
            #expect(try await client.json(.get, "/api/conversations/contact/idle-2/history")["items"]!.array.count == 1)
            let events = try await EventsTests.allEvents(client, query: "&types=conversation.archived").events
            #expect(events.count == 1 && events[0]["session_id"]?.string == idleToo)
        }
    }

    @Test("two servers on one database: racing get-or-create still yields one conversation")
    func racingOnTwoServers() async throws {
        try await withApp { client, location in
            try await withSecondServer(on: location) { second in
                let ids = try await withThrowingTaskGroup(of: String.self) { group in
                    for index in 0..<60 {
                        let server = index % 2 == 0 ? client : second
                        group.addTask {
                            let response = try await server.send(.post, "/api/conversations", json: #"{"channel":"whatsapp","contact":"5521977776666","user_id":"owner-1"}"#)
                            return try JSONDecoder().decode(JSONValue.self, from: Data(String(buffer: response.body).utf8))["conversation_id"]?.string ?? ""
                        }
                    }
                    var all: [String] = []
                    for try await id in group { all.append(id) }
                    return all
                }
                #expect(Set(ids).count == 1 && !ids[0].isEmpty)
            }
        }
    }

    @Test("sessiond export conversations writes the archive as CSV: a header, a row per archived conversation, lead figures computed")
    func export() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: SessiondBinary.url.path), "build the executable first: swift build --build-tests")
        try await withApp { client, location in
            let id = try await Self.open(client, "5511912345678")
            try await client.json(.post, "/api/conversations/\(id)/consent", body(["given": true]))
            try await Self.turn(client, id, [
                "turn_id": 1, "summary": "quer SUV, \"urgente\"", "messages": [["role": "user", "content": "oi"], ["role": "assistant", "content": "olá"]],
                "profile": ["budget_min": 100_000, "budget_max": 150_000, "priorities": ["espaço", "segurança"], "urgency": "immediate"],
            ])
            try await client.json(.post, "/api/conversations/\(id)/expire")
            _ = try await Self.open(client, "still-live")
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString).csv").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            let run = try SessiondBinary.run(["export", "conversations", "--since", "2020-01-01T00:00:00Z", "--output", file, "--database", SessiondBinary.databaseArgument(location)])
            #expect(run.status == 0)
            let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\r\n").map(String.init)
            #expect(lines.count == 2)
            #expect(lines[0].hasPrefix("conversation_id,channel,contact,state,turn_id,summary,profile_budget_min"))
            #expect(lines[1].hasPrefix("\(id),whatsapp,5511912345678,greeting,1,\"quer SUV, \"\"urgente\"\"\",100000,150000,,,,espaço|segurança,,,immediate,0.25,75,high,true,"))
            let later = try SessiondBinary.run(["export", "conversations", "--since", "2100-01-01T00:00:00Z", "--output", file, "--database", SessiondBinary.databaseArgument(location)])
            let empty = try String(contentsOfFile: file, encoding: .utf8)
            #expect(later.status == 0 && empty.split(separator: "\r\n").count == 1)
            #expect(try SessiondBinary.run(["export", "conversations", "--since", "yesterday", "--database", SessiondBinary.databaseArgument(location)]).status != 0)
        }
    }

    @Test("erasing a contact removes its live and archived conversations, their messages and their events' data")
    func erasure() async throws {
        try await withApp { client, _ in
            let first = try await Self.open(client, "5581988887777")
            try await Self.turn(client, first, ["turn_id": 1, "messages": [["role": "user", "content": "a"], ["role": "assistant", "content": "b"]]])
            try await client.json(.post, "/api/conversations/\(first)/expire")
            let second = try await Self.open(client, "5581988887777")
            try await Self.turn(client, second, ["turn_id": 1, "messages": [["role": "user", "content": "c"]]])
            _ = try await Self.open(client, "someone-else")
            let erased = try await client.json(.delete, "/api/conversations/contact/5581988887777")
            #expect(erased["erased"]?["conversations"]?.int == 2 && erased["erased"]?["messages"]?.int == 3)
            try await client.json(.get, "/api/conversations/\(first)", expect: .notFound)
            try await client.json(.get, "/api/conversations/\(second)", expect: .notFound)
            let events = try await client.send(.get, "/api/events?types=conversation.*&limit=1000")
            #expect(!String(buffer: events.body).contains("5581988887777"))
            #expect(String(buffer: events.body).contains("someone-else"))
        }
    }
}
