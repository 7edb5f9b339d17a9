import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

@Suite("Audit trail")
struct AuditTrailTests {
    func execute(_ sql: String, on location: DatabaseLocation) async throws {
        try await executeRaw(sql, on: location)
    }

    func makeSession(_ client: any TestClientProtocol) async throws -> String {
        let flow = DeliveryFlow(client: client)
        let id = try await flow.create()
        try await flow.add(id, ["A", "B"])
        _ = try await flow.start(id, deliverers: ["d1"])
        return id
    }

    @Test("the database refuses UPDATE and DELETE on the audit table")
    func appendOnly() async throws {
        try await withApp { client, location in
            let id = try await makeSession(client)
            await #expect(throws: (any Error).self) {
                try await execute("UPDATE delivery_audit SET action = 'forged' WHERE session_id = '\(id)'", on: location)
            }
            await #expect(throws: (any Error).self) {
                try await execute("DELETE FROM delivery_audit WHERE session_id = '\(id)'", on: location)
            }
            let verify = try await client.json(.get, "/api/sessions/\(id)/audit/verify")
            #expect(verify["valid"]?.bool == true)
            #expect(verify["entries"]?.int == 3)
        }
    }

    @Test("tampering behind the triggers' back is detected at the first bad entry")
    func tamperDetected() async throws {
        try await withApp { client, location in
            let id = try await makeSession(client)
            // An attacker with database access drops the guard and rewrites entry 2.
            switch location {
            case .sqlite:
                try await execute("DROP TRIGGER delivery_audit_no_update", on: location)
            case .postgres:
                try await execute("DROP TRIGGER delivery_audit_no_update_or_delete ON delivery_audit", on: location)
            }
            try await execute("UPDATE delivery_audit SET details = '{\"added\":[\"FORGED\"]}' WHERE session_id = '\(id)' AND seq = 2", on: location)
            let verify = try await client.json(.get, "/api/sessions/\(id)/audit/verify")
            #expect(verify["valid"]?.bool == false)
            #expect(verify["first_bad_seq"]?.int == 2)
            #expect(verify["entries"]?.int == 3)
        }
    }

    @Test("audit pages in order with a cursor; entries chain their hashes")
    func auditPages() async throws {
        try await withApp { client, _ in
            let id = try await makeSession(client)
            let first = try await client.json(.get, "/api/sessions/\(id)/audit?limit=2")
            #expect(first["items"]!.array.compactMap { $0["seq"]?.int } == [1, 2])
            let cursor = try #require(first["next_cursor"]?.string)
            let second = try await client.json(.get, "/api/sessions/\(id)/audit?limit=2&cursor=\(cursor)")
            let items = second["items"]!.array
            #expect(items.compactMap { $0["seq"]?.int } == [3])
            #expect(second["next_cursor"]?.isNull == true)
            #expect(items[0]["prev_hash"] == first["items"]![1]!["hash"])
            #expect(items[0]["action"]?.string == "session.started")
            #expect(first["items"]![0]!["prev_hash"]?.string == AuditChain.genesis)
            #expect(first["items"]![0]!["details"]?["user_id"]?.string == "owner-1")
        }
    }
}
