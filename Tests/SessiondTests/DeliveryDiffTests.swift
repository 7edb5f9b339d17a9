@testable import Delivery
import Kernel
import Testing

/// The rules and the diff without a database: what a write saves is exactly what it changed.
@Suite("Delivery diff")
struct DeliveryDiffTests {
    let now = Timestamp(milliseconds: 1_795_000_000_000)

    func sessionWithPackages(_ count: Int) throws -> DeliveryAggregate {
        let ids = IDGenerator()
        var aggregate = DeliveryAggregate.new(id: "s1", userID: "u1", name: nil, at: now, actor: nil)
        let packages = try (0..<count).map { index in
            try JSONBody.decode(NewPackage.self, from: .init(string: #"{"barcode":"P\#(index)","value_cents":\#(100 + index)}"#))
        }
        _ = try aggregate.addPackages(packages, ids: ids.make, at: now, actor: nil)
        let deliverer = try JSONBody.decode(NewDeliverer.self, from: .init(string: #"{"deliverer_id":"d1","base_salary_cents":1000,"commission_per_delivery_cents":50}"#))
        try aggregate.start(deliverers: [deliverer], assignments: [:], at: now, actor: nil)
        return aggregate
    }

    @Test("one delivery saves the session, the deliverer, that package and one audit entry")
    func deliverySavesFourRows() throws {
        let before = try sessionWithPackages(50)
        var after = before
        _ = try after.mark(.delivered, .barcode("P7"), by: "d1", reason: nil, at: now, actor: nil)
        after.session.version += 1
        let statements = DeliverySQL.changes(from: before, to: after)
        #expect(statements.count == 4)
        #expect(statements[0].sql.hasPrefix("UPDATE delivery_sessions"))
        #expect(statements[0].expectedChanges == 1)
        #expect(statements[1].sql.contains("UPDATE delivery_deliverers"))
        #expect(statements[2].sql.contains("UPDATE delivery_packages"))
        #expect(statements[2].binds.last == .text(after.packages[7].id))
        #expect(statements[3].sql.hasPrefix("INSERT INTO delivery_audit"))
    }

    @Test("removing a package deletes it and updates nothing else")
    func removalDeletes() throws {
        let ids = IDGenerator()
        var before = DeliveryAggregate.new(id: "s2", userID: "u1", name: nil, at: now, actor: nil)
        let packages = try (0..<5).map { try JSONBody.decode(NewPackage.self, from: .init(string: #"{"barcode":"R\#($0)"}"#)) }
        _ = try before.addPackages(packages, ids: ids.make, at: now, actor: nil)
        var after = before
        try after.removePackage(before.packages[2].id, at: now, actor: nil)
        after.session.version += 1
        let statements = DeliverySQL.changes(from: before, to: after)
        #expect(statements.map { String($0.sql.prefix(24)) } == ["UPDATE delivery_sessions", "DELETE FROM delivery_pac", "INSERT INTO delivery_aud"])
    }
}
