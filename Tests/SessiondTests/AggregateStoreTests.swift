import Foundation
import HTTPTypes
import Kernel
import Delivery
import SessiondApp
import Synchronization
import Testing

/// Counts how often sessions are loaded from SQL (decoded), to show hot sessions are not.
final class LoadCounter: Sendable {
    let loads = Atomic<Int>(0)
}

/// The delivery schema, counting loads; `losing` adds a guarded statement that never matches,
/// as if another server always wrote first.
struct ProbeSchema: AggregateSchema {
    typealias Aggregate = DeliveryAggregate
    let inner = DeliverySchema()
    let counter: LoadCounter
    var losing = false

    var versionQuery: String { inner.versionQuery }
    var loadQueries: [String] { inner.loadQueries }
    func decode(_ results: [[SQLRow]]) throws -> DeliveryAggregate? {
        counter.loads.add(1, ordering: .relaxed)
        return try inner.decode(results)
    }
    func id(of aggregate: DeliveryAggregate) -> String { inner.id(of: aggregate) }
    func version(of aggregate: DeliveryAggregate) -> Int64 { inner.version(of: aggregate) }
    func setVersion(_ version: Int64, of aggregate: inout DeliveryAggregate) { inner.setVersion(version, of: &aggregate) }
    func changed(from before: DeliveryAggregate, to after: DeliveryAggregate) -> Bool { inner.changed(from: before, to: after) }
    func changes(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [SQLStatement] {
        var statements = inner.changes(from: before, to: after)
        if losing, before != nil {
            statements.append(
                SQLStatement("UPDATE delivery_sessions SET name = name WHERE session_id = ? AND version < 0", [.text(after.id)], expectedChanges: 1))
        }
        return statements
    }
    func events(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [NewEvent] { inner.events(from: before, to: after) }
    func notFound(_ id: String) -> any Error { inner.notFound(id) }
}

@Suite("The kernel's aggregate store and event log")
struct AggregateStoreTests {
    static func withStorage<T: Sendable>(_ body: @Sendable (Storage) async throws -> T) async throws -> T {
        let location = try await TestDatabase.make()
        defer { Task { await TestDatabase.drop(location) } }
        return try await withDatabase(ServerConfiguration(database: location), logger: TestDatabase.logger, body)
    }

    static func deliverers(_ ids: [String]) throws -> [NewDeliverer] {
        try ids.map {
            try JSONDecoder().decode(NewDeliverer.self, from: Data(#"{"deliverer_id":"\#($0)","base_salary_cents":0,"commission_per_delivery_cents":10}"#.utf8))
        }
    }

    /// Before, a write after the first on the same session in a SQLite commit batch found the
    /// cached version behind and reloaded the session (one query per table) for each write.
    @Test("concurrent writes to one session never reload it from SQL")
    func hotSessionIsNotReloaded() async throws {
        try await Self.withStorage { storage in
            let counter = LoadCounter()
            let store = AggregateStore(storage: storage, schema: ProbeSchema(counter: counter))
            let ids = IDGenerator()
            let now = WallClock.system.now()
            try await store.create(DeliveryAggregate.new(id: "hot", userID: "u", name: nil, at: now, actor: nil), output: 0)
            let packages = try await store.update("hot") { aggregate in
                try aggregate.addPackages((0..<300).map { NewPackage(barcode: "H\($0)") }, ids: ids.make, at: now, actor: nil).added
            }.result
            let deliverers = try Self.deliverers(["d1"])
            _ = try await store.update("hot") { try $0.start(deliverers: deliverers, assignments: [:], at: now, actor: nil) }
            #expect(counter.loads.load(ordering: .relaxed) == 0)

            try await withThrowingTaskGroup(of: Void.self) { group in
                for package in packages {
                    group.addTask {
                        _ = try await store.update("hot") { try $0.mark(.delivered, .id(package.id), by: "d1", reason: nil, at: now, actor: nil) }
                    }
                }
                try await group.waitForAll()
            }
            #expect(counter.loads.load(ordering: .relaxed) == 0)
            let saved = try #require(try await store.load("hot"))
            #expect(saved.session.packagesDelivered == 300)
            #expect(saved.session.status == .completed)
            #expect(saved.version == 302)
        }
    }

    @Test("a write that keeps losing to other writers answers 503 with Retry-After, never 500")
    func contentionIs503() async throws {
        try await Self.withStorage { storage in
            let counter = LoadCounter()
            let store = AggregateStore(storage: storage, schema: ProbeSchema(counter: counter, losing: true))
            let now = WallClock.system.now()
            try await store.create(DeliveryAggregate.new(id: "contended", userID: "u", name: nil, at: now, actor: nil), output: 0)
            await #expect(throws: WriteContention.self) {
                _ = try await store.update("contended") { try $0.reuse(by: "u", at: now, actor: nil) }
            }
            let response = WriteContention(id: "contended", attempts: 5).problem.response()
            #expect(response.status == .serviceUnavailable)
            #expect(response.headers[.retryAfter] == "1")
            // Nothing of the lost write was kept: no event, no change.
            let events = try await EventLog(dialect: storage.dialect).read(storage, after: .start, limit: 100)
            #expect(events.map(\.type) == ["delivery.session.created"])
        }
    }

    /// PostgreSQL hands out positions before commit: here the transaction holding the lower
    /// position commits last. A reader that followed positions alone would read the second,
    /// move its cursor past the first, and never see it.
    @Test("two overlapping transactions committing out of order: no reader skips either", .enabled(if: TestDatabase.postgresURL != nil))
    func outOfOrderCommits() async throws {
        let location = try await TestDatabase.make()
        defer { Task { await TestDatabase.drop(location) } }
        guard case .postgres(let postgres) = location else { return }
        _ = try await withDatabase(ServerConfiguration(database: location), logger: TestDatabase.logger) { _ in 0 }
        let db = PostgresDatabase(location: postgres, maximumConnections: 4, logger: TestDatabase.logger)
        let storage = Storage.postgres(db)
        let log = EventLog(dialect: .postgres)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await db.run() }
            defer { group.cancelAll() }
            let now = WallClock.system.now()
            let inserted = Gate()
            let commit = Gate()
            let first = Task {
                try await db.transaction { connection in
                    for statement in log.append([NewEvent(type: "test.first", createdAt: now, data: "{}")]) { try await connection.execute(statement) }
                    await inserted.open()
                    await commit.wait()
                }
            }
            await inserted.wait()
            try await db.transaction { connection in
                for statement in log.append([NewEvent(type: "test.second", createdAt: now, data: "{}")]) { try await connection.execute(statement) }
            }
            let positions = try await storage.query("SELECT type, position FROM events ORDER BY position")
            #expect(try positions.map { try $0.string(0) } == ["test.second"])  // the first is not committed yet
            // The second has committed, but a reader must not pass the first, still running.
            #expect(try await log.read(storage, after: .start, limit: 10).isEmpty)
            await commit.open()
            try await first.value
            let read = try await log.read(storage, after: .start, limit: 10)
            #expect(read.map(\.type) == ["test.first", "test.second"])
            let all = try await storage.query("SELECT type, position FROM events ORDER BY position")
            #expect(try all.map { try $0.string(0) } == ["test.first", "test.second"])
        }
    }
}

/// A one-shot signal between tasks.
actor Gate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters.removeAll()
    }

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }
}
