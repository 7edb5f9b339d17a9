import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// The proof: a delivery session's whole life over HTTP, on the configured database.
@Suite("Delivery session lifecycle")
struct DeliveryLifecycleTests {
    @Test("create → 20 packages (2 duplicates) → reuse → start with 3 → deliver 18, fail 2 → completed → read-only → archived, audit verified")
    func wholeLife() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create(user: "maria")

            // 20 packages, plus 2 repeats in the same call: 20 added, 2 reported as duplicates.
            var barcodes = (1...20).map { "BR\(1000 + $0)" }
            barcodes.insert("BR1003", at: 5)
            barcodes.append("BR1010")
            let added = try await flow.add(id, barcodes, value: { _ in 1500 })
            #expect(added["added"]!.array.count == 20)
            #expect(added["duplicates"]!.array.compactMap(\.string) == ["BR1003", "BR1010"])

            let reused = try await client.json(.post, "/api/sessions/\(id)/reuse", body(["user_id": "maria"]))
            #expect(reused["was_reused"]?.bool == true)
            #expect(reused["reuse_count"]?.int == 1)

            let started = try await flow.start(id, deliverers: ["d1", "d2", "d3"], base: 8000, commission: 300)
            #expect(started["status"]?.string == "active")
            #expect(started["started_at"]?.string != nil)

            let packages = try await flow.assignments(id)
            #expect(packages.count == 20)
            #expect(Set(packages.map(\.deliverer)) == ["d1", "d2", "d3"])
            try await flow.fail(id, package: packages[0].packageID, by: packages[0].deliverer)
            try await flow.fail(id, package: packages[1].packageID, by: packages[1].deliverer, reason: "Endereço não encontrado")
            var last = JSONValue.null
            for package in packages.dropFirst(2) {
                #expect(last["session"]?["status"]?.string != "completed")
                last = try await flow.deliver(id, package: package.packageID, by: package.deliverer)
            }
            // The 20th final package completed the session by itself.
            #expect(last["session"]?["status"]?.string == "completed")

            let session = try await flow.session(id)
            #expect(session["status"]?.string == "completed")
            #expect(session["is_readonly"]?.bool == true)
            #expect(session["packages_total"]?.int == 20)
            #expect(session["packages_delivered"]?.int == 18)
            #expect(session["packages_failed"]?.int == 2)
            let revenue: Int64 = 18 * 1500
            var delivered: [String: Int64] = [:]
            for package in packages.dropFirst(2) { delivered[package.deliverer, default: 0] += 1 }
            let cost = ["d1", "d2", "d3"].reduce(Int64(0)) { $0 + 8000 + 300 * (delivered[$1] ?? 0) }
            #expect(session["total_revenue_cents"]?.int == revenue)
            #expect(session["total_cost_cents"]?.int == cost)
            #expect(session["total_profit_cents"]?.int == revenue - cost)
            let snapshot = try #require(session["financial_snapshot"])
            #expect(snapshot["total_revenue_cents"]?.int == revenue)
            #expect(snapshot["total_cost_cents"]?.int == cost)
            #expect(snapshot["total_profit_cents"]?.int == revenue - cost)
            #expect(snapshot["packages_delivered"]?.int == 18)
            #expect(snapshot["packages_failed"]?.int == 2)
            #expect(snapshot["completed_at"]?.string == session["completed_at"]?.string)
            for deliverer in snapshot["deliverers"]!.array {
                let id = deliverer["deliverer_id"]!.string!
                #expect(deliverer["total_earned_cents"]?.int == 8000 + 300 * (delivered[id] ?? 0))
            }

            // Read-only: every write is refused with 409 and says why.
            let writes: [(HTTPRequest.Method, String, String?)] = [
                (.post, "/api/sessions/\(id)/packages", body(["packages": [["barcode": "NEW1"]]])),
                (.post, "/api/sessions/\(id)/reuse", body(["user_id": "maria"])),
                (.post, "/api/sessions/\(id)/start", body(["deliverers": [["deliverer_id": "d9", "base_salary_cents": 1, "commission_per_delivery_cents": 1]]])),
                (.post, "/api/sessions/\(id)/delivery/complete", body(["package_id": .string(packages[19].packageID), "deliverer_id": .string(packages[19].deliverer)])),
                (.post, "/api/sessions/\(id)/delivery/fail", body(["package_id": .string(packages[0].packageID), "deliverer_id": .string(packages[0].deliverer), "reason": "x"])),
                (.post, "/api/sessions/\(id)/delivery/pickup", body(["package_id": .string(packages[0].packageID), "deliverer_id": .string(packages[0].deliverer)])),
                (.post, "/api/sessions/\(id)/pause", nil),
                (.post, "/api/sessions/\(id)/resume", nil),
                (.post, "/api/sessions/\(id)/complete", nil),
                (.post, "/api/sessions/\(id)/packages/\(packages[19].packageID)/reassign", body(["deliverer_id": "d1"])),
                (.delete, "/api/sessions/\(id)/packages/\(packages[19].packageID)", nil),
            ]
            for (method, uri, payload) in writes {
                let problem = try await client.json(method, uri, payload, expect: .conflict)
                #expect(problem["type"]?.string == Problem.typeBase + "session-read-only", "\(uri)")
                #expect(problem["detail"]?.string?.contains("read-only") == true)
            }

            let archived = try await client.json(.post, "/api/sessions/\(id)/archive")
            #expect(archived["status"]?.string == "archived")
            #expect(archived["archived_at"]?.string != nil)

            // Still readable, linked and verifiable.
            let final = try await flow.session(id)
            #expect(final["packages"]!.array.count == 20)
            #expect(final["deliverers"]!.array.count == 3)
            #expect(final["addresses"]!.array.count > 0)
            let actions = final["audit"]!.array.compactMap { $0["action"]?.string }
            #expect(actions.first == "session.created")
            #expect(actions.contains("session.reused"))
            #expect(actions.filter { $0 == "package.delivered" }.count == 18)
            #expect(actions.filter { $0 == "package.failed" }.count == 2)
            #expect(actions.suffix(2) == ["session.completed", "session.archived"])
            let verify = try await client.json(.get, "/api/sessions/\(id)/audit/verify")
            #expect(verify["valid"]?.bool == true)
            #expect(verify["entries"]?.int == Int64(actions.count))
            #expect(verify["first_bad_seq"]?.isNull == true)
        }
    }
}
