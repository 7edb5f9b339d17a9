import Kernel

/// The webhooks module's tables (migrations 301–399; the events range).
///
/// - `webhook_endpoints`: receivers, their sealed secrets and their health (consecutive
///   failures, failing since, circuit open until).
/// - `webhook_dispatch`: one row, the fan-out cursor (events up to it have their messages) and
///   the version of the set of endpoints.
/// - `webhook_messages`: one row per (endpoint, event) to send, written with the cursor's move
///   in one transaction, so a crash loses none; `lease_until` is how workers on every server
///   share them without sending one twice.
/// - `webhook_attempts`: the delivery log (each attempt, its answer's status and first bytes).
enum WebhookSQL {
    static let migrations = [
        Migration(
            version: 301, name: "webhooks: endpoints, dispatch cursor, messages, attempts",
            shared: [
                """
                CREATE TABLE webhook_endpoints (
                    endpoint_id TEXT PRIMARY KEY,
                    user_id TEXT,
                    url TEXT NOT NULL,
                    events TEXT NOT NULL,
                    description TEXT NOT NULL DEFAULT '',
                    enabled BOOLEAN NOT NULL,
                    disabled_reason TEXT,
                    start_tx BIGINT NOT NULL,
                    start_position BIGINT NOT NULL,
                    consecutive_failures BIGINT NOT NULL DEFAULT 0,
                    failing_since BIGINT,
                    circuit_open_until BIGINT,
                    secret TEXT NOT NULL,
                    previous_secret TEXT,
                    previous_secret_expires_at BIGINT,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, endpoint_id)",
                // `endpoints_version` counts changes to which endpoints receive what: the fan-out
                // moves the cursor only if no such change committed since it read the endpoints.
                "CREATE TABLE webhook_dispatch (id INTEGER PRIMARY KEY, tx_id BIGINT NOT NULL, position BIGINT NOT NULL, endpoints_version BIGINT NOT NULL DEFAULT 0)",
                "CREATE TABLE webhook_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
                // Replays look events up by time.
                "CREATE INDEX events_created_at ON events (created_at)",
            ],
            sqlite: ["INSERT INTO webhook_dispatch (id, tx_id, position) SELECT 1, 0, COALESCE(MAX(position), 0) FROM events"]
                + queueTables(id: "INTEGER PRIMARY KEY AUTOINCREMENT") + indexes,
            postgres: [
                // Starts at the log's head: what was committed before webhooks existed is not sent.
                "INSERT INTO webhook_dispatch (id, tx_id, position) SELECT 1, COALESCE(MAX(tx_id), 0), COALESCE(MAX(position), 0) FROM events"
            ] + queueTables(id: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY") + indexes),
        // How many times in a row the circuit opened (its first opening, then each failed probe).
        Migration(version: 302, name: "webhooks: the circuit's openings", shared: ["ALTER TABLE webhook_endpoints ADD COLUMN circuit_opens BIGINT NOT NULL DEFAULT 0"]),
    ]

    /// Messages and attempts; only their generated ids differ between the databases.
    static func queueTables(id: String) -> [String] {
        [
            """
            CREATE TABLE webhook_messages (
                message_id \(id),
                endpoint_id TEXT NOT NULL,
                event_position BIGINT NOT NULL,
                event_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                lease_until BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (endpoint_id, event_position)
            )
            """,
            """
            CREATE TABLE webhook_attempts (
                attempt_id \(id),
                endpoint_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                attempt BIGINT NOT NULL,
                status TEXT NOT NULL,
                response_status BIGINT,
                latency_ms BIGINT NOT NULL,
                error TEXT,
                response_body TEXT,
                created_at BIGINT NOT NULL
            )
            """,
        ]
    }

    static let indexes = [
        // Workers claim due pending messages; a partial index holds only those.
        "CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at) WHERE status = 'pending'",
        "CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint_id, status)",
        "CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, attempt_id)",
        "CREATE INDEX webhook_attempts_created ON webhook_attempts (created_at)",
    ]

    static let endpointColumns = """
        endpoint_id, user_id, url, events, description, enabled, disabled_reason, start_tx, start_position, consecutive_failures, \
        failing_since, circuit_open_until, secret, previous_secret, previous_secret_expires_at, created_at, updated_at, circuit_opens
        """

    static func endpoint(_ row: SQLRow) throws -> WebhookEndpoint {
        WebhookEndpoint(
            id: try row.string(0), userID: try row.optionalString(1), url: try row.string(2), events: decodeEvents(try row.string(3)),
            description: try row.string(4), enabled: try row.bool(5), disabledReason: try row.optionalString(6),
            startAfter: EventID(transaction: try row.int(7), position: try row.int(8)), consecutiveFailures: try row.int(9),
            failingSince: try row.optionalInt(10).map(Timestamp.init(milliseconds:)), circuitOpenUntil: try row.optionalInt(11).map(Timestamp.init(milliseconds:)),
            circuitOpens: try row.int(17), sealedSecret: try row.string(12), sealedPreviousSecret: try row.optionalString(13),
            previousSecretExpiresAt: try row.optionalInt(14).map(Timestamp.init(milliseconds:)),
            createdAt: Timestamp(milliseconds: try row.int(15)), updatedAt: Timestamp(milliseconds: try row.int(16)))
    }

    static func binds(_ endpoint: WebhookEndpoint) -> [SQLValue] {
        [
            .text(endpoint.id), SQLValue(endpoint.userID), .text(endpoint.url), .text(encodeEvents(endpoint.events)), .text(endpoint.description),
            .bool(endpoint.enabled), SQLValue(endpoint.disabledReason), .int(endpoint.startAfter.transaction), .int(endpoint.startAfter.position),
            .int(endpoint.consecutiveFailures), SQLValue(endpoint.failingSince?.milliseconds), SQLValue(endpoint.circuitOpenUntil?.milliseconds),
            .text(endpoint.sealedSecret), SQLValue(endpoint.sealedPreviousSecret), SQLValue(endpoint.previousSecretExpiresAt?.milliseconds),
            .int(endpoint.createdAt.milliseconds), .int(endpoint.updatedAt.milliseconds), .int(endpoint.circuitOpens),
        ]
    }

    static func encodeEvents(_ events: [String]) -> String {
        JSONValue.array(events.map(JSONValue.string)).canonicalText()
    }

    static func decodeEvents(_ text: String) -> [String] {
        guard case .array(let items) = JSONValue.parse(text) else { return [] }
        return items.compactMap { if case .string(let type) = $0 { type } else { nil } }
    }
}
