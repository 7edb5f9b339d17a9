import Hummingbird
import Synchronization

/// What a module tells the kernel about one kind of aggregate: how to load it, how to tell and save
/// a change, and which events a change emits. Everything else — the cache, the version guard,
/// retries, the SQLite group commit and the PostgreSQL driver, events, idempotent answers — is
/// `AggregateStore`'s, written once.
public protocol AggregateSchema: Sendable {
    associatedtype Aggregate: Sendable

    /// One row, one column: the stored version of the aggregate whose id is bound.
    var versionQuery: String { get }
    /// The queries that load an aggregate, each bound with its id; `decode` gets their rows.
    var loadQueries: [String] { get }
    func decode(_ results: [[SQLRow]]) throws -> Aggregate?

    func id(of aggregate: Aggregate) -> String
    func version(of aggregate: Aggregate) -> Int64
    func setVersion(_ version: Int64, of aggregate: inout Aggregate)

    /// Whether `after` must be saved. A change that records nothing saves nothing.
    func changed(from before: Aggregate, to after: Aggregate) -> Bool
    /// The statements that save `after` over `before` (nil: a new aggregate). The root row's update
    /// must be guarded by `before`'s version (`expectedChanges: 1`).
    func changes(from before: Aggregate?, to after: Aggregate) -> [SQLStatement]
    /// The events the change emits, appended in the same transaction.
    func events(from before: Aggregate?, to after: Aggregate) -> [NewEvent]

    /// The error for an id that has no aggregate.
    func notFound(_ id: String) -> any Error
}

/// Optimistic writes that lost to other servers' writes on the same aggregate on every try: the
/// client should retry shortly (503 with `Retry-After`).
public struct WriteContention: Error, ProblemConvertible {
    public var id: String
    public var attempts: Int

    public init(id: String, attempts: Int) {
        self.id = id
        self.attempts = attempts
    }

    public var problem: Problem {
        var problem = Problem(
            status: .serviceUnavailable, slug: "write-contention", title: "Too many concurrent writes",
            detail: "Other writes to \(id) kept winning (\(attempts) tries); retry in a moment.")
        problem.headers[.retryAfter] = "1"
        return problem
    }
}

/// The one write path of every module: aggregates kept in a versioned in-memory cache, each
/// change computed by a pure rule on a copy and saved as the difference, with its events and the
/// request's idempotent answer, in one transaction guarded by the version the rule saw.
///
/// SQLite: the change runs on the single writer inside its savepoint of a group commit, after
/// reading the stored version; a session written earlier in the same batch is taken from
/// `pending` (saved, not yet committed), so a hot session is never reloaded between writes.
/// PostgreSQL: writers of one aggregate queue in this process (`locks`) and the difference runs as
/// one statement; when another server wrote first the guard fails and the change is recomputed on a
/// fresh load, `maxAttempts` times at most, then `WriteContention`.
public final class AggregateStore<Schema: AggregateSchema>: Sendable {
    public typealias Aggregate = Schema.Aggregate

    public let storage: Storage
    let schema: Schema
    let cache: VersionedCache<Aggregate>
    let events: EventLog
    let didCommitEvents: @Sendable () -> Void
    /// How long a cached aggregate is served without asking the database for its version. Other
    /// servers' writes normally arrive sooner through the event log (`invalidate`); this bounds
    /// staleness when a notification is lost.
    let readStaleness: Duration
    let maxAttempts = 5
    private let locks = KeyedLock()
    private let pending = Mutex<[String: (version: Int64, value: Aggregate)]>([:])

    public init(
        storage: Storage, schema: Schema, cacheCapacity: Int = 4096, readStaleness: Duration = .seconds(1),
        didCommitEvents: @escaping @Sendable () -> Void = {}
    ) {
        self.storage = storage
        self.schema = schema
        self.cache = VersionedCache(capacity: cacheCapacity)
        self.events = EventLog(dialect: storage.dialect)
        self.readStaleness = readStaleness
        self.didCommitEvents = didCommitEvents
    }

    /// Forgets a cached copy older than `version` (another server committed that version).
    public func invalidate(_ id: String, below version: Int64) {
        cache.invalidate(id, below: version)
    }

    // MARK: create

    /// Saves a new aggregate with its events and the `alongside` statements; `output` is what the
    /// caller answers (stored as the idempotent answer in the same transaction when the request has a key).
    public func create<Output: Sendable>(_ aggregate: Aggregate, output: Output, alongside: [SQLStatement] = []) async throws {
        let slot = IdempotencySlot.current
        let emitted = schema.events(from: nil, to: aggregate)
        let answer = slot?.answer(for: output)
        let statements = schema.changes(from: nil, to: aggregate) + events.append(emitted) + alongside + (answer.map { [$0.statement] } ?? [])
        switch storage {
        case .sqlite(let db):
            try await db.write { connection in
                for statement in statements { try connection.execute(statement) }
            }
        case .postgres(let db):
            try await Self.execute(statements, on: db)
        }
        cache.publish(schema.id(of: aggregate), version: schema.version(of: aggregate), value: aggregate)
        if let answer { slot?.stored(answer.answer) }
        KernelMetrics.eventsAppended(emitted.count)
        didCommitEvents()
    }

    // MARK: read

    /// The aggregate, from the cache when it is known to be current, else loaded.
    public func load(_ id: String) async throws -> Aggregate? {
        if let cached = cache.lookup(id) {
            if cached.age < readStaleness { return cached.value }
            // Another server or process may have written: one cheap query says whether it did.
            let current = try await storage.query(schema.versionQuery, [.text(id)]).first?.int(0)
            if current == cached.version {
                cache.confirm(id, version: cached.version)
                return cached.value
            }
        }
        let loaded: Aggregate?
        switch storage {
        case .sqlite(let db):
            let schema = schema
            loaded = try await db.read { connection in try schema.decode(schema.loadQueries.map { try connection.query($0, [.text(id)]) }) }
        case .postgres(let db):
            loaded = try await db.read { connection in try await self.load(id, connection) }
        }
        if let loaded { cache.publish(id, version: schema.version(of: loaded), value: loaded) } else { cache.remove(id) }
        return loaded
    }

    private func load(_ id: String, _ connection: PostgresSQL) async throws -> Aggregate? {
        var results: [[SQLRow]] = []
        for query in schema.loadQueries { results.append(try await connection.query(query, [.text(id)])) }
        return try schema.decode(results)
    }

    // MARK: update

    /// Applies `change` to the current aggregate and saves the difference, its events, the
    /// statements `alongside` makes from the output (a job's status; saved even when the aggregate
    /// did not change) and the request's idempotent answer, in one transaction. `output` makes the
    /// caller's answer from the change's result and the aggregate as saved (with its new version).
    public func update<Result: Sendable, Output: Sendable>(
        _ id: String,
        alongside: @escaping @Sendable (Output) -> [SQLStatement] = { _ in [] },
        _ change: @escaping @Sendable (inout Aggregate) throws -> Result,
        output: @escaping @Sendable (Result, Aggregate) -> Output
    ) async throws -> Output {
        let slot = IdempotencySlot.current
        switch storage {
        case .sqlite(let db):
            return try await updateSQLite(db, id, slot: slot, alongside: alongside, change, output: output)
        case .postgres(let db):
            return try await updatePostgres(db, id, slot: slot, alongside: alongside, change, output: output)
        }
    }

    /// The change's result and the aggregate as saved.
    public func update<Result: Sendable>(
        _ id: String, _ change: @escaping @Sendable (inout Aggregate) throws -> Result
    ) async throws -> Updated<Result, Aggregate> {
        try await update(id, change, output: { Updated(result: $0, aggregate: $1) })
    }

    /// Runs the change on a copy of `before`: the statements to save (none when nothing changed
    /// and nothing rides along), the aggregate as saved, and the caller's output.
    private func plan<Result, Output: Sendable>(
        _ before: Aggregate, slot: IdempotencySlot?, alongside: (Output) -> [SQLStatement], _ change: (inout Aggregate) throws -> Result,
        output: (Result, Aggregate) -> Output
    ) throws -> Plan<Output> {
        var aggregate = before
        let result = try change(&aggregate)
        let changed = schema.changed(from: before, to: aggregate)
        var statements: [SQLStatement] = []
        var emitted: [NewEvent] = []
        if changed {
            schema.setVersion(schema.version(of: before) + 1, of: &aggregate)
            emitted = schema.events(from: before, to: aggregate)
            statements = schema.changes(from: before, to: aggregate) + events.append(emitted)
        } else {
            aggregate = before
        }
        let answer = output(result, aggregate)
        statements += alongside(answer)
        var rendered: RenderedAnswer?
        if !statements.isEmpty, let slot, let stored = slot.answer(for: answer) {
            statements.append(stored.statement)
            rendered = stored.answer
        }
        return Plan(statements: statements, saved: aggregate, changed: changed, output: answer, events: emitted.count, answer: rendered)
    }

    /// What one change comes to.
    struct Plan<Output: Sendable>: Sendable {
        var statements: [SQLStatement]
        /// The aggregate as saved (the one before, when nothing changed).
        var saved: Aggregate
        var changed: Bool
        var output: Output
        var events: Int
        /// The idempotent answer saved with it.
        var answer: RenderedAnswer?
    }

    private func updateSQLite<Result: Sendable, Output: Sendable>(
        _ db: SQLiteDatabase, _ id: String, slot: IdempotencySlot?, alongside: @escaping @Sendable (Output) -> [SQLStatement],
        _ change: @escaping @Sendable (inout Aggregate) throws -> Result, output: @escaping @Sendable (Result, Aggregate) -> Output
    ) async throws -> Output {
        let schema = schema
        // The single writer is the one serial step of every write: the change is worked out here,
        // on the caller's thread, from the cached copy, and the writer only checks that this copy
        // is still the stored version before saving it. When it is not (another write to this
        // session got in first: a hot session), the writer works the change out again itself.
        let early: (version: Int64, plan: Swift.Result<Plan<Output>, any Error>)? = cache.get(id).map { cached in
            (cached.version, Swift.Result { try plan(cached.value, slot: slot, alongside: alongside, change, output: output) })
        }
        let done: Plan<Output>
        do {
            // Runs on the single writer, inside this request's savepoint of the group commit.
            done = try await db.write { [self] connection -> Plan<Output> in
                guard let row = try connection.query(schema.versionQuery, [.text(id)]).first else { throw schema.notFound(id) }
                let current = try row.int(0)
                let plan: Plan<Output>
                if let early, early.version == current {
                    plan = try early.plan.get()
                } else {
                    let before: Aggregate
                    // Looked up here, on the writer: a write committed meanwhile is in the cache
                    // by now, or still in `pending` (published, then removed).
                    if let saved = pending.withLock({ $0[id] }), saved.version == current {
                        before = saved.value  // written earlier in this batch
                    } else if let cached = cache.get(id), cached.version == current {
                        before = cached.value
                    } else {
                        guard let loaded = try schema.decode(schema.loadQueries.map { try connection.query($0, [.text(id)]) }) else {
                            throw schema.notFound(id)
                        }
                        before = loaded
                    }
                    plan = try self.plan(before, slot: slot, alongside: alongside, change, output: output)
                }
                for statement in plan.statements { try connection.execute(statement) }
                if plan.changed { pending.withLock { $0[id] = (current + 1, plan.saved) } }
                return plan
            }
        } catch StorageError.conflict {
            // A guard failed although the version was read in this transaction: only a schema
            // whose statements disagree with its version query gets here.
            forgetPending(id)
            throw WriteContention(id: id, attempts: 1)
        } catch {
            forgetPending(id)
            throw error
        }
        if let answer = done.answer { slot?.stored(answer) }
        if done.changed {
            let version = schema.version(of: done.saved)
            cache.publish(id, version: version, value: done.saved)
            pending.withLock { if $0[id]?.version == version { $0[id] = nil } }
            KernelMetrics.eventsAppended(done.events)
            didCommitEvents()
        }
        return done.output
    }

    /// After a failed batch: what it saved was rolled back.
    private func forgetPending(_ id: String) {
        pending.withLock { _ = $0.removeValue(forKey: id) }
    }

    private func updatePostgres<Result: Sendable, Output: Sendable>(
        _ db: PostgresDatabase, _ id: String, slot: IdempotencySlot?, alongside: @escaping @Sendable (Output) -> [SQLStatement],
        _ change: @escaping @Sendable (inout Aggregate) throws -> Result, output: @escaping @Sendable (Result, Aggregate) -> Output
    ) async throws -> Output {
        try await locks.withLock(id) {
            var attempt = 0
            while true {
                attempt += 1
                let current: Aggregate
                if attempt == 1, let cached = cache.get(id) {
                    current = cached.value
                } else {
                    cache.remove(id)
                    guard let loaded = try await load(id) else { throw schema.notFound(id) }
                    current = loaded
                }
                let plan = try plan(current, slot: slot, alongside: alongside, change, output: output)
                do {
                    try await Self.execute(plan.statements, on: db)
                } catch StorageError.conflict {
                    if attempt < maxAttempts { continue }
                    throw WriteContention(id: id, attempts: attempt)
                }
                if let answer = plan.answer { slot?.stored(answer) }
                if plan.changed {
                    cache.publish(id, version: schema.version(of: plan.saved), value: plan.saved)
                    KernelMetrics.eventsAppended(plan.events)
                    didCommitEvents()
                }
                return plan.output
            }
        }
    }

    static var maxAtomicStatements: Int { 300 }

    /// One atomic statement (no BEGIN/COMMIT round trips) unless the change is very large: a
    /// 10,000-row import would pass PostgreSQL's limit of 65,535 parameters in one statement, so
    /// it runs as one transaction of many statements.
    static func execute(_ statements: [SQLStatement], on db: PostgresDatabase) async throws {
        guard !statements.isEmpty else { return }
        KernelMetrics.writeBatch(size: 1, database: "postgres")
        if statements.count <= maxAtomicStatements {
            try await db.read { connection in try await connection.executeAtomically(statements) }
        } else {
            try await db.transaction { connection in
                for statement in statements { try await connection.execute(statement) }
            }
        }
    }
}

/// A change's result with the aggregate as saved.
public struct Updated<Result: Sendable, Aggregate: Sendable>: Sendable {
    public var result: Result
    public var aggregate: Aggregate
}
