import CoreMetrics
import HTTPTypes
import Hummingbird
import Kernel
import Logging
import ServiceLifecycle
import NIOCore
import Synchronization

/// The readers of the event log over HTTP: a page at a time (`GET /api/events`), and live as
/// Server-Sent Events (`GET /api/events/stream`, `GET /api/sessions/{id}/events`).
public struct EventRoutes: Sendable {
    /// Decides whether `caller` may follow the events of session `id` (the owning module's rule;
    /// it throws the same 404 as reading the session would).
    public typealias SessionAccess = @Sendable (_ sessionID: String, _ caller: Caller) async throws -> Void

    let reader: EventReader
    let catalog: [(type: String, summary: String)]
    let sessionAccess: SessionAccess

    public init(reader: EventReader, catalog: [(type: String, summary: String)], sessionAccess: @escaping SessionAccess) {
        self.reader = reader
        self.catalog = catalog.sorted { $0.type < $1.type }
        self.sessionAccess = sessionAccess
    }

    static let typesParameter = QueryParameter(
        "types", schema: ["type": "string", "description": "comma-separated exact types and prefixes such as delivery.*"])
    static let afterParameter = QueryParameter("after", schema: ["type": "string", "pattern": "^[0-9a-f]{32}$", "description": "an event_id; events after it"])

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let (reader, catalog, sessionAccess) = (reader, catalog, sessionAccess)
        let tag = "events"
        routes.add(.init(.get, "/api/events", summary: "Events the caller may see, in commit order, after a cursor", tag: tag, response: "EventPage", errors: [422], query: [
            Self.afterParameter, Self.typesParameter, .limit(maximum: 1000),
        ]), to: router) { request, context in
            let after = try Self.cursor(request.queryString("after"), field: "after") ?? .start
            let limit = try request.queryInt("limit", default: 100, range: 1...1000)
            let page = try await reader.page(after: after, filter: EventFilter(types: Self.types(request)), caller: context.caller, limit: limit)
            return JSONResponse.write(EventPage(items: page.items, nextCursor: page.next.description))
        }
        routes.add(.init(.get, "/api/events/types", summary: "Every event type, with what it means", tag: tag, response: "EventTypes"), to: router) { _, _ in
            JSONResponse.write(EventTypes(items: catalog))
        }
        routes.add(.init(.get, "/api/events/stream", summary: "Events as Server-Sent Events (Last-Event-ID resumes)", tag: tag, response: "EventStream", errors: [422], query: [
            Self.afterParameter, Self.typesParameter,
        ], responseMediaType: "text/event-stream"), to: router) { request, context in
            let start = try Self.cursor(request.headers[.lastEventID] ?? request.queryString("after"), field: "Last-Event-ID")
            return try await reader.stream(from: start, filter: EventFilter(types: Self.types(request)), caller: context.caller, logger: context.logger)
        }
        routes.add(.init(.get, "/api/sessions/{id}/events", summary: "One session's events as Server-Sent Events", tag: tag, response: "EventStream", errors: [404, 422], query: [
            Self.afterParameter, Self.typesParameter,
        ], responseMediaType: "text/event-stream"), to: router) { request, context in
            let sessionID = try context.parameters.require("id")
            try await sessionAccess(sessionID, context.caller)
            let start = try Self.cursor(request.headers[.lastEventID] ?? request.queryString("after"), field: "Last-Event-ID")
            return try await reader.stream(
                from: start, filter: EventFilter(types: Self.types(request), sessionID: sessionID), caller: context.caller, logger: context.logger,
                authorized: true)
        }
    }

    static func cursor(_ text: String?, field: String) throws -> EventID? {
        guard let text, !text.isEmpty else { return nil }
        guard let cursor = EventID(text) else { throw Problem.validation(field, "\(field) must be an event_id this server gave out.") }
        return cursor
    }

    static func types(_ request: Request) -> [String] {
        request.uri.queryParameters.getAll("types").flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
    static let accelBuffering = Self("X-Accel-Buffering")!
}

/// Reads the log for callers: pages from the database, streams from the process's `EventFeed`.
///
/// A stream follows its caller: before it sends events, and at least every feed tick while idle,
/// it asks `credentialHolds` (the access module) whether the key or login session it was opened
/// with still authenticates, as of a read that began after the events were read; once it does not
/// (revoked, expired), the stream ends, so it carries nothing committed after a revocation. A
/// credential holds at most `streamsPerCredential` open streams (429 beyond).
public final class EventReader: Sendable {
    /// Whether the credential behind the caller still authenticates now.
    public typealias CredentialCheck = @Sendable (Caller) async -> Bool

    let storage: Storage
    let log: EventLog
    let feed: EventFeed
    let credentialHolds: CredentialCheck
    /// `STREAMS_PER_CREDENTIAL` (0: no cap).
    let streamsPerCredential: Int
    private let open = Mutex<[String: Int]>([:])
    /// The longest a stream stays silent: a comment line is sent after this much quiet (at least
    /// every 15 s, as the contract says; 10 s by default).
    var heartbeat: Duration { feed.configuration.heartbeat }
    /// How many rows one page request reads at most looking for matches.
    let scanLimit = 5_000
    private let clients = Atomic<Int>(0)

    public init(storage: Storage, feed: EventFeed, streamsPerCredential: Int = 20, credentialHolds: @escaping CredentialCheck = { _ in true }) {
        self.storage = storage
        self.log = EventLog(dialect: storage.dialect)
        self.feed = feed
        self.streamsPerCredential = streamsPerCredential
        self.credentialHolds = credentialHolds
    }

    /// A place among the caller's open streams, given back when the response is done with
    /// (written out, or dropped unwritten).
    final class StreamSlot: Sendable {
        let release: @Sendable () -> Void
        init(release: @escaping @Sendable () -> Void) { self.release = release }
        deinit { release() }
    }

    func takeSlot(for caller: Caller) throws -> StreamSlot {
        let name = caller.credentialID ?? caller.idempotencyScope
        let limit = streamsPerCredential
        let taken = open.withLock { open -> Bool in
            let count = open[name, default: 0]
            guard limit == 0 || count < limit else { return false }
            open[name] = count + 1
            return true
        }
        guard taken else {
            var problem = Problem(
                status: .tooManyRequests, slug: "too-many-streams", title: "Too many open streams",
                detail: "This credential has \(limit) event streams open already; close one first.")
            problem.headers[.retryAfter] = "5"
            throw problem
        }
        return StreamSlot { [self] in
            open.withLock { open in
                let left = open[name, default: 1] - 1
                open[name] = left > 0 ? left : nil
            }
        }
    }

    /// Streams open now.
    public var connectedClients: Int { clients.load(ordering: .relaxed) }

    /// Up to `limit` events the caller may see after `cursor`. `next` is the last event read
    /// (matching or not), so the next page starts exactly after it: no event is skipped or repeated.
    public func page(after cursor: EventID, filter: EventFilter, caller: Caller, limit: Int) async throws -> (items: [Event], next: EventID) {
        var items: [Event] = []
        var position = cursor
        var scanned = 0
        reading: while items.count < limit, scanned < scanLimit {
            let wanted = min(1_000, scanLimit - scanned)
            let batch = try await log.read(storage, after: position, sessionID: filter.sessionID, limit: wanted)
            for event in batch {
                position = event.id
                scanned += 1
                if event.isVisible(to: caller), filter.matches(event) {
                    items.append(event)
                    if items.count == limit { break reading }
                }
            }
            if batch.count < wanted { break }
        }
        return (items, position)
    }

    /// A Server-Sent Events response that sends every event after `start` (or, with none, from
    /// now) that the caller may see and `filter` matches, then follows the log until the client
    /// leaves or the server shuts down. `authorized`: the caller may read every event the filter
    /// matches (the session's owner module said so).
    public func stream(from start: EventID?, filter: EventFilter, caller: Caller, logger: Logger, authorized: Bool = false) async throws -> Response {
        let cursor: EventID
        if let start {
            cursor = start
        } else {
            cursor = feed.isRunning ? feed.head : try await log.head(storage)
        }
        let headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", .accelBuffering: "no",
        ]
        let slot = try takeSlot(for: caller)
        return Response(status: .ok, headers: headers, body: ResponseBody { [self] writer in
            defer { withExtendedLifetime(slot) {} }
            Gauge(label: "sessiond_sse_clients").record(clients.add(1, ordering: .relaxed).newValue)
            defer { Gauge(label: "sessiond_sse_clients").record(clients.subtract(1, ordering: .relaxed).newValue) }
            do {
                // The HTTP server waits for open responses when it shuts down: end the streams then.
                try await withGracefulShutdownHandler {
                    try await follow(from: cursor, filter: filter, caller: caller, authorized: authorized, writer: &writer)
                } onGracefulShutdown: { [feed] in
                    feed.endReaders()
                }
            } catch {
                logger.debug("event stream ended", metadata: ["error": "\(error)"])
                return
            }
            try? await writer.finish(nil)
        })
    }

    private func follow(from start: EventID, filter: EventFilter, caller: Caller, authorized: Bool, writer: inout any ResponseBodyWriter) async throws {
        var cursor = start
        try await writer.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
        var lastWrite = ContinuousClock.now
        let include: (Event) -> Bool = { filter.matches($0) && (authorized || $0.isVisible(to: caller)) }
        while true {
            var events: [Event] = []
            var caughtUp = true
            if let recent = feed.recent(after: cursor, sessionID: filter.sessionID, where: include) {
                events = recent.events
                cursor = recent.through
            } else {
                // Behind the feed's window (a resume from long ago): from the database, in pages.
                let batch = try await log.read(storage, after: cursor, sessionID: filter.sessionID, limit: 500)
                events = batch.filter(include)
                if let last = batch.last {
                    cursor = last.id
                    caughtUp = false
                }
            }
            // Once per round, after the events were read: a revocation committed before any of
            // them is seen here, and the stream ends without sending them; idle, once per tick.
            guard await credentialHolds(caller) else { return }
            if !events.isEmpty {
                var buffer = ByteBuffer()
                for event in events { Self.append(event, to: &buffer) }
                try await writer.write(buffer)
                lastWrite = ContinuousClock.now
            }
            if !caughtUp { continue }
            if ContinuousClock.now - lastWrite >= heartbeat {
                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                lastWrite = ContinuousClock.now
            }
            guard await feed.next(after: cursor, sessionID: filter.sessionID) else { return }
        }
    }

    /// One SSE message: `id:`, `event:` and `data:` (the event JSON is one line).
    static func append(_ event: Event, to buffer: inout ByteBuffer) {
        buffer.writeString("id: ")
        buffer.writeString(event.id.description)
        buffer.writeString("\nevent: ")
        buffer.writeString(event.type)
        buffer.writeString("\ndata: ")
        buffer.writeString(event.json)
        buffer.writeString("\n\n")
    }
}

struct EventPage: JSONWritable {
    var items: [Event]
    var nextCursor: String

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("items")
        writer.beginArray()
        for event in items { writer.raw(json: event.json) }
        writer.endArray()
        writer.field("next_cursor", nextCursor)
        writer.endObject()
    }
}

struct EventTypes: JSONWritable {
    var items: [(type: String, summary: String)]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("items")
        writer.beginArray()
        for item in items {
            writer.beginObject()
            writer.field("type", item.type)
            writer.field("description", item.summary)
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
    }
}
