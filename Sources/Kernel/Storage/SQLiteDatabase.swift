import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization

/// A synchronous handle on one SQLite connection, valid only inside a read or write closure.
public struct SQLiteConnection {
    let db: Database

    public func query(_ sql: String, _ binds: [SQLValue] = []) throws -> [SQLRow] {
        let statement = try db.cachedStatement(sql: sql)
        try statement.setArguments(Self.arguments(binds))
        var rows: [SQLRow] = []
        let cursor = try Row.fetchCursor(statement)
        while let row = try cursor.next() {
            var values: [SQLValue] = []
            values.reserveCapacity(row.count)
            for value in row.databaseValues {
                switch value.storage {
                case .null: values.append(.null)
                case .int64(let int): values.append(.int(int))
                case .double(let double): values.append(.double(double))
                case .string(let string): values.append(.text(string))
                case .blob(let data): values.append(.text(String(decoding: data, as: UTF8.self)))
                }
            }
            rows.append(SQLRow(values))
        }
        return rows
    }

    /// Runs a statement and returns the number of rows it changed.
    @discardableResult
    public func execute(_ sql: String, _ binds: [SQLValue] = []) throws -> Int {
        let statement = try db.cachedStatement(sql: sql)
        do {
            try statement.execute(arguments: Self.arguments(binds))
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
            || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
        {
            throw StorageError.uniqueViolation(error.message ?? sql)
        }
        return db.changesCount
    }

    public func execute(_ statement: SQLStatement) throws {
        let changed = try execute(statement.sql, statement.binds)
        if let expected = statement.expectedChanges, expected != changed {
            throw StorageError.conflict(statement.sql)
        }
    }

    /// Runs `body` in a transaction of its own (migrations; ordinary writes use `SQLiteDatabase.write`).
    public func transaction(_ body: () throws -> Void) throws {
        try db.inTransaction(.immediate) {
            try body()
            return .commit
        }
    }

    static func arguments(_ binds: [SQLValue]) -> StatementArguments {
        StatementArguments(
            binds.map { value -> (any DatabaseValueConvertible)? in
                switch value {
                case .null: nil
                case .int(let int): int
                case .double(let double): double
                case .text(let text): text
                case .bool(let bool): bool ? Int64(1) : Int64(0)
                }
            }
        )
    }
}

/// SQLite in WAL mode with `synchronous=FULL`: a pool of reader connections and one writer.
///
/// Writes are group-committed: callers queue closures, one writer thread takes everything queued,
/// runs each closure in its own savepoint inside one transaction (so a rule violation rolls back only
/// that caller's work), commits the batch with one fsync, and only then answers every caller. A 2xx
/// therefore always means "on disk", at far more than one fsync per request.
public final class SQLiteDatabase: Sendable {
    public let path: String
    let pool: DatabasePool
    private let writer: GroupCommitWriter
    private let checkpointer: WALCheckpointer
    private let lookups: LookupConnections

    public init(path: String, logger: Logger) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // WAL checkpoints run on a connection and thread of their own (WALCheckpointer), not
            // inside the writer's COMMIT that every caller of the batch is waiting on.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
        }
        self.path = path
        self.pool = try DatabasePool(path: path, configuration: configuration)
        self.writer = GroupCommitWriter(pool: pool, logger: logger)
        self.checkpointer = try WALCheckpointer(path: path, logger: logger)
        self.lookups = LookupConnections(path: path)
    }

    /// A small indexed read run on the calling thread, outside any transaction, through SQLite's C
    /// API on a connection of its own: for lookups on every request (an API key, a login session),
    /// where the pool's hop to a reader thread, its BEGIN/COMMIT and GRDB's boxing of arguments and
    /// rows cost more than the read itself. Sees every commit made before it started.
    public func lookup(_ sql: String, _ binds: [SQLValue]) throws -> [SQLRow] {
        try lookups.query(sql, binds)
    }

    /// Runs `body` in its own savepoint of the next group commit; returns once the batch is durable.
    public func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        checkpointer.startIfNeeded()
        return try await writer.submit(body)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await pool.read { db in try body(SQLiteConnection(db: db)) }
    }

    /// Runs `body` outside any transaction on the writer connection (migrations manage their own).
    public func withWriterConnection<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await pool.writeWithoutTransaction { db in try body(SQLiteConnection(db: db)) }
    }

    public func close() {
        writer.stop()
        checkpointer.stop()
        lookups.close()
        try? pool.close()
    }
}

/// Read-only connections for `SQLiteDatabase.lookup`, opened on first use through SQLite's C API,
/// each with its prepared statements behind a lock of its own. Callers spread over them round-robin,
/// so two threads rarely wait for the same one.
final class LookupConnections: Sendable {
    struct Reader {
        var handle: OpaquePointer?
        var statements: [String: OpaquePointer] = [:]

        mutating func statement(_ sql: String, path: String) throws -> (connection: OpaquePointer, statement: OpaquePointer) {
            let connection = try open(path)
            if let prepared = statements[sql] { return (connection, prepared) }
            var prepared: OpaquePointer?
            let code = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
            guard code == SQLITE_OK, let prepared else {
                throw StorageError.sqlite(code: code, message: String(cString: sqlite3_errmsg(connection)))
            }
            statements[sql] = prepared
            return (connection, prepared)
        }

        mutating func open(_ path: String) throws -> OpaquePointer {
            if let handle { return handle }
            var opened: OpaquePointer?
            let code = sqlite3_open_v2(path, &opened, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
            guard code == SQLITE_OK, let opened else {
                if let opened { sqlite3_close_v2(opened) }
                throw StorageError.sqlite(code: code, message: "cannot open \(path) for lookups")
            }
            sqlite3_busy_timeout(opened, 10_000)
            handle = opened
            return opened
        }

        mutating func close() {
            for statement in statements.values { sqlite3_finalize(statement) }
            statements.removeAll()
            if let handle { sqlite3_close_v2(handle) }
            handle = nil
        }
    }

    final class Slot: Sendable {
        let reader = Mutex(Reader())
    }

    private let path: String
    private let readers: [Slot]
    private let next = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)

    init(path: String, count: Int = 4) {
        self.path = path
        self.readers = (0..<max(count, 1)).map { _ in Slot() }
    }

    func close() {
        closed.store(true, ordering: .releasing)
        for slot in readers { slot.reader.withLock { $0.close() } }
    }

    /// Runs one query on a checked-out connection: bind, step, read, reset.
    func query(_ sql: String, _ binds: [SQLValue]) throws -> [SQLRow] {
        guard !closed.load(ordering: .acquiring) else { throw StorageError.closed }
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue % readers.count
        let path = path
        return try readers[index].reader.withLock { reader throws -> [SQLRow] in
            let (connection, handle) = try reader.statement(sql, path: path)
            defer {
                sqlite3_reset(handle)
                sqlite3_clear_bindings(handle)
            }
            let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
            for (offset, value) in binds.enumerated() {
                let index = Int32(offset + 1)
                let code: Int32
                switch value {
                case .null: code = sqlite3_bind_null(handle, index)
                case .int(let int): code = sqlite3_bind_int64(handle, index, int)
                case .bool(let bool): code = sqlite3_bind_int64(handle, index, bool ? 1 : 0)
                case .double(let double): code = sqlite3_bind_double(handle, index, double)
                case .text(let text): code = sqlite3_bind_text(handle, index, text, -1, transient)
                }
                guard code == SQLITE_OK else { throw StorageError.sqlite(code: code, message: String(cString: sqlite3_errmsg(connection))) }
            }
            let columns = sqlite3_column_count(handle)
            var rows: [SQLRow] = []
            while true {
                let code = sqlite3_step(handle)
                if code == SQLITE_DONE { break }
                guard code == SQLITE_ROW else { throw StorageError.sqlite(code: code, message: String(cString: sqlite3_errmsg(connection))) }
                var values: [SQLValue] = []
                values.reserveCapacity(Int(columns))
                for column in 0..<columns {
                    switch sqlite3_column_type(handle, column) {
                    case SQLITE_NULL: values.append(.null)
                    case SQLITE_INTEGER: values.append(.int(sqlite3_column_int64(handle, column)))
                    case SQLITE_FLOAT: values.append(.double(sqlite3_column_double(handle, column)))
                    default:
                        let count = Int(sqlite3_column_bytes(handle, column))
                        if let text = sqlite3_column_text(handle, column) {
                            values.append(.text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)))
                        } else {
                            values.append(.text(""))
                        }
                    }
                }
                rows.append(SQLRow(values))
            }
            return rows
        }
    }
}

/// Copies the WAL back into the database file every 50 ms from its own connection and thread.
/// PASSIVE checkpoints take no write lock, so the writer keeps committing meanwhile; they skip
/// frames a reader still needs and pick them up the next time.
final class WALCheckpointer: Sendable {
    private let queue: DatabaseQueue
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let logger: Logger
    static let interval: Duration = .milliseconds(50)

    init(path: String, logger: Logger) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(1)
        self.queue = try DatabaseQueue(path: path, configuration: configuration)
        self.logger = logger
    }

    /// Starts the thread on the first write (an unused database costs nothing).
    func startIfNeeded() {
        guard !started.load(ordering: .relaxed), !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in self.loop() }
        thread.name = "sessiond-sqlite-checkpoint"
        thread.start()
    }

    private func loop() {
        while !stopped.load(ordering: .acquiring) {
            let (seconds, attoseconds) = Self.interval.components
            Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
            do {
                _ = try queue.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            } catch {
                logger.debug("WAL checkpoint skipped", metadata: ["error": "\(error)"])
            }
        }
        done.signal()
    }

    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if started.load(ordering: .acquiring) { done.wait() }
        try? queue.close()
    }
}

/// The single writer thread behind `SQLiteDatabase.write`.
final class GroupCommitWriter: Sendable {
    struct Job: Sendable {
        /// Runs inside the batch transaction and returns what to do once the batch has ended.
        let run: @Sendable (Database) -> @Sendable (_ commitError: (any Error)?) -> Void
        /// Answers the caller when the batch failed before this job ran.
        let fail: @Sendable (any Error) -> Void
    }

    private struct Queue {
        var jobs: [Job] = []
        var stopped = false
        var threadStarted = false
    }

    private let queue = Mutex(Queue())
    private let wakeup = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let pool: DatabasePool
    private let logger: Logger

    init(pool: DatabasePool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    func submit<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(
                run: { db in
                    let outcome: Result<T, any Error>
                    do {
                        var value: T?
                        try db.inSavepoint {
                            value = try body(SQLiteConnection(db: db))
                            return .commit
                        }
                        outcome = value.map { .success($0) } ?? .failure(StorageError.closed)
                    } catch {
                        outcome = .failure(error)
                    }
                    return { commitError in
                        if let commitError {
                            continuation.resume(throwing: commitError)
                        } else {
                            continuation.resume(with: outcome)
                        }
                    }
                },
                fail: { error in continuation.resume(throwing: error) }
            )
            let (accepted, startThread) = queue.withLock { state -> (Bool, Bool) in
                if state.stopped { return (false, false) }
                state.jobs.append(job)
                let start = !state.threadStarted
                state.threadStarted = true
                return (true, start)
            }
            guard accepted else {
                continuation.resume(throwing: StorageError.closed)
                return
            }
            // The thread starts on first use, so that an unused database costs nothing.
            if startThread {
                let thread = Thread { [self] in self.loop() }
                thread.name = "sessiond-sqlite-writer"
                thread.start()
            }
            wakeup.signal()
        }
    }

    /// Finishes what is queued, then stops the thread. Later writes fail with `StorageError.closed`.
    func stop() {
        let running = queue.withLock { state -> Bool in
            let wasRunning = state.threadStarted && !state.stopped
            state.stopped = true
            return wasRunning
        }
        guard running else { return }
        wakeup.signal()
        done.wait()
    }

    private func loop() {
        while true {
            wakeup.wait()
            let (jobs, stopped) = queue.withLock { state in
                let jobs = state.jobs
                state.jobs.removeAll(keepingCapacity: true)
                return (jobs, state.stopped)
            }
            if !jobs.isEmpty { runBatch(jobs) }
            if stopped {
                done.signal()
                return
            }
        }
    }

    private func runBatch(_ jobs: [Job]) {
        var completions: [@Sendable ((any Error)?) -> Void] = []
        completions.reserveCapacity(jobs.count)
        do {
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    for job in jobs { completions.append(job.run(db)) }
                    return .commit
                }
            }
            for completion in completions { completion(nil) }
            KernelMetrics.writeBatch(size: jobs.count, database: "sqlite")
        } catch {
            logger.error("group commit failed", metadata: ["error": "\(error)", "batch": "\(jobs.count)"])
            for completion in completions { completion(error) }
            for job in jobs.dropFirst(completions.count) { job.fail(error) }
        }
    }
}
