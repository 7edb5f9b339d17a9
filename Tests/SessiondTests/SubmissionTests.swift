import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

@Suite("Submissions: background automation jobs")
struct SubmissionTests {
    static func text(_ value: JSONValue) -> String { value.canonicalText() }

    /// Polls a submission until it leaves `pending`/`processing` (at most `seconds`).
    static func finished(_ client: any TestClientProtocol, _ id: String, headers: HTTPFields = [:], seconds: Double = 60) async throws -> JSONValue {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            // The listing carries no payload or result: cheap to poll while a big job runs.
            let listed = try await client.json(.get, "/api/submissions?limit=200", headers: headers)["items"]!.array.first { $0["id"]?.string == id }
            let status = listed?["status"]?.string
            if status == "success" || status == "error" || Date() > deadline {
                return try await client.json(.get, "/api/submissions/\(id)", headers: headers)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func submit(_ client: any TestClientProtocol, _ slug: String, _ payload: JSONValue, headers: HTTPFields = [:]) async throws -> String {
        let accepted = try await client.json(.post, "/api/submissions", text(["automation_slug": .string(slug), "payload": payload]), expect: .accepted, headers: headers)
        #expect(accepted["status"]?.string == "pending")
        #expect(accepted["automation_slug"]?.string == slug)
        #expect(accepted["created_at"]?.string != nil && accepted["updated_at"]?.string != nil)
        return try #require(accepted["id"]?.string)
    }

    @Test("package-import adds every row, reports duplicates, and commits with its status")
    func packageImport() async throws {
        try await withApp { client, _ in
            let keys = try await AccessKeys.make(client)
            let maria = TestAuth.bearer(keys.owner)
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            try await flow.add(session, ["OLD-1"])
            let csv = """
                barcode,value_cents,recipient,street,number,district,city,state,postal_code
                BR-1,1590,Ana,Rua das Flores,10,Centro,São Paulo,SP,01000-000
                "BR-2",2000,"Silva, João",Rua das Flores,10,Centro,São Paulo,SP,01000-000
                BR-3,,,,,,,,
                OLD-1,100,,,,,,,
                BR-1,100,,,,,,,

                """
            let id = try await Self.submit(client, "package-import", ["session_id": .string(session), "csv": .string(csv)], headers: maria)
            let done = try await Self.finished(client, id, headers: maria)
            #expect(done["status"]?.string == "success", "\(done)")
            #expect(done["result"]?["added"]?.array.map { $0["barcode"]?.string } == ["BR-1", "BR-2", "BR-3"])
            #expect(done["result"]?["duplicates"]?.array.compactMap(\.string) == ["OLD-1", "BR-1"])
            #expect(done["payload"]?["session_id"]?.string == session)
            #expect(done["error"]?.isNull == true)
            let document = try await flow.session(session)
            #expect(document["packages_total"]?.int == 4)
            let joao = document["packages"]!.array.first { $0["barcode"]?.string == "BR-2" }
            #expect(joao?["recipient"]?.string == "Silva, João" && joao?["value_cents"]?.int == 2000)
            #expect(document["addresses"]!.array.count == 2)  // OLD-1's and the one shared by BR-1 and BR-2
            let listed = try await client.json(.get, "/api/submissions?status=success&automation_slug=package-import", headers: maria)
            #expect(listed["items"]!.array.map { $0["id"]?.string } == [id])
            // Another owner sees none of it.
            try await client.json(.get, "/api/submissions/\(id)", expect: .notFound, headers: TestAuth.bearer(keys.otherOwner))
            #expect(try await client.json(.get, "/api/submissions", headers: TestAuth.bearer(keys.otherOwner))["items"]!.array.isEmpty)
            let audits = try await client.json(.get, "/api/audits?action=automation.submitted")
            #expect(audits["items"]!.array.count == 1)
        }
    }

    @Test("package-import with bad rows fails with every row's error and adds nothing")
    func packageImportErrors() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            let csv = """
                barcode,value_cents,street,city
                GOOD-1,100,Rua A,Recife
                ,100,Rua A,Recife
                BAD-2,12.50,Rua A,Recife
                BAD-3,-5,,
                BAD-4,100,,Recife
                GOOD-2,100,Rua B,Recife

                """
            let id = try await Self.submit(client, "package-import", ["session_id": .string(session), "csv": .string(csv)])
            let done = try await Self.finished(client, id)
            #expect(done["status"]?.string == "error")
            let errors = done["error"]?["errors"]?.array ?? []
            #expect(errors.map { $0["row"]?.int } == [2, 3, 4, 5])
            #expect(errors.map { $0["field"]?.string } == ["barcode", "value_cents", "value_cents", "address.street"])
            #expect(errors.allSatisfy { ($0["message"]?.string ?? "").isEmpty == false })
            #expect(try await flow.session(session)["packages_total"]?.int == 0)

            // Refused at once: unknown automation, missing payload fields, a session the caller cannot see.
            try await client.json(.post, "/api/submissions", Self.text(["automation_slug": "nope", "payload": [:]]), expect: .unprocessableContent)
            try await client.json(.post, "/api/submissions", Self.text(["automation_slug": "package-import", "payload": ["session_id": .string(session)]]), expect: .unprocessableContent)
            try await client.json(.post, "/api/submissions", Self.text(["automation_slug": "package-import", "payload": ["session_id": "missing", "csv": "barcode\nX\n"]]), expect: .notFound)
        }
    }

    @Test("package-import takes 10,000 rows in one submission")
    func bigImport() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            var csv = "barcode,value_cents,recipient,street,number,district,city,state,postal_code\n"
            for index in 0..<10_000 {
                csv += "PKG\(index),\(100 + index % 50),Cliente \(index),Rua \(index % 400),\(index % 7),Bairro,Cidade,SP,\n"
            }
            let id = try await Self.submit(client, "package-import", ["session_id": .string(session), "csv": .string(csv)])
            let done = try await Self.finished(client, id, seconds: 120)
            #expect(done["status"]?.string == "success")
            #expect(done["result"]?["added"]?.array.count == 10_000)
            let document = try await flow.session(session)
            #expect(document["packages_total"]?.int == 10_000)
            #expect(document["addresses"]!.array.count == 2_800)
        }
    }

    @Test("session-report: a completed session's finances as CSV; an open one is an error")
    func sessionReport() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            try await flow.add(session, ["R1", "R2"])
            let early = try await Self.submit(client, "session-report", ["session_id": .string(session)])
            #expect(try await Self.finished(client, early)["status"]?.string == "error")
            try await flow.start(session, deliverers: ["ana"], base: 5000, commission: 250)
            for package in try await flow.assignments(session) { try await flow.deliver(session, package: package.packageID, by: package.deliverer) }
            let id = try await Self.submit(client, "session-report", ["session_id": .string(session)])
            let done = try await Self.finished(client, id)
            #expect(done["status"]?.string == "success")
            let csv = try #require(done["result"]?["csv"]?.string)
            let lines = csv.split(whereSeparator: \.isNewline).map(String.init)
            #expect(lines.count == 3)
            #expect(lines[0].hasPrefix("kind,session_id,deliverer_id"))
            #expect(lines[1].hasPrefix("deliverer,\(session),ana,"))
            #expect(lines[1].hasSuffix(",5000,250,5500,,,"))
            #expect(lines[2] == "total,\(session),,,2,2,0,,,,2001,5500,-3499")
        }
    }

    @Test("a submission left processing by a killed server is taken up again once its lease expires")
    func resumedAfterKill() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: { $0.access.submissionLeaseSeconds = 30 }) { client, location in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            // What a server killed mid-job leaves: the job `processing`, leased to it for 30 s more.
            let now = clock.wallClock.now().milliseconds
            let payload = Self.text(["session_id": .string(session), "csv": "barcode\nKILLED-1\nKILLED-2\n"])
            let principal = Self.text(["kind": "api_key", "id": "admin", "credential_id": "admin", "role": "admin", "scopes": [:]])
            try await executeRaw(
                """
                INSERT INTO submissions (id, automation_slug, status, payload, user_id, principal, created_at, updated_at, attempts, lease_owner, lease_until)
                VALUES ('killed-job', 'package-import', 'processing', '\(payload)', NULL, '\(principal)', \(now), \(now), 1, 'worker-that-died', \(now + 30_000))
                """, on: location)
            try await Task.sleep(for: .milliseconds(1500))  // a poll or more: the lease still holds
            #expect(try await client.json(.get, "/api/submissions/killed-job")["status"]?.string == "processing")
            clock.advance(seconds: 31)
            let done = try await Self.finished(client, "killed-job", seconds: 10)
            #expect(done["status"]?.string == "success")
            #expect(done["attempts"]?.int == 2)
            #expect(try await flow.session(session)["packages_total"]?.int == 2)
        }
    }

    @Test("a route's own body limit: submissions take more than the 1 MiB other routes allow")
    func bodyLimitPerRoute() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            let big = "barcode,recipient\n" + (0..<12_000).map { "B\($0),\(String(repeating: "r", count: 120))" }.joined(separator: "\n")
            #expect(big.utf8.count > 1 << 20)
            let payload = Self.text(["automation_slug": "package-import", "payload": ["session_id": .string(session), "csv": .string(big)]])
            let accepted = try await client.send(.post, "/api/submissions", json: payload)
            #expect(accepted.status == .accepted)
            let tooBig = try await client.send(.post, "/api/sessions/create", json: #"{"user_id":"maria","name":""# + String(repeating: "x", count: 1 << 20) + #""}"#)
            #expect(tooBig.status == .contentTooLarge)
            let id = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: accepted.body))["id"]!.string!
            let done = try await Self.finished(client, id)
            #expect(done["status"]?.string == "error")  // 12,000 rows: more than one import takes
        }
    }

    @Test("the worker outlives a failing database: jobs run once it recovers")
    func workerSurvivesErrors() async throws {
        try await withApp { client, location in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            switch location {
            case .sqlite:
                try await executeRaw("CREATE TRIGGER refuse_claims BEFORE UPDATE ON submissions BEGIN SELECT RAISE(ABORT, 'disk says no'); END", on: location)
            case .postgres:
                try await executeRaw("CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$", on: location)
                try await executeRaw("CREATE TRIGGER refuse_claims BEFORE UPDATE ON submissions FOR EACH ROW EXECUTE FUNCTION refuse_claims()", on: location)
            }
            let id = try await Self.submit(client, "package-import", ["session_id": .string(session), "csv": "barcode\nZ1\n"])
            try await Task.sleep(for: .milliseconds(1500))  // the worker tries, and fails, to claim it
            #expect(try await client.json(.get, "/api/submissions/\(id)")["status"]?.string == "pending")
            switch location {
            case .sqlite: try await executeRaw("DROP TRIGGER refuse_claims", on: location)
            case .postgres: try await executeRaw("DROP TRIGGER refuse_claims ON submissions", on: location)
            }
            #expect(try await Self.finished(client, id, seconds: 10)["status"]?.string == "success")
        }
    }
}
