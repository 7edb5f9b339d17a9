import Delivery
import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

@Suite("Concurrency")
struct ConcurrencyTests {
    /// 50 parallel `delivery/complete` calls on one session, from 5 deliverers, over real HTTP:
    /// every delivery counted once, money exact, and the session completes by itself.
    @Test("50 parallel deliveries on one session end with exact counts and money")
    func fiftyParallelDeliveries() async throws {
        try await withApp(.live) { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create(user: "rush")
            let barcodes = (0..<50).map { "PAR\($0)" }
            try await flow.add(id, barcodes, value: { Int64(100 + $0) })
            let deliverers = (1...5).map { "d\($0)" }
            _ = try await flow.start(id, deliverers: deliverers, base: 3000, commission: 150)
            let packages = try await flow.assignments(id)

            try await withThrowingTaskGroup(of: Void.self) { group in
                for package in packages {
                    group.addTask { try await flow.deliver(id, package: package.packageID, by: package.deliverer) }
                }
                try await group.waitForAll()
            }

            let session = try await flow.session(id)
            let revenue = packages.reduce(Int64(0)) { $0 + $1.value }
            var delivered: [String: Int64] = [:]
            for package in packages { delivered[package.deliverer, default: 0] += 1 }
            let cost = deliverers.reduce(Int64(0)) { $0 + 3000 + 150 * (delivered[$1] ?? 0) }
            #expect(session["status"]?.string == "completed")
            #expect(session["packages_delivered"]?.int == 50)
            #expect(session["total_revenue_cents"]?.int == revenue)
            #expect(session["total_cost_cents"]?.int == cost)
            #expect(session["total_profit_cents"]?.int == revenue - cost)
            for deliverer in session["deliverers"]!.array {
                let name = deliverer["deliverer_id"]!.string!
                #expect(deliverer["packages_delivered"]?.int == delivered[name])
                #expect(deliverer["total_earned_cents"]?.int == 3000 + 150 * (delivered[name] ?? 0))
            }
            let audit = session["audit"]!.array
            #expect(audit.filter { $0["action"]?.string == "package.delivered" }.count == 50)
            #expect(audit.compactMap { $0["seq"]?.int } == Array(1...Int64(audit.count)))
            #expect(try await client.json(.get, "/api/sessions/\(id)/audit/verify")["valid"]?.bool == true)
        }
    }

    /// The same package delivered by 20 racing calls is counted once.
    @Test("racing duplicates of one delivery count once")
    func racingDuplicates() async throws {
        try await withApp(.live) { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            try await flow.add(id, ["ONE", "TWO"], value: { _ in 500 })
            _ = try await flow.start(id, deliverers: ["d1"], base: 0, commission: 100)
            let package = try await flow.assignments(id)[0]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 { group.addTask { try await flow.deliver(id, package: package.packageID, by: "d1") } }
                try await group.waitForAll()
            }
            let session = try await flow.session(id)
            #expect(session["packages_delivered"]?.int == 1)
            #expect(session["total_revenue_cents"]?.int == 500)
            #expect(session["deliverers"]?[0]?["total_earned_cents"]?.int == 100)
            #expect(session["audit"]!.array.filter { $0["action"]?.string == "package.delivered" }.count == 1)
        }
    }
}

@Suite("Two servers on one database")
struct TwoServersTests {
    /// Server A caches a session, server B changes it, then A writes: A's cached copy is stale, its
    /// guarded save must notice, reload and apply the change on top of B's.
    @Test("a stale cache never overwrites another server's write")
    func staleCache() async throws {
        try await withApp { a, location in
            let flowA = DeliveryFlow(client: a)
            let id = try await flowA.create()
            try await flowA.add(id, ["X1", "X2", "X3"], value: { _ in 1000 })
            _ = try await flowA.start(id, deliverers: ["d1"], base: 0, commission: 10)
            let packages = try await flowA.assignments(id)  // A's cache now holds the session

            try await withSecondServer(on: location) { b in
                try await DeliveryFlow(client: b).deliver(id, package: packages[0].packageID, by: "d1")
            }

            let afterA = try await flowA.deliver(id, package: packages[1].packageID, by: "d1")
            #expect(afterA["session"]?["packages_delivered"]?.int == 2)
            #expect(afterA["session"]?["total_revenue_cents"]?.int == 2000)
            #expect(afterA["deliverer"]?["total_earned_cents"]?.int == 20)
            let audit = try await a.json(.get, "/api/sessions/\(id)/audit")["items"]!.array
            #expect(audit.filter { $0["action"]?.string == "package.delivered" }.count == 2)
            #expect(try await a.json(.get, "/api/sessions/\(id)/audit/verify")["valid"]?.bool == true)
        }
    }

    /// A cached session is evicted when the event log shows another server changed it, so reads
    /// see that write long before the cache's own revalidation (set to an hour here) would.
    @Test("a server's reads see another server's write through the event log, not the cache's age")
    func readsFollowOtherServersWrites() async throws {
        try await withApp(configure: { $0.readStaleness = .seconds(3600) }) { a, location in
            let flowA = DeliveryFlow(client: a)
            let id = try await flowA.create()
            try await flowA.add(id, ["Y1", "Y2"])
            _ = try await flowA.start(id, deliverers: ["d1"])
            let packages = try await flowA.assignments(id)  // cached by A
            try await withSecondServer(on: location) { b in
                try await DeliveryFlow(client: b).deliver(id, package: packages[0].packageID, by: "d1")
            }
            let deadline = ContinuousClock.now + .seconds(5)
            var delivered: Int64? = 0
            while ContinuousClock.now < deadline {
                delivered = try await a.json(.get, "/api/sessions/\(id)")["packages_delivered"]?.int
                if delivered == 1 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(delivered == 1)
            #expect(try await a.json(.get, "/api/sessions/\(id)/dashboard")["packages_delivered"]?.int == 1)
        }
    }
}

extension TwoServersTests {
    /// What a server holds in memory and what another one loads from the database are the same
    /// document, field for field (the load path: every table, the snapshot, the audit details).
    @Test("a session loaded from the database reads exactly as the one that wrote it")
    func loadedEqualsWritten() async throws {
        try await withApp { a, location in
            let flow = DeliveryFlow(client: a)
            let id = try await flow.create(user: "roundtrip", name: "Lote \"especial\" — São Paulo")
            try await flow.add(id, ["R1", "R2", "R3", "R4"], value: { Int64(250 * ($0 + 1)) })
            _ = try await flow.start(id, deliverers: ["d1", "d2"], base: 1234, commission: 56)
            let packages = try await flow.assignments(id)
            try await flow.deliver(id, package: packages[0].packageID, by: packages[0].deliverer)
            try await flow.fail(id, package: packages[1].packageID, by: packages[1].deliverer, reason: "Portão fechado")
            try await a.json(.post, "/api/sessions/\(id)/complete")
            let written = try await flow.session(id)
            #expect(written["financial_snapshot"]?["deliverers"]?.array.count == 2)

            let loaded = try await withSecondServer(on: location) { b in try await DeliveryFlow(client: b).session(id) }
            #expect(loaded == written)
        }
    }
}
