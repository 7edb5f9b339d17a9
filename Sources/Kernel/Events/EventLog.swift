import Foundation
import NIOCore

/// An event a change emits, before it is stored. The store appends it to `events` in the same
/// transaction as the change, so an event exists exactly when its change committed.
public struct NewEvent: Sendable, Equatable {
    /// Dotted, module first: `delivery.package.delivered`.
    public var type: String
    /// The session (aggregate) the event belongs to, if any.
    public var sessionID: String?
    /// The event's number within its session, 1, 2, 3… without gaps, so a reader of one
    /// session can tell it missed one.
    public var seq: Int64?
    /// The session's version after the change: other servers drop cached copies older than this.
    public var version: Int64?
    /// The user whose data this is (owners and viewers of this user may read it).
    public var userID: String?
    /// Within the tenant, the scopes whose holders may read it when they see only part of it, as
    /// `AudienceTag.tag(name, value)` (`deliverer_id=d7`).
    public var audience: [String]
    public var createdAt: Timestamp
    /// The `data` object, as JSON text.
    public var data: String

    public init(
        type: String, sessionID: String? = nil, seq: Int64? = nil, version: Int64? = nil, userID: String? = nil, audience: [String] = [],
        createdAt: Timestamp, data: String
    ) {
        self.type = type
        self.sessionID = sessionID
        self.seq = seq
        self.version = version
        self.userID = userID
        self.audience = audience
        self.createdAt = createdAt
        self.data = data
    }
}

/// An audience tag: a scope's name and the value a reader must hold, `name=value`.
public enum AudienceTag {
    public static func tag(_ name: String, _ value: String) -> String { name + "=" + value }
}

/// A position in the event log. It sorts in the order readers must see events: on SQLite the
/// single writer makes the row position the commit order; on PostgreSQL positions are taken
/// before commit, so events are ordered by (transaction id, position) and read only below the
/// oldest transaction still running (see `EventLog`). As text it is 32 hex digits, so the
/// `event_id` strings sort the same way.
public struct EventID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var transaction: Int64
    public var position: Int64

    public init(transaction: Int64, position: Int64) {
        self.transaction = transaction
        self.position = position
    }

    /// Before every event.
    public static let start = EventID(transaction: 0, position: 0)

    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 32, utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }),
            let transaction = Int64(String(decoding: utf8[0..<16], as: UTF8.self), radix: 16),
            let position = Int64(String(decoding: utf8[16...], as: UTF8.self), radix: 16)
        else { return nil }
        self.init(transaction: transaction, position: position)
    }

    public var description: String { Self.hex(transaction) + Self.hex(position) }

    static func hex(_ value: Int64) -> String {
        let digits = String(UInt64(bitPattern: value), radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public static func < (lhs: EventID, rhs: EventID) -> Bool {
        (lhs.transaction, lhs.position) < (rhs.transaction, rhs.position)
    }
}

/// A stored event, as readers get it.
public struct Event: Sendable, Equatable {
    public var id: EventID
    public var type: String
    public var sessionID: String?
    public var seq: Int64?
    public var version: Int64?
    public var userID: String?
    public var audience: [String]
    public var createdAt: Timestamp
    /// The `data` object as stored (JSON text).
    public var data: String

    /// Whether `caller` may read this event: admins read everything; anyone else only events of
    /// its own tenant (`user_id`), and a caller with an `audienceScope` (a deliverer) only those
    /// whose audience names it. The audience narrows within a tenant; it never reaches another.
    public func isVisible(to caller: Caller) -> Bool {
        if caller.isAdmin { return true }
        guard let userID, caller.userID == userID else { return false }
        guard let scope = caller.audienceScope else { return true }
        guard let value = caller.scopes[scope] else { return false }
        return audience.contains(AudienceTag.tag(scope, value))
    }

    /// The event as the contract shows it: `{event_id, type, session_id, user_id, created_at, seq, data}`.
    public var json: String {
        var writer = JSONWriter(capacity: 128 + data.utf8.count)
        writer.beginObject()
        writer.field("event_id", id.description)
        writer.field("type", type)
        writer.field("session_id", sessionID)
        writer.field("user_id", userID)
        writer.field("created_at", createdAt)
        writer.field("seq", seq)
        writer.key("data")
        writer.raw(json: data)
        writer.endObject()
        return String(buffer: writer.buffer)
    }
}

/// Which events a reader wants: exact types and prefixes (`delivery.*`), one session, or all.
public struct EventFilter: Sendable, Equatable {
    public var exact: Set<String> = []
    public var prefixes: [String] = []
    public var sessionID: String?

    public init(types: [String] = [], sessionID: String? = nil) {
        for type in types {
            if type == "*" {
                continue
            } else if type.hasSuffix(".*") {
                prefixes.append(String(type.dropLast()))
            } else {
                exact.insert(type)
            }
        }
        self.sessionID = sessionID
    }

    public var matchesEveryType: Bool { exact.isEmpty && prefixes.isEmpty }

    public func matches(_ event: Event) -> Bool {
        if let sessionID, event.sessionID != sessionID { return false }
        if matchesEveryType { return true }
        return exact.contains(event.type) || prefixes.contains { event.type.hasPrefix($0) }
    }
}

/// The `events` table (kernel migration 5): append statements for stores, and the reads that
/// never skip an event.
///
/// PostgreSQL hands out identity positions when rows are inserted, not when transactions commit,
/// so a transaction that took position 11 can commit after one that took 12; a reader that saw 12
/// and moved on would skip 11. Taking positions at commit under one lock would serialize every
/// write's commit (one fsync at a time, no group commit). Instead each row carries the id of the
/// transaction that wrote it, events are read in (transaction id, position) order, and only below
/// a safe mark: the oldest transaction still running when the reader's snapshot was taken. Every
/// transaction below the mark has ended, and one that commits later has an id at or above it, so
/// it sorts after everything already read.
///
/// Transaction ids are shared by every database of a PostgreSQL server, so a long transaction in
/// another database (a `CREATE DATABASE`, a migration elsewhere) would hold the mark back too. The
/// mark therefore leaves out running transactions that `pg_stat_activity` shows belong to another
/// database (that can only ever be true of a transaction that is not ours; one it cannot place, it
/// keeps). What remains is the price: a long write transaction in sessiond's own database delays
/// readers until it ends; it never makes them skip. SQLite has one writer, so position order is
/// commit order and the transaction id is always 0.
public struct EventLog: Sendable {
    public let dialect: SQLDialect

    public init(dialect: SQLDialect) { self.dialect = dialect }

    static let columns = "position, tx_id, type, session_id, seq, version, user_id, audience, created_at, data"

    /// The statement that appends `events` (nothing for none), for the transaction of the change.
    public func append(_ events: [NewEvent]) -> [SQLStatement] {
        guard !events.isEmpty else { return [] }
        let transaction = dialect == .postgres ? "pg_current_xact_id()::text::bigint" : "0"
        var binds: [SQLValue] = []
        binds.reserveCapacity(events.count * 9)
        var rows: [String] = []
        for event in events {
            rows.append("(\(transaction), ?, ?, ?, ?, ?, ?, ?, ?)")
            binds += [
                .text(event.type), SQLValue(event.sessionID), event.seq.map(SQLValue.int) ?? .null, event.version.map(SQLValue.int) ?? .null,
                SQLValue(event.userID), .text(Self.audienceText(event.audience)), .int(event.createdAt.milliseconds),
                .text(event.data),
            ]
        }
        return [
            SQLStatement(
                "INSERT INTO events (tx_id, type, session_id, seq, version, user_id, audience, created_at, data) VALUES "
                    + rows.joined(separator: ", "), binds)
        ]
    }

    /// Erases what the events of these sessions say (personal data a module must forget): their
    /// `data` becomes `{"erased":true}` and they no longer name the session. Their ids and types
    /// stay, so cursors and counts still hold.
    public func erase(sessionIDs: [String]) -> [SQLStatement] {
        guard !sessionIDs.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: sessionIDs.count).joined(separator: ", ")
        return [SQLStatement("UPDATE events SET data = '{\"erased\":true}', session_id = NULL, user_id = NULL WHERE session_id IN (\(marks))", sessionIDs.map(SQLValue.text))]
    }

    /// One batch of the retention sweep: events made before `cutoff` and positioned before `floor`
    /// (what no reader that keeps a cursor still needs), at most `limit`, deleted; a row returned
    /// per event.
    public func pruneBatch(cutoff: Timestamp, before floor: EventID, limit: Int) -> (sql: String, binds: [SQLValue]) {
        switch dialect {
        case .sqlite:
            return (
                "DELETE FROM events WHERE position IN (SELECT position FROM events WHERE created_at < ? AND position < ? ORDER BY position LIMIT ?) RETURNING 1",
                [.int(cutoff.milliseconds), .int(floor.position), .int(Int64(limit))])
        case .postgres:
            return (
                """
                DELETE FROM events WHERE position IN (SELECT position FROM events WHERE created_at < ? AND (tx_id, position) < (?, ?)
                ORDER BY tx_id, position LIMIT ?) RETURNING 1
                """,
                [.int(cutoff.milliseconds), .int(floor.transaction), .int(floor.position), .int(Int64(limit))])
        }
    }

    /// A JSON array of strings, so a tag is read back whole whatever it holds (the first
    /// version wrote tags space-separated: those rows are still read as such).
    static func audienceText(_ tags: [String]) -> String {
        guard !tags.isEmpty else { return "" }
        var writer = JSONWriter(capacity: 32 * tags.count)
        writer.beginArray()
        for tag in tags { writer.string(tag) }
        writer.endArray()
        return String(buffer: writer.buffer)
    }

    static func audience(stored text: String) -> [String] {
        guard text.hasPrefix("[") else { return text.split(separator: " ").map(String.init) }
        guard case .array(let items) = JSONValue.parse(text) else { return [] }
        return items.compactMap { if case .string(let tag) = $0 { tag } else { nil } }
    }

    /// Events after `cursor` that every reader may now see, in order, at most `limit`, optionally
    /// of one session only.
    public func readQuery(after cursor: EventID, sessionID: String?, limit: Int) -> (String, [SQLValue]) {
        var sql = "SELECT \(Self.columns) FROM events WHERE "
        var binds: [SQLValue] = []
        if let sessionID {
            sql += "session_id = ? AND "
            binds.append(.text(sessionID))
        }
        switch dialect {
        case .sqlite:
            sql += "position > ? ORDER BY position LIMIT ?"
            binds += [.int(cursor.position), .int(Int64(limit))]
        case .postgres:
            sql = Self.safeMark + sql + """
                (tx_id, position) > (?, ?) AND tx_id < (SELECT below FROM mark)
                ORDER BY tx_id, position LIMIT ?
                """
            binds += [.int(cursor.transaction), .int(cursor.position), .int(Int64(limit))]
        }
        return (sql, binds)
    }

    /// The position of the newest readable event (`EventID.start` when there is none).
    public var headQuery: String {
        switch dialect {
        case .sqlite: "SELECT 0, COALESCE(MAX(position), 0) FROM events"
        case .postgres:
            Self.safeMark + "SELECT tx_id, position FROM events WHERE tx_id < (SELECT below FROM mark) ORDER BY tx_id DESC, position DESC LIMIT 1"
        }
    }

    /// PostgreSQL: the mark, from `sessiond_event_mark()` (migration 5): the oldest transaction
    /// running at this statement's snapshot that could be writing to this database (see the
    /// type's comment), or the snapshot's xmax when there is none. A PL/pgSQL function, so its
    /// plan is made once per connection: written inline the query took 1.5 ms to plan.
    static let safeMark = "WITH mark AS (SELECT sessiond_event_mark() AS below) "

    static let markFunction = """
        CREATE FUNCTION sessiond_event_mark() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
        DECLARE
            snap pg_snapshot := pg_current_snapshot();
            mark bigint;
        BEGIN
            IF pg_snapshot_xmin(snap) = pg_snapshot_xmax(snap) THEN
                RETURN pg_snapshot_xmax(snap)::text::bigint;  -- nothing running
            END IF;
            -- pg_stat_activity shows 32-bit ids; the snapshot 64-bit ones.
            SELECT MIN(x::text::bigint) INTO mark FROM pg_snapshot_xip(snap) AS x
            WHERE (x::text::bigint % 4294967296) NOT IN (
                SELECT backend_xid::text::bigint FROM pg_stat_activity
                WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database());
            RETURN COALESCE(mark, pg_snapshot_xmax(snap)::text::bigint);
        END
        $$
        """

    public func read(_ storage: Storage, after cursor: EventID, sessionID: String? = nil, limit: Int) async throws -> [Event] {
        let (sql, binds) = readQuery(after: cursor, sessionID: sessionID, limit: limit)
        return try await storage.query(sql, binds).map(Self.event)
    }

    /// The events at these positions (any order; missing ones are left out).
    public func events(_ storage: Storage, positions: [Int64]) async throws -> [Event] {
        guard !positions.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: positions.count).joined(separator: ", ")
        return try await storage.query("SELECT \(Self.columns) FROM events WHERE position IN (\(marks))", positions.map(SQLValue.int)).map(Self.event)
    }

    /// Where to start reading to see the events made at or after `time`: just before the first
    /// of them (nil when there is none).
    public func cursor(before time: Timestamp, _ storage: Storage) async throws -> EventID? {
        guard let row = try await storage.query("SELECT tx_id, position FROM events WHERE created_at >= ? ORDER BY created_at, position LIMIT 1", [.int(time.milliseconds)]).first
        else { return nil }
        return EventID(transaction: try row.int(0), position: try row.int(1) - 1)
    }

    public func head(_ storage: Storage) async throws -> EventID {
        guard let row = try await storage.query(headQuery).first else { return .start }
        return EventID(transaction: try row.int(0), position: try row.int(1))
    }

    static func event(_ row: SQLRow) throws -> Event {
        Event(
            id: EventID(transaction: try row.int(1), position: try row.int(0)), type: try row.string(2), sessionID: try row.optionalString(3),
            seq: try row.optionalInt(4), version: try row.optionalInt(5), userID: try row.optionalString(6),
            audience: audience(stored: try row.string(7)), createdAt: Timestamp(milliseconds: try row.int(8)),
            data: try row.string(9))
    }

    public static let migrations = [migration]

    static let migration = Migration(
        version: 5, name: "event log",
        shared: [],
        sqlite: [
            """
            CREATE TABLE events (
                position INTEGER PRIMARY KEY AUTOINCREMENT,
                tx_id BIGINT NOT NULL DEFAULT 0,
                type TEXT NOT NULL,
                session_id TEXT,
                seq BIGINT,
                version BIGINT,
                user_id TEXT,
                audience TEXT NOT NULL DEFAULT '',
                created_at BIGINT NOT NULL,
                data TEXT NOT NULL
            )
            """,
            // The position is the rowid: one index (by session) is all SQLite needs.
            "CREATE INDEX events_session ON events (session_id, position)",
        ],
        postgres: [
            """
            CREATE TABLE events (
                position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                tx_id BIGINT NOT NULL,
                type TEXT NOT NULL,
                session_id TEXT,
                seq BIGINT,
                version BIGINT,
                user_id TEXT,
                audience TEXT NOT NULL DEFAULT '',
                created_at BIGINT NOT NULL,
                data TEXT NOT NULL
            )
            """,
            "CREATE INDEX events_session ON events (session_id, tx_id, position)",
            "CREATE INDEX events_tx_position ON events (tx_id, position)",
            markFunction,
        ])
}
