import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// Each rule of PRODUCT.md "Delivery sessions", through the HTTP API.
@Suite("Delivery rules")
struct DeliveryRulesTests {
    func problemType(_ value: JSONValue) -> String? { value["type"]?.string?.replacingOccurrences(of: Problem.typeBase, with: "") }

    @Test("the same barcode is never added twice to a session, across calls too")
    func duplicateBarcodes() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["A", "B"])
            let second = try await flow.add(id, ["B", "C", " C "])
            #expect(second["added"]!.array.compactMap { $0["barcode"]?.string } == ["C"])
            #expect(second["duplicates"]!.array.compactMap(\.string) == ["B", "C"])
            let session = try await flow.session(id)
            #expect(session["packages_total"]?.int == 3)
            // Another session may hold the same barcode.
            let other = try await flow.create()
            let added = try await flow.add(other, ["A"])
            #expect(added["added"]!.array.count == 1)
        }
    }

    @Test("the same address text is one address row")
    func addressesDeduplicated() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let address: JSONValue = ["street": "Rua A", "number": "10", "city": "Recife"]
            let shouted: JSONValue = ["street": "  RUA   a ", "number": "10", "city": "recife"]
            try await client.json(.post, "/api/sessions/\(id)/packages", body(["packages": [["barcode": "1", "address": address], ["barcode": "2", "address": shouted], ["barcode": "3", "address": ["street": "Rua B"]]]]))
            let session = try await flow.session(id)
            let addresses = session["addresses"]!.array
            #expect(addresses.count == 2)
            #expect(addresses.first?["package_count"]?.int == 2)
            let packages = session["packages"]!.array
            #expect(packages[0]["address_id"] == packages[1]["address_id"])
        }
    }

    @Test("reuse only while open, and only by the session's user")
    func reuse() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create(user: "ana")
            let first = try await client.json(.post, "/api/sessions/\(id)/reuse", body(["user_id": "ana"]))
            #expect(first["reuse_count"]?.int == 1)
            let second = try await client.json(.post, "/api/sessions/\(id)/reuse", body(["user_id": "ana"]))
            #expect(second["reuse_count"]?.int == 2)
            try await client.json(.post, "/api/sessions/\(id)/reuse", body(["user_id": "someone-else"]), expect: .notFound)
            try await flow.add(id, ["X"])
            _ = try await flow.start(id, deliverers: ["d1"])
            let refused = try await client.json(.post, "/api/sessions/\(id)/reuse", body(["user_id": "ana"]), expect: .conflict)
            #expect(problemType(refused) == "invalid-state")
            let audit = try await client.json(.get, "/api/sessions/\(id)/audit")
            #expect(audit["items"]!.array.filter { $0["action"]?.string == "session.reused" }.count == 2)
        }
    }

    @Test("start needs at least one deliverer and one package")
    func startPreconditions() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let empty = try await client.json(.post, "/api/sessions/\(id)/start", body(["deliverers": []]), expect: .unprocessableContent)
            #expect(empty["field"]?.string == "deliverers")
            let noPackages = try await client.json(
                .post, "/api/sessions/\(id)/start",
                body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": 100, "commission_per_delivery_cents": 10]]]), expect: .conflict)
            #expect(problemType(noPackages) == "no-packages")
            try await flow.add(id, ["P1"])
            let missingPay = try await client.json(.post, "/api/sessions/\(id)/start", body(["deliverers": [["deliverer_id": "d1"]]]), expect: .unprocessableContent)
            #expect(missingPay["field"]?.string == "deliverers[0].base_salary_cents")
            let negative = try await client.json(
                .post, "/api/sessions/\(id)/start",
                body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": -1, "commission_per_delivery_cents": 10]]]), expect: .unprocessableContent)
            #expect(negative["field"]?.string == "deliverers[0].base_salary_cents")
            let twice = try await client.json(
                .post, "/api/sessions/\(id)/start",
                body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": 1, "commission_per_delivery_cents": 1], ["deliverer_id": "d1", "base_salary_cents": 1, "commission_per_delivery_cents": 1]]]),
                expect: .unprocessableContent)
            #expect(twice["field"]?.string == "deliverers[1].deliverer_id")
            // Nothing above changed the session.
            #expect(try await flow.session(id)["status"]?.string == "open")
            let started = try await flow.start(id, deliverers: ["d1"])
            #expect(started["status"]?.string == "active")
            let again = try await client.json(
                .post, "/api/sessions/\(id)/start",
                body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": 1, "commission_per_delivery_cents": 1]]]), expect: .conflict)
            #expect(problemType(again) == "invalid-state")
        }
    }

    @Test("packages are split evenly by address unless the caller assigns them")
    func assignment() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            // Six packages at three addresses (two each) over three deliverers: one address each.
            let packages: [JSONValue] = (0..<6).map { index in
                ["barcode": .string("S\(index)"), "address": ["street": .string("Rua \(index / 2)")]]
            }
            let added = try await client.json(.post, "/api/sessions/\(id)/packages", body(["packages": .array(packages)]))
            let firstID = added["added"]![0]!["package_id"]!.string!
            _ = try await flow.start(id, deliverers: ["d1", "d2", "d3"], assignments: [firstID: "d3"])
            let assigned = try await flow.assignments(id)
            #expect(assigned[0].deliverer == "d3")
            var counts: [String: Int] = [:]
            for package in assigned { counts[package.deliverer, default: 0] += 1 }
            #expect(counts.values.sorted() == [1, 2, 3] || counts.values.allSatisfy { $0 == 2 })
            #expect(assigned[2].deliverer == assigned[3].deliverer)  // same address, same deliverer
            #expect(assigned[4].deliverer == assigned[5].deliverer)
            let other = try await flow.create()
            let otherPackage = try await flow.add(other, ["Q"])["added"]![0]!["package_id"]!.string!
            let unknownPackage = try await client.json(.post, "/api/sessions/\(other)/start", body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": 1, "commission_per_delivery_cents": 1]], "assignments": ["nope": "d1"]]), expect: .unprocessableContent)
            #expect(unknownPackage["field"]?.string == "assignments.nope")
            let unknownDeliverer = try await client.json(.post, "/api/sessions/\(other)/start", body(["deliverers": [["deliverer_id": "d1", "base_salary_cents": 1, "commission_per_delivery_cents": 1]], "assignments": [.init(stringLiteral: otherPackage): "d7"]]), expect: .unprocessableContent)
            #expect(unknownDeliverer["field"]?.string == "assignments.\(otherPackage)")
        }
    }

    @Test("delivered twice counts once; pay is base + commission × delivered; revenue is the delivered values")
    func deliveredTwiceAndMoney() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["A", "B", "C"], value: { [1999, 2501, 700][$0] })
            _ = try await flow.start(id, deliverers: ["d1"], base: 10000, commission: 375)
            let packages = try await flow.assignments(id)
            let first = try await flow.deliver(id, package: packages[0].packageID, by: "d1")
            let again = try await flow.deliver(id, package: packages[0].packageID, by: "d1")
            #expect(first["deliverer"]?["packages_delivered"]?.int == 1)
            #expect(again["deliverer"]?["packages_delivered"]?.int == 1)
            #expect(again["session"]?["version"] == first["session"]?["version"])
            let byBarcode = try await client.json(.post, "/api/sessions/\(id)/delivery/complete", body(["barcode": "B", "deliverer_id": "d1"]))
            #expect(byBarcode["package"]?["delivery_status"]?.string == "delivered")
            let earned: Int64 = 10000 + 2 * 375
            let revenue: Int64 = 1999 + 2501
            #expect(byBarcode["deliverer"]?["total_earned_cents"]?.int == earned)
            #expect(byBarcode["session"]?["total_revenue_cents"]?.int == revenue)
            #expect(byBarcode["session"]?["total_cost_cents"]?.int == 10750)
            #expect(byBarcode["session"]?["total_profit_cents"]?.int == revenue - earned)
            let dashboard = try await client.json(.get, "/api/sessions/\(id)/dashboard")
            #expect(dashboard["packages_delivered"]?.int == 2)
            #expect(dashboard["packages_pending"]?.int == 1)
            #expect(dashboard["progress_percent"]?.double == 66.67)
            #expect(dashboard["total_revenue_cents"]?.int == 4500)
            #expect(dashboard["deliverers"]?[0]?["total_earned_cents"]?.int == 10750)
            let audit = try await client.json(.get, "/api/sessions/\(id)/audit")
            #expect(audit["items"]!.array.filter { $0["action"]?.string == "package.delivered" }.count == 2)
        }
    }

    @Test("only the assigned deliverer delivers; reassigning first makes it right")
    func wrongDeliverer() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let added = try await flow.add(id, ["A", "B"])
            let a = added["added"]![0]!["package_id"]!.string!
            _ = try await flow.start(id, deliverers: ["d1", "d2"], assignments: [a: "d1"])
            let refused = try await flow.deliver(id, package: a, by: "d2", expect: .conflict)
            #expect(problemType(refused) == "wrong-deliverer")
            let stranger = try await flow.deliver(id, package: a, by: "d9", expect: .unprocessableContent)
            #expect(stranger["field"]?.string == "deliverer_id")
            let moved = try await client.json(.post, "/api/sessions/\(id)/packages/\(a)/reassign", body(["deliverer_id": "d2"]))
            #expect(moved["assigned_deliverer_id"]?.string == "d2")
            let done = try await flow.deliver(id, package: a, by: "d2")
            #expect(done["deliverer"]?["deliverer_id"]?.string == "d2")
            let final = try await client.json(.post, "/api/sessions/\(id)/packages/\(a)/reassign", body(["deliverer_id": "d1"]), expect: .conflict)
            #expect(problemType(final) == "package-final")
            let session = try await flow.session(id)
            let d2 = session["deliverers"]!.array.first { $0["deliverer_id"]?.string == "d2" }
            #expect(d2?["packages_assigned"]?.int == 2)
        }
    }

    @Test("pickup, failure with a reason, unknown packages and missing fields")
    func pickupAndFailure() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["A", "B"])
            _ = try await flow.start(id, deliverers: ["d1"])
            let packages = try await flow.assignments(id)
            let picked = try await client.json(.post, "/api/sessions/\(id)/delivery/pickup", body(["barcode": "A", "deliverer_id": "d1"]))
            #expect(picked["package"]?["delivery_status"]?.string == "picked_up")
            #expect(picked["package"]?["picked_up_at"]?.string != nil)
            let noReason = try await client.json(.post, "/api/sessions/\(id)/delivery/fail", body(["barcode": "A", "deliverer_id": "d1"]), expect: .unprocessableContent)
            #expect(noReason["field"]?.string == "reason")
            let failed = try await flow.fail(id, package: packages[0].packageID, by: "d1", reason: "Recusado")
            #expect(failed["package"]?["failure_reason"]?.string == "Recusado")
            #expect(failed["deliverer"]?["packages_failed"]?.int == 1)
            let deliverFailed = try await flow.deliver(id, package: packages[0].packageID, by: "d1", expect: .conflict)
            #expect(problemType(deliverFailed) == "package-final")
            try await client.json(.post, "/api/sessions/\(id)/delivery/complete", body(["barcode": "ZZZ", "deliverer_id": "d1"]), expect: .notFound)
            let neither = try await client.json(.post, "/api/sessions/\(id)/delivery/complete", body(["deliverer_id": "d1"]), expect: .unprocessableContent)
            #expect(neither["field"]?.string == "package_id")
            let noDeliverer = try await client.json(.post, "/api/sessions/\(id)/delivery/complete", body(["barcode": "B"]), expect: .unprocessableContent)
            #expect(noDeliverer["field"]?.string == "deliverer_id")
        }
    }

    @Test("pause and resume; deliveries wait while paused; the owner can complete early")
    func pauseResumeComplete() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["A", "B", "C"], value: { _ in 1000 })
            _ = try await flow.start(id, deliverers: ["d1"], base: 2000, commission: 100)
            let packages = try await flow.assignments(id)
            try await client.json(.post, "/api/sessions/\(id)/resume", expect: .conflict)
            let paused = try await client.json(.post, "/api/sessions/\(id)/pause")
            #expect(paused["status"]?.string == "paused")
            let blocked = try await flow.deliver(id, package: packages[0].packageID, by: "d1", expect: .conflict)
            #expect(problemType(blocked) == "invalid-state")
            let resumed = try await client.json(.post, "/api/sessions/\(id)/resume")
            #expect(resumed["status"]?.string == "active")
            try await flow.deliver(id, package: packages[0].packageID, by: "d1")
            let completed = try await client.json(.post, "/api/sessions/\(id)/complete")
            #expect(completed["status"]?.string == "completed")
            #expect(completed["financial_snapshot"]?["packages_pending"]?.int == 2)
            #expect(completed["financial_snapshot"]?["total_revenue_cents"]?.int == 1000)
            #expect(completed["financial_snapshot"]?["total_cost_cents"]?.int == 2100)
            #expect(completed["financial_snapshot"]?["total_profit_cents"]?.int == -1100)
            let open = try await flow.create()
            let early = try await client.json(.post, "/api/sessions/\(open)/complete", expect: .conflict)
            #expect(problemType(early) == "invalid-state")
            let notYet = try await client.json(.post, "/api/sessions/\(open)/archive", expect: .conflict)
            #expect(problemType(notYet) == "invalid-state")
        }
    }

    @Test("packages can be removed only before the start")
    func removePackage() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let added = try await flow.add(id, ["A", "B"])
            let a = added["added"]![0]!["package_id"]!.string!
            let b = added["added"]![1]!["package_id"]!.string!
            let removed = try await client.send(.delete, "/api/sessions/\(id)/packages/\(a)")
            #expect(removed.status == .noContent)
            try await client.json(.delete, "/api/sessions/\(id)/packages/\(a)", expect: .notFound)
            #expect(try await flow.session(id)["packages_total"]?.int == 1)
            // A removed barcode may be added again.
            let readded = try await flow.add(id, ["A"])
            #expect(readded["added"]!.array.count == 1)
            _ = try await flow.start(id, deliverers: ["d1"])
            let refused = try await client.json(.delete, "/api/sessions/\(id)/packages/\(b)", expect: .conflict)
            #expect(problemType(refused) == "invalid-state")
        }
    }

    @Test("a user's sessions: newest first, paginated, filtered by status, archived ones only on request")
    func listing() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await flow.create(user: "lister")) }
            _ = try await flow.create(user: "somebody-else")
            // Complete and archive the oldest.
            try await flow.add(ids[0], ["Z"])
            _ = try await flow.start(ids[0], deliverers: ["d"])
            try await client.json(.post, "/api/sessions/\(ids[0])/complete")
            try await client.json(.post, "/api/sessions/\(ids[0])/archive")

            let page1 = try await client.json(.get, "/api/sessions/user/lister?limit=2")
            #expect(page1["items"]!.array.compactMap { $0["session_id"]?.string } == [ids[4], ids[3]])
            let cursor = try #require(page1["next_cursor"]?.string)
            let page2 = try await client.json(.get, "/api/sessions/user/lister?limit=2&cursor=\(cursor)")
            #expect(page2["items"]!.array.compactMap { $0["session_id"]?.string } == [ids[2], ids[1]])
            #expect(page2["next_cursor"]?.isNull == true)
            let archived = try await client.json(.get, "/api/sessions/user/lister?status=archived")
            #expect(archived["items"]!.array.compactMap { $0["session_id"]?.string } == [ids[0]])
            let open = try await client.json(.get, "/api/sessions/user/lister?status=open")
            #expect(open["items"]!.array.count == 4)
            let bad = try await client.json(.get, "/api/sessions/user/lister?status=lost", expect: .unprocessableContent)
            #expect(bad["field"]?.string == "status")
            try await client.json(.get, "/api/sessions/user/lister?limit=0", expect: .unprocessableContent)
            let nobody = try await client.json(.get, "/api/sessions/user/nobody")
            #expect(nobody["items"]!.array.isEmpty)
        }
    }

    @Test("bad package input names the field and adds nothing")
    func packageValidation() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let cases: [(JSONValue, String)] = [
                (["packages": [["barcode": "ok"], ["barcode": ""]]], "packages[1].barcode"),
                (["packages": [["barcode": "ok", "value_cents": -5]]], "packages[0].value_cents"),
                (["packages": [["barcode": "ok", "value_cents": 12.5]]], "packages[0].value_cents"),
                (["packages": [["value_cents": 5]]], "packages[0].barcode"),
                (["packages": [["barcode": "ok", "address": ["number": "1"]]]], "packages[0].address.street"),
                (["packages": [["barcode": "ok", "address": ["street": "R", "latitude": 91]]]], "packages[0].address.latitude"),
                (["packages": []], "packages"),
                (["pacotes": []], "packages"),
            ]
            for (payload, field) in cases {
                let problem = try await client.json(.post, "/api/sessions/\(id)/packages", body(payload), expect: .unprocessableContent)
                #expect(problem["field"]?.string == field)
                #expect(problem["status"]?.int == 422)
            }
            #expect(try await flow.session(id)["packages_total"]?.int == 0)
            try await client.json(.post, "/api/sessions/no-such-session/packages", body(["packages": [["barcode": "A"]]]), expect: .notFound)
            try await client.json(.get, "/api/sessions/no-such-session", expect: .notFound)
        }
    }
}

@Suite("Delivery limits")
struct DeliveryLimitsTests {
    @Test("1000 packages in one call (the maximum) are saved in one write; 1001 are refused")
    func largestCall() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let added = try await flow.add(id, (0..<1000).map { "BULK\($0)" })
            #expect(added["added"]!.array.count == 1000)
            let session = try await flow.session(id)
            #expect(session["packages_total"]?.int == 1000)
            #expect(session["addresses"]!.array.count == 6)
            let tooMany = try await flow.client.json(
                .post, "/api/sessions/\(id)/packages", body(["packages": .array((0..<1001).map { ["barcode": .string("MORE\($0)")] })]),
                expect: .unprocessableContent)
            #expect(tooMany["field"]?.string == "packages")
            _ = try await flow.start(id, deliverers: ["d1", "d2", "d3", "d4", "d5"])
            let started = try await flow.session(id)
            #expect(started["deliverers"]!.array.compactMap { $0["packages_assigned"]?.int }.reduce(0, +) == 1000)
        }
    }
}
