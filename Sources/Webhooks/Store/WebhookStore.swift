import Kernel

/// A message a worker holds a lease on: one event for one endpoint.
struct ClaimedMessage: Sendable, Equatable {
    var id: Int64
    var endpointID: String
    var eventPosition: Int64
    var eventID: String
    /// Attempts made before this one.
    var attempts: Int64
}

/// What one attempt came to, ready to record.
struct AttemptRecord: Sendable {
    var message: ClaimedMessage
    var eventType: String
    var outcome: DeliveryPolicy.Outcome
    var responseStatus: Int64?
    var latencyMilliseconds: Int64
    var error: String?
    var responseBody: String?
    /// The message's new status (`pending`, `succeeded`, `failed`, `aborted`) and next attempt.
    var status: String
    var nextAttemptAt: Timestamp
}

/// The webhooks module's SQL, the same on both databases (dialect differences marked).
struct WebhookStore: Sendable {
    let storage: Storage
    let events: EventLog

    init(storage: Storage) {
        self.storage = storage
        self.events = EventLog(dialect: storage.dialect)
    }

    var dialect: SQLDialect { storage.dialect }

    // MARK: endpoints

    /// Goes with every change to which endpoints receive what (see `fanOut`).
    static let endpointsChanged = SQLStatement("UPDATE webhook_dispatch SET endpoints_version = endpoints_version + 1 WHERE id = 1")

    func insert(_ endpoint: WebhookEndpoint, events newEvents: [NewEvent], answering output: some Sendable) async throws {
        let marks = Array(repeating: "?", count: 18).joined(separator: ", ")
        try await storage.write(
            [SQLStatement("INSERT INTO webhook_endpoints (\(WebhookSQL.endpointColumns)) VALUES (\(marks))", WebhookSQL.binds(endpoint)), Self.endpointsChanged]
                + events.append(newEvents), answering: output)
    }

    /// Saves what the owner may change (url, events, description, enabled, secrets), leaving the
    /// health columns the workers keep to them, guarded by the version (`updated_at`) it was read at.
    func update(_ endpoint: WebhookEndpoint, readAt version: Timestamp, events newEvents: [NewEvent], answering output: some Sendable) async throws {
        try await storage.write(
            [
                SQLStatement(
                    """
                    UPDATE webhook_endpoints SET url = ?, events = ?, description = ?, enabled = ?, disabled_reason = ?, secret = ?,
                    previous_secret = ?, previous_secret_expires_at = ?, consecutive_failures = ?, circuit_open_until = ?, failing_since = ?, updated_at = ?
                    WHERE endpoint_id = ? AND updated_at = ?
                    """,
                    [
                        .text(endpoint.url), .text(WebhookSQL.encodeEvents(endpoint.events)), .text(endpoint.description), .bool(endpoint.enabled),
                        SQLValue(endpoint.disabledReason), .text(endpoint.sealedSecret), SQLValue(endpoint.sealedPreviousSecret),
                        SQLValue(endpoint.previousSecretExpiresAt?.milliseconds), .int(endpoint.consecutiveFailures),
                        SQLValue(endpoint.circuitOpenUntil?.milliseconds), SQLValue(endpoint.failingSince?.milliseconds),
                        .int(endpoint.updatedAt.milliseconds), .text(endpoint.id), .int(version.milliseconds),
                    ], expectedChanges: 1),
                Self.endpointsChanged,
            ] + events.append(newEvents), answering: output)
    }

    func delete(_ id: String, events newEvents: [NewEvent]) async throws {
        try await storage.write(
            [
                SQLStatement("DELETE FROM webhook_attempts WHERE endpoint_id = ?", [.text(id)]),
                SQLStatement("DELETE FROM webhook_messages WHERE endpoint_id = ?", [.text(id)]),
                SQLStatement("DELETE FROM webhook_endpoints WHERE endpoint_id = ?", [.text(id)], expectedChanges: 1),
                Self.endpointsChanged,
            ] + events.append(newEvents))
    }

    func endpoint(_ id: String) async throws -> WebhookEndpoint? {
        try await storage.query("SELECT \(WebhookSQL.endpointColumns) FROM webhook_endpoints WHERE endpoint_id = ?", [.text(id)]).first.map(WebhookSQL.endpoint)
    }

    /// Endpoints in id order after `cursor`; of one user, or every one (`userID` nil).
    /// How many endpoints `userID` has (the admin's own, without a user, when nil).
    func endpointCount(userID: String?) async throws -> Int {
        let counted = if let userID {
            try await storage.query("SELECT COUNT(*) FROM webhook_endpoints WHERE user_id = ?", [.text(userID)])
        } else {
            try await storage.query("SELECT COUNT(*) FROM webhook_endpoints WHERE user_id IS NULL")
        }
        return Int(try counted[0].int(0))
    }

    func endpoints(userID: String?, after cursor: String?, limit: Int) async throws -> [WebhookEndpoint] {
        var sql = "SELECT \(WebhookSQL.endpointColumns) FROM webhook_endpoints WHERE endpoint_id > ?"
        var binds: [SQLValue] = [.text(cursor ?? "")]
        if let userID {
            sql += " AND user_id = ?"
            binds.append(.text(userID))
        }
        sql += " ORDER BY endpoint_id LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map(WebhookSQL.endpoint)
    }

    func enabledEndpoints() async throws -> [WebhookEndpoint] {
        try await storage.query("SELECT \(WebhookSQL.endpointColumns) FROM webhook_endpoints WHERE enabled = ?", [.bool(true)]).map(WebhookSQL.endpoint)
    }

    func endpoints(ids: Set<String>) async throws -> [WebhookEndpoint] {
        guard !ids.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        return try await storage.query("SELECT \(WebhookSQL.endpointColumns) FROM webhook_endpoints WHERE endpoint_id IN (\(marks))", ids.map(SQLValue.text))
            .map(WebhookSQL.endpoint)
    }

    // MARK: settings

    /// A setting, created with `make()` the first time (by whichever server gets there first).
    func setting(_ name: String, orCreate make: () -> String) async throws -> String {
        if let row = try await storage.query("SELECT value FROM webhook_settings WHERE name = ?", [.text(name)]).first { return try row.string(0) }
        try await storage.write([SQLStatement("INSERT INTO webhook_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(name), .text(make())])])
        return try await storage.query("SELECT value FROM webhook_settings WHERE name = ?", [.text(name)])[0].string(0)
    }

    // MARK: fan-out

    /// The fan-out's cursor and the version of the set of endpoints.
    func dispatchState() async throws -> (cursor: EventID, endpointsVersion: Int64) {
        let row = try await storage.query("SELECT tx_id, position, endpoints_version FROM webhook_dispatch WHERE id = 1")[0]
        return (EventID(transaction: try row.int(0), position: try row.int(1)), try row.int(2))
    }

    /// Writes the messages for events up to `to` and moves the cursor there from `from`, in one
    /// transaction; `StorageError.conflict` when another server moved it first, or when an endpoint
    /// changed since `endpointsVersion` was read (its messages would be missing: read again).
    func fanOut(_ messages: [(endpointID: String, event: Event)], from: EventID, to: EventID, endpointsVersion: Int64, now: Timestamp) async throws {
        var statements = Self.queue(messages, now: now, again: false)
        statements.append(
            SQLStatement(
                "UPDATE webhook_dispatch SET tx_id = ?, position = ? WHERE id = 1 AND tx_id = ? AND position = ? AND endpoints_version = ?",
                [.int(to.transaction), .int(to.position), .int(from.transaction), .int(from.position), .int(endpointsVersion)], expectedChanges: 1))
        try await storage.write(statements)
    }

    /// Inserts pending messages, 500 rows a statement. A message that exists already is left as
    /// it is, or (`again`, a replay) made due again: a new attempt under the same `webhook-id`.
    static func queue(_ messages: [(endpointID: String, event: Event)], now: Timestamp, again: Bool) -> [SQLStatement] {
        let conflict = again
            ? " ON CONFLICT (endpoint_id, event_position) DO UPDATE SET status = 'pending', next_attempt_at = excluded.next_attempt_at, lease_until = 0, updated_at = excluded.updated_at"
            : " ON CONFLICT (endpoint_id, event_position) DO NOTHING"
        return stride(from: 0, to: messages.count, by: 500).map { start in
            let chunk = messages[start..<min(start + 500, messages.count)]
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 6)
            for message in chunk {
                binds += [.text(message.endpointID), .int(message.event.id.position), .text(message.event.id.description), .int(now.milliseconds), .int(now.milliseconds), .int(now.milliseconds)]
            }
            return SQLStatement(
                "INSERT INTO webhook_messages (endpoint_id, event_position, event_id, status, next_attempt_at, created_at, updated_at) VALUES "
                    + Array(repeating: "(?, ?, ?, 'pending', ?, ?, ?)", count: chunk.count).joined(separator: ", ") + conflict, binds)
        }
    }

    // MARK: workers

    /// Leases up to `limit` due messages of enabled endpoints whose circuit is not open, until
    /// `leaseUntil`. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so servers claiming at once take
    /// different rows; SQLite: the single writer runs one claim at a time.
    func claim(now: Timestamp, leaseUntil: Timestamp, limit: Int) async throws -> [ClaimedMessage] {
        let lock = dialect == .postgres ? " FOR UPDATE OF m SKIP LOCKED" : ""
        let sql = """
            UPDATE webhook_messages SET lease_until = ? WHERE message_id IN (
                SELECT m.message_id FROM webhook_messages m JOIN webhook_endpoints e ON e.endpoint_id = m.endpoint_id
                WHERE m.status = 'pending' AND m.next_attempt_at <= ? AND m.lease_until <= ? AND e.enabled = ?
                AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= ?)
                ORDER BY m.next_attempt_at LIMIT ?\(lock))
            RETURNING message_id, endpoint_id, event_position, event_id, attempts
            """
        let binds: [SQLValue] = [
            .int(leaseUntil.milliseconds), .int(now.milliseconds), .int(now.milliseconds), .bool(true), .int(now.milliseconds), .int(Int64(limit)),
        ]
        let rows = try await storage.writeQuery(sql, binds)
        return try rows.map { row in
            ClaimedMessage(id: try row.int(0), endpointID: try row.string(1), eventPosition: try row.int(2), eventID: try row.string(3), attempts: try row.int(4))
        }
    }

    /// The earliest time a pending message of an enabled endpoint is due (nil: none pending).
    func nextDue() async throws -> Timestamp? {
        let rows = try await storage.query(
            """
            SELECT MIN(CASE WHEN m.lease_until > m.next_attempt_at THEN m.lease_until ELSE m.next_attempt_at END)
            FROM webhook_messages m JOIN webhook_endpoints e ON e.endpoint_id = m.endpoint_id
            WHERE m.status = 'pending' AND e.enabled = ?
            """, [.bool(true)])
        return try rows.first?.optionalInt(0).map(Timestamp.init(milliseconds:))
    }

    /// Records attempts and what they mean for their messages and endpoints, in one transaction.
    /// A message is only updated while it still holds this worker's `lease`: one that a replay
    /// queued again meanwhile (lease reset) stays queued.
    func record(
        _ attempts: [AttemptRecord], lease: Timestamp, released: [ClaimedMessage], releasedUntil: [String: Timestamp], endpointChanges: [SQLStatement],
        events newEvents: [NewEvent], now: Timestamp
    ) async throws {
        var statements: [SQLStatement] = []
        if !attempts.isEmpty {
            var binds: [SQLValue] = []
            for record in attempts {
                binds += [
                    .text(record.message.endpointID), .text(record.message.eventID), .text(record.eventType), .int(record.message.attempts + 1),
                    .text(record.outcome == .succeeded ? "succeeded" : "failed"), SQLValue(record.responseStatus), .int(record.latencyMilliseconds),
                    SQLValue(record.error), SQLValue(record.responseBody), .int(now.milliseconds),
                ]
            }
            statements.append(
                SQLStatement(
                    "INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, status, response_status, latency_ms, error, response_body, created_at) VALUES "
                        + Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: attempts.count).joined(separator: ", "), binds))
            var values: [SQLValue] = []
            for record in attempts {
                values += [.int(record.message.id), .text(record.status), .int(record.message.attempts + 1), .int(record.nextAttemptAt.milliseconds)]
            }
            statements.append(
                SQLStatement(
                    "WITH v (id, status, attempts, next_at) AS (VALUES " + Array(repeating: "(?, ?, ?, ?)", count: attempts.count).joined(separator: ", ") + ") "
                        + "UPDATE webhook_messages SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at, lease_until = 0, updated_at = ? "
                        + "FROM v WHERE webhook_messages.message_id = v.id AND webhook_messages.lease_until = ?", values + [.int(now.milliseconds), .int(lease.milliseconds)]))
        }
        for message in released {
            let until = releasedUntil[message.endpointID] ?? now
            statements.append(
                SQLStatement(
                    "UPDATE webhook_messages SET lease_until = 0, next_attempt_at = CASE WHEN next_attempt_at > ? THEN next_attempt_at ELSE ? END WHERE message_id = ? AND lease_until = ?",
                    [.int(until.milliseconds), .int(until.milliseconds), .int(message.id), .int(lease.milliseconds)]))
        }
        try await storage.write(statements + endpointChanges + events.append(newEvents))
    }

    // MARK: replay

    /// Queues these events for the endpoint again (a new attempt, the same `webhook-id`).
    func requeue(endpointID: String, events queued: [Event], now: Timestamp) async throws {
        let statements = Self.queue(queued.map { (endpointID, $0) }, now: now, again: true)
        try await storage.write(statements)
    }

    // MARK: the delivery log and stats

    func attempts(endpointID: String, status: String?, before cursor: Int64?, limit: Int) async throws -> [DeliveryAttempt] {
        var sql = """
            SELECT attempt_id, endpoint_id, event_id, event_type, attempt, status, response_status, latency_ms, error, response_body, created_at
            FROM webhook_attempts WHERE endpoint_id = ?
            """
        var binds: [SQLValue] = [.text(endpointID)]
        if let status {
            sql += " AND status = ?"
            binds.append(.text(status))
        }
        if let cursor {
            sql += " AND attempt_id < ?"
            binds.append(.int(cursor))
        }
        sql += " ORDER BY attempt_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return try await storage.query(sql, binds).map { row in
            DeliveryAttempt(
                id: try row.int(0), endpointID: try row.string(1), eventID: try row.string(2), eventType: try row.string(3), attempt: try row.int(4),
                status: try row.string(5), responseStatus: try row.optionalInt(6), latencyMilliseconds: try row.int(7), error: try row.optionalString(8),
                responseBody: try row.optionalString(9), createdAt: Timestamp(milliseconds: try row.int(10)))
        }
    }

    /// Messages by status, per endpoint.
    func messageCounts(endpointIDs: [String]) async throws -> [String: [String: Int64]] {
        guard !endpointIDs.isEmpty else { return [:] }
        let marks = Array(repeating: "?", count: endpointIDs.count).joined(separator: ", ")
        let rows = try await storage.query(
            "SELECT endpoint_id, status, COUNT(*) FROM webhook_messages WHERE endpoint_id IN (\(marks)) GROUP BY endpoint_id, status", endpointIDs.map(SQLValue.text))
        var counts: [String: [String: Int64]] = [:]
        for row in rows { counts[try row.string(0), default: [:]][try row.string(1)] = try row.int(2) }
        return counts
    }

    struct AttemptSummary: Sendable {
        var succeeded: Int64 = 0
        var failed: Int64 = 0
        var latencyTotal: Int64 = 0
        var latencyMaximum: Int64 = 0
        var lastSuccess: Timestamp?
        var lastFailure: Timestamp?
    }

    /// Attempts since `since`, per endpoint.
    func attemptSummaries(endpointIDs: [String], since: Timestamp) async throws -> [String: AttemptSummary] {
        guard !endpointIDs.isEmpty else { return [:] }
        let marks = Array(repeating: "?", count: endpointIDs.count).joined(separator: ", ")
        let rows = try await storage.query(
            """
            SELECT endpoint_id, status, COUNT(*), CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT), COALESCE(MAX(latency_ms), 0), MAX(created_at)
            FROM webhook_attempts WHERE endpoint_id IN (\(marks)) AND created_at >= ? GROUP BY endpoint_id, status
            """, endpointIDs.map(SQLValue.text) + [.int(since.milliseconds)])
        var summaries: [String: AttemptSummary] = [:]
        for row in rows {
            let id = try row.string(0)
            var summary = summaries[id] ?? AttemptSummary()
            let count = try row.int(2)
            if try row.string(1) == "succeeded" {
                summary.succeeded = count
                summary.lastSuccess = try row.optionalInt(5).map(Timestamp.init(milliseconds:))
            } else {
                summary.failed = count
                summary.lastFailure = try row.optionalInt(5).map(Timestamp.init(milliseconds:))
            }
            summary.latencyTotal += try row.int(3)
            summary.latencyMaximum = max(summary.latencyMaximum, try row.int(4))
            summaries[id] = summary
        }
        return summaries
    }

    /// The first event the webhooks still need: the next the fan-out reads for an enabled
    /// endpoint (none while there is none: a new endpoint starts at the head of the log, and a
    /// disabled one is not given what passed while it was disabled), or the event of a message
    /// still pending. Events before it may be pruned.
    func eventFloor() async throws -> EventID {
        var floor = EventID(transaction: .max, position: .max)
        if let start = try await enabledEndpoints().map(\.startAfter).min() {
            let next = max(try await dispatchState().cursor, start)
            floor = EventID(transaction: next.transaction, position: next.position + 1)
        }
        if let text = try await storage.query("SELECT MIN(event_id) FROM webhook_messages WHERE status = 'pending'").first?.optionalString(0),
            let pending = EventID(text), pending < floor
        {
            floor = pending
        }
        return floor
    }

    /// Removes delivery-log rows, and finished messages, older than `before`.
    func purge(before: Timestamp) async throws {
        try await storage.write([
            SQLStatement("DELETE FROM webhook_attempts WHERE created_at < ?", [.int(before.milliseconds)]),
            SQLStatement("DELETE FROM webhook_messages WHERE status <> 'pending' AND updated_at < ?", [.int(before.milliseconds)]),
        ])
    }
}
