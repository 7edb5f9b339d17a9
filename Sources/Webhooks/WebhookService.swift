import Crypto
import Foundation
import Kernel
import Logging
import Synchronization

/// Webhook endpoints as their owners manage them, and what the fan-out and the workers need.
///
/// Who may do what: an admin manages every endpoint (its own receive every event; one made with a
/// `user_id` receives that user's); an owner (or its channel key) manages its own, which receive
/// the events its `user_id` may read; any other role is refused (403). An endpoint the caller may
/// not see is a 404.
public final class WebhookService: Sendable {
    let store: WebhookStore
    let clock: WallClock
    let ids: IDGenerator
    public let configuration: WebhookConfiguration
    let knownTypes: Set<String>
    let logger: Logger
    let didCommitEvents: @Sendable () -> Void
    let guardrail: ReceiverGuard
    /// Rung when messages are queued (fan-out, replay): wakes a sending worker.
    let workers = Doorbell()
    private let box = Mutex<SecretBox?>(nil)
    private let tablesReady = Mutex<Task<Void, any Error>?>(nil)

    public init(
        storage: Storage, clock: WallClock, ids: IDGenerator, configuration: WebhookConfiguration, knownTypes: [String], logger: Logger,
        didCommitEvents: @escaping @Sendable () -> Void = {}
    ) throws(ReceiverGuard.AllowListError) {
        self.store = WebhookStore(storage: storage)
        self.clock = clock
        self.ids = ids
        self.configuration = configuration
        self.knownTypes = Set(knownTypes + WebhookEvents.types.map(\.type))
        self.logger = logger
        self.didCommitEvents = didCommitEvents
        self.guardrail = try ReceiverGuard(allowPrivate: configuration.allowPrivate, allowList: configuration.allowList)
    }

    public static let migrations = WebhookSQL.migrations

    /// What the server says once at start-up about these settings.
    public static func startupWarnings(_ configuration: WebhookConfiguration) -> [String] {
        configuration.secretKey == nil
            ? ["WEBHOOK_SECRET_KEY is not set: webhook signing secrets are sealed with a key kept in the same database, which protects nothing against a copy of it; set it (openssl rand -base64 32)"]
            : []
    }

    /// The first event the webhooks still need (events before it may be pruned).
    public func eventFloor() async throws -> EventID { try await store.eventFloor() }

    /// A new endpoint and its secret (shown in this answer only).
    public struct Created: Sendable {
        public var endpoint: WebhookEndpoint
        public var secret: String
    }

    // MARK: managing endpoints

    public func create(_ draft: EndpointDraft, userID requestedUser: String?, caller: Caller) async throws -> Created {
        try Self.authorize(caller)
        let userID: String?
        if caller.isAdmin {
            userID = requestedUser
        } else {
            if let requestedUser, requestedUser != caller.userID { throw WebhookError.forbidden("An owner makes endpoints for its own user_id only.") }
            userID = caller.userID
        }
        guard let url = draft.url else { throw WebhookError.invalid(field: "url", detail: "url is required") }
        let limit = configuration.maxEndpointsPerOwner
        if limit > 0, try await store.endpointCount(userID: userID) >= limit {
            throw WebhookError.tooManyEndpoints(limit)
        }
        let checkedURL = try await validate(url: url)
        let events = try validate(events: draft.events ?? [])
        let description = try validate(description: draft.description ?? "")
        let now = clock.now()
        let id = "whep_" + ids.make()
        let secret = WebhookSignature.newSecret()
        let endpoint = WebhookEndpoint(
            id: id, userID: userID, url: checkedURL, events: events, description: description, enabled: draft.enabled ?? true, disabledReason: nil,
            startAfter: try await store.events.head(store.storage), consecutiveFailures: 0, failingSince: nil, circuitOpenUntil: nil,
            sealedSecret: try await secrets().seal(secret, boundTo: id), sealedPreviousSecret: nil, previousSecretExpiresAt: nil, createdAt: now, updatedAt: now)
        let created = Created(endpoint: endpoint, secret: secret)
        try await store.insert(endpoint, events: [event("webhook.endpoint.created", endpoint, at: now)], answering: created)
        didCommitEvents()
        return created
    }

    public func endpoint(_ id: String, caller: Caller) async throws -> WebhookEndpoint {
        try Self.authorize(caller)
        guard let endpoint = try await store.endpoint(id), caller.isAdmin || endpoint.userID == caller.userID else { throw WebhookError.endpointNotFound(id) }
        return endpoint
    }

    public func endpoints(caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [WebhookEndpoint], next: String?) {
        try Self.authorize(caller)
        let items = try await store.endpoints(userID: caller.isAdmin ? nil : caller.userID, after: cursor, limit: limit + 1)
        return (Array(items.prefix(limit)), items.count > limit ? items[limit - 1].id : nil)
    }

    public func update(_ id: String, _ draft: EndpointDraft, caller: Caller) async throws -> WebhookEndpoint {
        let current = try await endpoint(id, caller: caller)
        var endpoint = current
        if let url = draft.url { endpoint.url = try await validate(url: url) }
        if let events = draft.events { endpoint.events = try validate(events: events) }
        if let description = draft.description { endpoint.description = try validate(description: description) }
        if let enabled = draft.enabled, enabled != endpoint.enabled {
            endpoint.enabled = enabled
            endpoint.disabledReason = nil
            if enabled {
                // A fresh start: the circuit closes and the failure clock restarts.
                endpoint.consecutiveFailures = 0
                endpoint.circuitOpenUntil = nil
                endpoint.failingSince = nil
            }
        }
        endpoint.updatedAt = max(clock.now(), Timestamp(milliseconds: current.updatedAt.milliseconds + 1))
        try await save(endpoint, readAt: current.updatedAt, type: "webhook.endpoint.updated")
        return endpoint
    }

    public func delete(_ id: String, caller: Caller) async throws {
        let endpoint = try await endpoint(id, caller: caller)
        do {
            try await store.delete(id, events: [event("webhook.endpoint.deleted", endpoint, at: clock.now())])
        } catch StorageError.conflict {
            throw WebhookError.endpointNotFound(id)
        }
        didCommitEvents()
    }

    /// A new secret; the old one keeps signing (beside it) for 24 h, so receivers can switch over.
    public func rotateSecret(_ id: String, caller: Caller) async throws -> Created {
        let current = try await endpoint(id, caller: caller)
        var endpoint = current
        let now = max(clock.now(), Timestamp(milliseconds: current.updatedAt.milliseconds + 1))
        let secret = WebhookSignature.newSecret()
        endpoint.sealedPreviousSecret = current.sealedSecret
        endpoint.previousSecretExpiresAt = Timestamp(milliseconds: now.milliseconds + configuration.previousSecretValiditySeconds * 1000)
        endpoint.sealedSecret = try await secrets().seal(secret, boundTo: id)
        endpoint.updatedAt = now
        let rotated = Created(endpoint: endpoint, secret: secret)
        try await save(endpoint, readAt: current.updatedAt, type: "webhook.endpoint.updated", answering: rotated)
        return rotated
    }

    func save(_ endpoint: WebhookEndpoint, readAt version: Timestamp, type: String, answering output: some Sendable = ()) async throws {
        do {
            try await store.update(endpoint, readAt: version, events: [event(type, endpoint, at: endpoint.updatedAt)], answering: output)
        } catch StorageError.conflict {
            throw Problem.conflict("endpoint-changed", "Endpoint \(endpoint.id) changed while this request ran; read it again and retry.")
        }
        didCommitEvents()
    }

    /// Sends a `webhook.test` event to this endpoint only (through the log, like every event).
    public func test(_ id: String, caller: Caller) async throws -> WebhookEndpoint {
        let endpoint = try await endpoint(id, caller: caller)
        let now = clock.now()
        var writer = JSONWriter(capacity: 128)
        writer.beginObject()
        writer.field("endpoint_id", endpoint.id)
        writer.field("message", "This is a test delivery from sessiond.")
        writer.endObject()
        let test = NewEvent(type: WebhookEvents.test, userID: endpoint.userID, createdAt: now, data: String(buffer: writer.buffer))
        try await store.storage.write(store.events.append([test]), answering: endpoint)
        didCommitEvents()
        return endpoint
    }

    /// Queues one event (`eventID`), or every event it receives made since `since`, again.
    public func replay(_ id: String, since: Timestamp?, eventID: String?, caller: Caller) async throws -> Int {
        let endpoint = try await endpoint(id, caller: caller)
        var queued: [Event] = []
        if let eventID {
            guard let cursor = EventID(eventID) else { throw WebhookError.invalid(field: "event_id", detail: "event_id is 32 hexadecimal digits, as events show it") }
            guard let event = try await store.events.events(store.storage, positions: [cursor.position]).first, event.id == cursor,
                endpoint.receives(event, about: Self.subject(event))
            else { throw WebhookError.eventNotFound(eventID) }
            queued = [event]
        } else if let since {
            guard var cursor = try await store.events.cursor(before: since, store.storage) else { return 0 }
            while true {
                let page = try await store.events.read(store.storage, after: cursor, limit: 1000)
                for event in page where event.createdAt >= since {
                    if endpoint.receives(event, about: Self.subject(event)) { queued.append(event) }
                }
                guard let last = page.last, page.count == 1000 else { break }
                cursor = last.id
                if queued.count > Self.replayLimit {
                    throw WebhookError.invalid(field: "since", detail: "more than \(Self.replayLimit) events since then; replay a later time first")
                }
            }
        } else {
            throw WebhookError.invalid(field: "since", detail: "give since (a time) or event_id")
        }
        try await store.requeue(endpointID: endpoint.id, events: queued, now: clock.now())
        if !queued.isEmpty { workers.ring() }
        return queued.count
    }

    static let replayLimit = 100_000

    public func deliveries(_ id: String, status: String?, cursor: String?, limit: Int, caller: Caller) async throws -> (items: [DeliveryAttempt], next: String?) {
        let endpoint = try await endpoint(id, caller: caller)
        let statusFilter: String?
        switch status?.lowercased() {
        case nil, "": statusFilter = nil
        case "succeeded", "success", "ok": statusFilter = "succeeded"
        case "failed", "failure", "error": statusFilter = "failed"
        case let other?: throw WebhookError.invalid(field: "status", detail: "\(other) is not succeeded or failed")
        }
        var before: Int64?
        if let cursor, !cursor.isEmpty {
            guard let value = Int64(cursor) else { throw WebhookError.invalid(field: "cursor", detail: "not a cursor this list gave") }
            before = value
        }
        let items = try await store.attempts(endpointID: endpoint.id, status: statusFilter, before: before, limit: limit + 1)
        return (Array(items.prefix(limit)), items.count > limit ? String(items[limit - 1].id) : nil)
    }

    /// One endpoint's figures: messages by state, attempts of the last 24 h, health.
    public struct Stats: Sendable {
        public var endpoint: WebhookEndpoint
        public var pending: Int64
        public var succeeded: Int64
        public var failed: Int64
        public var aborted: Int64
        public var attempts24h: Int64
        public var failedAttempts24h: Int64
        public var averageLatency24h: Double?
        public var maximumLatency24h: Int64?
        public var lastSuccessAt: Timestamp?
        public var lastFailureAt: Timestamp?
        public var circuit: WebhookEndpoint.Circuit
    }

    public func stats(caller: Caller) async throws -> [Stats] {
        try Self.authorize(caller)
        var endpoints: [WebhookEndpoint] = []
        var cursor: String?
        repeat {
            let page = try await store.endpoints(userID: caller.isAdmin ? nil : caller.userID, after: cursor, limit: 500)
            endpoints += page
            cursor = page.count == 500 ? page.last?.id : nil
        } while cursor != nil
        let now = clock.now()
        let ids = endpoints.map(\.id)
        let counts = try await store.messageCounts(endpointIDs: ids)
        let summaries = try await store.attemptSummaries(endpointIDs: ids, since: Timestamp(milliseconds: now.milliseconds - 86_400_000))
        return endpoints.map { endpoint in
            let count = counts[endpoint.id] ?? [:]
            let summary = summaries[endpoint.id] ?? WebhookStore.AttemptSummary()
            let attempts = summary.succeeded + summary.failed
            return Stats(
                endpoint: endpoint, pending: count["pending"] ?? 0, succeeded: count["succeeded"] ?? 0, failed: count["failed"] ?? 0, aborted: count["aborted"] ?? 0,
                attempts24h: attempts, failedAttempts24h: summary.failed,
                averageLatency24h: attempts > 0 ? Double(summary.latencyTotal) / Double(attempts) : nil, maximumLatency24h: attempts > 0 ? summary.latencyMaximum : nil,
                lastSuccessAt: summary.lastSuccess, lastFailureAt: summary.lastFailure,
                circuit: endpoint.circuit(now: now, threshold: configuration.policy.circuitThreshold))
        }
    }

    // MARK: rules

    static func authorize(_ caller: Caller) throws {
        if caller.isAdmin { return }
        guard caller.role == "owner" || caller.role == "channel", caller.userID != nil else {
            throw WebhookError.forbidden("Webhook endpoints are managed by an admin or an owner.")
        }
    }

    func validate(url text: String) async throws -> String {
        let text = text.trimmingCharacters(in: .whitespaces)
        guard text.utf8.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty
        else { throw WebhookError.invalid(field: "url", detail: "url must be an absolute http:// or https:// URL of at most 2048 bytes") }
        guard url.fragment == nil else { throw WebhookError.invalid(field: "url", detail: "url must not have a #fragment") }
        // Addresses (and names that resolve now) the guard refuses are refused here already; a name
        // that does not resolve yet is accepted and checked again at every attempt.
        var resolvable = IPAddress(host) != nil || host.lowercased() == "localhost"
        if !resolvable { resolvable = !(await ReceiverGuard.resolveWithin(host, seconds: 2)).isEmpty }
        if resolvable {
            do {
                _ = try await guardrail.check(host: host)
            } catch {
                throw WebhookError.invalid(field: "url", detail: error.description)
            }
        }
        return text
    }

    func validate(events: [String]) throws -> [String] {
        guard events.count <= 100 else { throw WebhookError.invalid(field: "events", detail: "at most 100 entries") }
        for (index, type) in events.enumerated() {
            if type == "*" || knownTypes.contains(type) { continue }
            if type.hasSuffix(".*"), knownTypes.contains(where: { $0.hasPrefix(String(type.dropLast())) }) { continue }
            throw WebhookError.invalid(field: "events[\(index)]", detail: "\(type) is not an event type or a prefix of some (GET /api/events/types lists them)")
        }
        return Array(NSOrderedSet(array: events).array as? [String] ?? events)
    }

    func validate(description: String) throws -> String {
        guard description.count <= 500 else { throw WebhookError.invalid(field: "description", detail: "at most 500 characters") }
        return description
    }

    func event(_ type: String, _ endpoint: WebhookEndpoint, at now: Timestamp, reason: String? = nil) -> NewEvent {
        var writer = JSONWriter(capacity: 160)
        writer.beginObject()
        writer.field("endpoint_id", endpoint.id)
        writer.field("description", endpoint.description)
        writer.field("enabled", endpoint.enabled)
        writer.field("events", array: endpoint.events)
        if let reason { writer.field("reason", reason) }
        writer.endObject()
        // No URL (it may carry a token) and never a secret.
        return NewEvent(type: type, userID: endpoint.userID, createdAt: now, data: String(buffer: writer.buffer))
    }

    /// The endpoint a `webhook.*` event is about (nil for other events).
    static func subject(_ event: Event) -> String? {
        guard event.type.hasPrefix("webhook."), case .object(let data) = JSONValue.parse(event.data), case .string(let id)? = data["endpoint_id"] else { return nil }
        return id
    }

    /// Returns once the webhook tables exist (the server migrates the database as it starts); the
    /// fan-out and the workers wait on one lookup, not one each.
    func waitForTables() async throws {
        let check = tablesReady.withLock { task in
            if let task { return task }
            let made = Task { try await self.lookForTables() }
            task = made
            return made
        }
        try await withTaskCancellationHandler {
            try await check.value
        } onCancel: {
            check.cancel()
        }
    }

    private func lookForTables() async throws {
        var attempt = 0
        while true {
            do {
                _ = try await store.dispatchState()
                return
            } catch {
                attempt += 1
                if attempt % 50 == 0 { logger.warning("webhooks cannot read their tables yet", metadata: ["error": "\(error)"]) }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    // MARK: secrets

    /// The box that seals secrets: `WEBHOOK_SECRET_KEY`, or a key kept in the database.
    func secrets() async throws -> SecretBox {
        if let box = box.withLock({ $0 }) { return box }
        let made: SecretBox
        if let key = configuration.secretKey {
            made = try SecretBox(base64: key)
        } else {
            let stored = try await store.setting("secret_key", orCreate: SecretBox.generateKey)
            made = try SecretBox(base64: stored)  // the start-up line said so (`startupWarnings`)
        }
        box.withLock { $0 = made }
        return made
    }

    /// The keys a delivery is signed with: the current secret, and the previous one while valid.
    func signingKeys(_ endpoint: WebhookEndpoint, now: Timestamp) async throws -> [SymmetricKey] {
        let box = try await secrets()
        do {
            var keys: [SymmetricKey] = []
            if let key = WebhookSignature.key(of: try box.open(endpoint.sealedSecret, boundTo: endpoint.id)) { keys.append(key) }
            if let previous = endpoint.sealedPreviousSecret, let until = endpoint.previousSecretExpiresAt, until > now,
                let key = WebhookSignature.key(of: try box.open(previous, boundTo: endpoint.id))
            {
                keys.append(key)
            }
            return keys
        } catch {
            throw WebhookError.secretUnreadable(endpoint.id)
        }
    }
}
