import Logging
import ServiceLifecycle
import Synchronization

/// This process's reader of the event log: one tail of the `events` table that every live stream,
/// every cache and (next) every webhook worker in the process shares, instead of one query per
/// client.
///
/// It wakes when a store here commits events (`wake`), when another server says it did (PostgreSQL
/// `LISTEN`; this feed sends the `NOTIFY` for its own server's commits, one per wake-up rather than
/// one per transaction, because PostgreSQL serialises the commits of notifying transactions), and
/// every `pollInterval` in case a notification was lost or another process shares a SQLite file.
/// NOTIFY only wakes: what is read is always the log, in order, from the last event read.
///
/// Events read are kept in a bounded window (`recent`), handed to handlers (cache invalidation),
/// and announced to waiting readers (`next`), who then take what they need from the window or, if
/// they fell behind it, from the database.
public final class EventFeed: Service, Sendable {
    public struct Configuration: Sendable {
        /// How often the log is read when nothing woke the feed.
        public var pollInterval: Duration
        /// Waiting readers are released at least this often, so streams can send keep-alive comments
        /// and check that their caller's credential still holds (a revoked one ends its streams
        /// within a tick and a check: 2 s by default, under the contract's 5 s).
        public var tick: Duration
        /// The longest a live stream stays silent: it sends a comment line after this much quiet.
        public var heartbeat: Duration
        /// How many of the newest events are kept in memory.
        public var window: Int
        /// Events read per query.
        public var batch: Int
        /// The shortest time between two reads of the log: commits that come closer together are
        /// read (and, on PostgreSQL, announced to other servers) together.
        public var minimumInterval: Duration

        public init(
            pollInterval: Duration = .milliseconds(500), tick: Duration = .seconds(2), heartbeat: Duration = .seconds(10), window: Int = 20_000,
            batch: Int = 1_000, minimumInterval: Duration = .milliseconds(5)
        ) {
            self.minimumInterval = minimumInterval
            self.pollInterval = pollInterval
            self.tick = tick
            self.heartbeat = heartbeat
            self.window = window
            self.batch = batch
        }
    }

    static let channel = "sessiond_events"

    let storage: Storage
    let log: EventLog
    public let configuration: Configuration
    let logger: Logger

    private struct State {
        var started = false
        /// Set once the server shuts down: readers get no more events.
        var readersEnded = false
        /// The newest event read.
        var head = EventID.start
        /// Every event after this one, up to `head`, is in `window`.
        var windowStart = EventID.start
        var window: [Event] = []
        /// The same events by session, so a reader of one session looks only at its own.
        var sessionWindows: [String: [Event]] = [:]
        /// Readers of every session, released by any news.
        var waiters: [CheckedContinuation<Bool, Never>] = []
        /// Readers of one session, released only by news of that session (or a tick): a thousand
        /// dashboards each on its own session are not all woken by every commit.
        var sessionWaiters: [String: [CheckedContinuation<Bool, Never>]] = [:]
        var handlers: [@Sendable ([Event]) -> Void] = []
        /// A store in this process committed since the last read: tell the other servers.
        var localCommits = false
    }

    private let state = Mutex(State())
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    public init(storage: Storage, configuration: Configuration = .init(), logger: Logger) {
        self.storage = storage
        self.log = EventLog(dialect: storage.dialect)
        self.configuration = configuration
        self.logger = logger
        (wakeups, wakeup) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// A store in this process committed events.
    public func wake() {
        state.withLock { $0.localCommits = true }
        wakeup.yield()
    }

    /// Called with every batch of events read, in order (before waiting readers are released).
    public func onEvents(_ handler: @escaping @Sendable ([Event]) -> Void) {
        state.withLock { $0.handlers.append(handler) }
    }

    /// The newest event read so far.
    public var head: EventID { state.withLock { $0.head } }

    /// Whether the feed has read the log's head and serves readers.
    public var isRunning: Bool { state.withLock { $0.started && !$0.readersEnded } }

    /// The events after `cursor` read so far that `include` accepts (evaluated here, so only they
    /// are copied), and the newest event read (`through`: the reader's next cursor); nil when the
    /// window no longer reaches back to `cursor` (the reader then reads the database).
    public func recent(
        after cursor: EventID, sessionID: String? = nil, where include: (Event) -> Bool
    ) -> (events: [Event], through: EventID)? {
        state.withLock { state in
            guard state.started, cursor >= state.windowStart else { return nil }
            let through = max(cursor, state.head)
            if let sessionID {
                guard let list = state.sessionWindows[sessionID] else { return ([], through) }
                return (Self.after(cursor, in: list).filter(include), through)
            }
            return (Self.after(cursor, in: state.window).filter(include), through)
        }
    }

    /// The events of a sorted list after `cursor` (a binary search, then a slice).
    static func after(_ cursor: EventID, in list: [Event]) -> ArraySlice<Event> {
        var low = 0
        var high = list.count
        while low < high {
            let middle = (low + high) / 2
            if list[middle].id <= cursor { low = middle + 1 } else { high = middle }
        }
        return list[low...]
    }

    /// Waits until there is an event after `cursor` (of `sessionID` only, when given), or at most
    /// about `tick`. False once the server is shutting down: streams then end.
    public func next(after cursor: EventID, sessionID: String? = nil) async -> Bool {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool? in
                if state.readersEnded { return false }
                if state.started, state.head > cursor { return true }
                if let sessionID {
                    state.sessionWaiters[sessionID, default: []].append(continuation)
                } else {
                    state.waiters.append(continuation)
                }
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    public func run() async throws {
        let head = try await startingHead()
        state.withLock { state in
            state.head = head
            state.windowStart = head
            state.started = true
        }
        logger.debug("event feed started", metadata: ["head": "\(head)"])
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.poll() }
                if case .postgres(let db) = self.storage {
                    group.addTask { await self.listen(db) }
                }
                group.addTask { await self.follow() }
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        stop()
    }

    /// Ends every waiting reader and makes later ones end at once: the server is shutting down,
    /// and the HTTP server waits for open streams, so they must end first. The feed itself goes on
    /// (caches still follow the log) until its own shutdown.
    public func endReaders() {
        let waiters = state.withLock { state in
            state.readersEnded = true
            defer {
                state.waiters.removeAll()
                state.sessionWaiters.removeAll()
            }
            return state.waiters + state.sessionWaiters.values.joined()
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    private func stop() {
        endReaders()
        wakeup.finish()
    }

    /// The log's head, once the database answers (the server migrates it as it starts).
    private func startingHead() async throws -> EventID {
        var attempt = 0
        while true {
            do {
                return try await log.head(storage)
            } catch {
                attempt += 1
                if attempt % 50 == 0 { logger.warning("event feed cannot read the log yet", metadata: ["error": "\(error)"]) }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Wakes the follower every `pollInterval`.
    private func poll() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.pollInterval)
            wakeup.yield()
        }
    }

    /// Listens for other servers' commits; reconnects after a second when the connection fails.
    private func listen(_ db: PostgresDatabase) async {
        while !Task.isCancelled {
            do {
                try await db.client.withConnection { connection in
                    let notifications = try await connection.listen(Self.channel)
                    for try await _ in notifications { self.wakeup.yield() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("event feed lost its LISTEN connection", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func follow() async {
        var released = ContinuousClock.now
        var lastRead = ContinuousClock.now - configuration.minimumInterval
        for await _ in wakeups {
            let wait = lastRead + configuration.minimumInterval - ContinuousClock.now
            if wait > .zero { try? await Task.sleep(for: wait) }
            lastRead = ContinuousClock.now
            let local = state.withLock { state in
                defer { state.localCommits = false }
                return state.localCommits
            }
            var news: Set<String>?
            do {
                news = try await catchUp()
            } catch {
                logger.warning("event feed could not read the log", metadata: ["error": "\(error)"])
            }
            if local, case .postgres(let db) = storage {
                do {
                    try await db.read { connection in try await connection.execute("SELECT pg_notify('\(Self.channel)', '')") }
                } catch {
                    logger.warning("event feed could not notify other servers", metadata: ["error": "\(error)"])
                }
            }
            let now = ContinuousClock.now
            let tick = now - released >= configuration.tick
            if tick { released = now }
            if news != nil || tick {
                let waiters = state.withLock { state in
                    var woken = state.waiters
                    state.waiters.removeAll(keepingCapacity: true)
                    if tick {
                        woken += state.sessionWaiters.values.joined()
                        state.sessionWaiters.removeAll(keepingCapacity: true)
                    } else if let news {
                        for sessionID in news {
                            if let waiting = state.sessionWaiters.removeValue(forKey: sessionID) { woken += waiting }
                        }
                    }
                    return woken
                }
                for waiter in waiters { waiter.resume(returning: true) }
            }
        }
    }

    /// Reads everything after `head`; the sessions it read events of (nil when nothing was read).
    private func catchUp() async throws -> Set<String>? {
        var sessions: Set<String>?
        while true {
            let cursor = head
            let events = try await log.read(storage, after: cursor, limit: configuration.batch)
            guard !events.isEmpty else { return sessions }
            var touched = sessions ?? []
            for event in events { if let sessionID = event.sessionID { touched.insert(sessionID) } }
            sessions = touched
            let handlers = state.withLock { state in
                state.head = events[events.count - 1].id
                state.window += events
                for event in events {
                    if let sessionID = event.sessionID { state.sessionWindows[sessionID, default: []].append(event) }
                }
                // Trimmed by a quarter at a time, not on every batch: each trim moves the array.
                if state.window.count > configuration.window + configuration.window / 4 {
                    let excess = state.window.count - configuration.window
                    for event in state.window[0..<excess] {
                        guard let sessionID = event.sessionID else { continue }
                        // The oldest events of the window are the oldest of their session too.
                        if state.sessionWindows[sessionID]?.count ?? 0 <= 1 {
                            state.sessionWindows[sessionID] = nil
                        } else {
                            state.sessionWindows[sessionID]?.removeFirst()
                        }
                    }
                    state.windowStart = state.window[excess - 1].id
                    state.window.removeFirst(excess)
                }
                return state.handlers
            }
            for handler in handlers { handler(events) }
            if events.count < configuration.batch { return sessions }
        }
    }
}
