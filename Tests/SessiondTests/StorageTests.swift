import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let current = Mutex<Int64>(1_795_000_000_000)
    var wallClock: WallClock { WallClock { [self] in Timestamp(milliseconds: current.withLock { $0 }) } }
    func advance(seconds: Int64) { current.withLock { $0 += seconds * 1000 } }
}

@Suite("Storage and migrations")
struct StorageTests {
    @Test("migrations apply once, in order, and are recorded")
    func migrateTwice() async throws {
        let location = try await TestDatabase.make()
        let configuration = ServerConfiguration(database: location, logLevel: .error)
        try await runMigrations(configuration, logger: TestDatabase.logger)
        try await runMigrations(configuration, logger: TestDatabase.logger)
        let storage = try Storage.open(location, logger: TestDatabase.logger)
        let migrator = Migrator(migrations: allMigrations, logger: TestDatabase.logger)
        let versions: [Int64] = try await withStorage(storage) {
            let rows = try await storage.query("SELECT version FROM schema_migrations ORDER BY version")
            #expect(try await migrator.migrate(storage, now: 0).isEmpty)
            return try rows.map { try $0.int(0) }
        }
        #expect(versions == allMigrations.map { Int64($0.version) }.sorted())
        await TestDatabase.drop(location)
    }

    @Test("/ready compares the sets of migrations: a missing kernel migration below another module's is not ready")
    func readyComparesSets() async throws {
        try await withApp { client, location in
            try await client.json(.get, "/ready", headers: TestAuth.none)
            try await executeRaw("DELETE FROM schema_migrations WHERE version = 3", on: location)
            let response = try await client.json(.get, "/ready", expect: .serviceUnavailable, headers: TestAuth.none)
            #expect(response["type"]?.string == Problem.typeBase + "not-ready")
            #expect(response["detail"]?.string?.contains("3") == true)
        }
    }

    @Test("an idempotency key expires after 24 hours and is purged")
    func idempotencyExpiry() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock) { client, location in
            let key: HTTPFields = [.idempotencyKey: "daily"]
            let first = try await client.json(.post, "/api/sessions/create", #"{"user_id":"expiry"}"#, expect: .created, headers: key)
            clock.advance(seconds: 86_399)
            let replay = try await client.json(.post, "/api/sessions/create", #"{"user_id":"expiry"}"#, expect: .created, headers: key)
            #expect(replay["session_id"] == first["session_id"])
            clock.advance(seconds: 2)
            let fresh = try await client.json(.post, "/api/sessions/create", #"{"user_id":"expiry"}"#, expect: .created, headers: key)
            #expect(fresh["session_id"] != first["session_id"])
            // The new answer replaced the expired one; purging later removes it too.
            let storage = try Storage.open(location, logger: TestDatabase.logger)
            let purged = try await withStorage(storage) { () async throws -> [Int] in
                let store = IdempotencyStore(storage: storage)
                let now = clock.wallClock.now()
                return [
                    try await store.purgeExpired(now: now),
                    try await store.purgeExpired(now: Timestamp(milliseconds: now.milliseconds + 86_401_000)),
                ]
            }
            #expect(purged == [0, 1])
        }
    }

    /// Runs `body` with the storage open (PostgreSQL's pool running), then closes it.
    func withStorage<T: Sendable>(_ storage: Storage, _ body: @Sendable () async throws -> T) async throws -> T {
        switch storage {
        case .sqlite(let db):
            defer { db.close() }
            return try await body()
        case .postgres(let db):
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await db.run() }
                defer { group.cancelAll() }
                return try await body()
            }
        }
    }
}
