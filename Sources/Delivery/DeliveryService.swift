import Foundation
import Kernel
import NIOCore

/// The delivery sessions service: every rule runs here (through `DeliveryAggregate`'s rules inside
/// the store's write transaction); handlers only decode, call, encode.
public struct DeliveryService: Sendable {
    let store: DeliveryStore
    let clock: WallClock
    let ids: IDGenerator
    /// `GET /api/sessions/{id}` answers as encoded bytes, keyed by the version every write bumps.
    let documents: VersionedCache<ByteBuffer>

    public init(store: DeliveryStore, clock: WallClock, ids: IDGenerator, documentCacheCapacity: Int = 1024) {
        self.store = store
        self.clock = clock
        self.ids = ids
        self.documents = VersionedCache(capacity: documentCacheCapacity)
    }

    public static var migrations: [Migration] { DeliverySQL.migrations }

    /// The store of delivery sessions on `storage` (the kernel's aggregate store with this module's schema).
    public static func makeStore(
        _ storage: Storage, cacheCapacity: Int = 4096, readStaleness: Duration = .seconds(1), didCommitEvents: @escaping @Sendable () -> Void = {}
    ) -> DeliveryStore {
        DeliveryStore(storage: storage, schema: DeliverySchema(), cacheCapacity: cacheCapacity, readStaleness: readStaleness, didCommitEvents: didCommitEvents)
    }

    /// Drops cached sessions that events show were changed (by another server) since they were read.
    public func invalidate(by events: [Event]) {
        for event in events where event.type.hasPrefix("delivery.") {
            if let sessionID = event.sessionID, let version = event.version { store.invalidate(sessionID, below: version) }
        }
    }

    // MARK: writes

    /// Opens a session. `alongside` statements commit in the same transaction (what a bot
    /// records of the message that asked for it).
    public func create(userID: String, name: String?, caller: Caller, alongside: (DeliverySession) -> [SQLStatement] = { _ in [] }) async throws -> DeliverySession {
        guard PersonID.isValid(userID) else {
            throw DeliveryError.invalid(field: "user_id", detail: "user_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ + -.")
        }
        let name = name.flatMap(DeliveryAggregate.trimmedOrNil)
        if let name, name.count > 200 { throw DeliveryError.invalid(field: "name", detail: "name is longer than 200 characters.") }
        try DeliveryAccess.authorizeCreate(caller, userID: userID)
        let aggregate = DeliveryAggregate.new(id: ids.make(), userID: userID, name: name, at: clock.now(), actor: caller.id)
        try await store.create(aggregate, output: aggregate.session, alongside: alongside(aggregate.session))
        return aggregate.session
    }

    /// Adds packages (at most `limit` in one call: 1,000 over HTTP; an import job passes more).
    /// `alongside` statements commit in the same transaction (a submission's status).
    public func addPackages(
        _ sessionID: String, _ packages: [NewPackage], caller: Caller, limit: Int = 1000,
        alongside: @escaping @Sendable (AddPackagesOutcome) -> [SQLStatement] = { _ in [] }
    ) async throws -> AddPackagesOutcome {
        let (clock, ids) = (clock, ids)
        return try await store.update(sessionID, alongside: alongside, { aggregate in
            try aggregate.authorize(caller, .manage)
            return try aggregate.addPackages(packages, ids: ids.make, at: clock.now(), actor: caller.id, limit: limit)
        }, output: { outcome, _ in outcome })
    }

    /// Removes a package; answers the removed package's id.
    @discardableResult
    public func removePackage(_ sessionID: String, packageID: String, caller: Caller) async throws -> String {
        let clock = clock
        return try await store.update(sessionID, { aggregate in
            try aggregate.authorize(caller, .manage)
            try aggregate.removePackage(packageID, at: clock.now(), actor: caller.id)
        }, output: { _, _ in packageID })
    }

    public func reuse(
        _ sessionID: String, userID: String, caller: Caller, alongside: @escaping @Sendable (DeliverySession) -> [SQLStatement] = { _ in [] }
    ) async throws -> DeliverySession {
        guard DeliveryAggregate.trimmedOrNil(userID) != nil else {
            throw DeliveryError.invalid(field: "user_id", detail: "user_id is required.")
        }
        let clock = clock
        return try await store.update(sessionID, alongside: alongside, { aggregate in
            try aggregate.authorize(caller, .manage)
            try aggregate.reuse(by: userID, at: clock.now(), actor: caller.id)
        }, output: { _, aggregate in aggregate.session })
    }

    public func start(
        _ sessionID: String, deliverers: [NewDeliverer], assignments: [String: String], caller: Caller,
        alongside: @escaping @Sendable (DeliverySession) -> [SQLStatement] = { _ in [] }
    ) async throws -> DeliverySession {
        let clock = clock
        return try await store.update(sessionID, alongside: alongside, { aggregate in
            try aggregate.authorize(caller, .manage)
            try aggregate.start(deliverers: deliverers, assignments: assignments, at: clock.now(), actor: caller.id)
        }, output: { _, aggregate in aggregate.session })
    }

    public struct MarkOutcome: Sendable {
        public var package: Package
        public var deliverer: SessionDeliverer?
        public var session: DeliverySession
    }

    /// Marks a package picked up, delivered or failed. `alongside` statements commit in the same
    /// transaction (a scan attempt that caused the mark).
    public func mark(
        _ sessionID: String, _ mark: DeliveryMark, _ reference: PackageReference, delivererID: String, reason: String?, caller: Caller,
        alongside: @escaping @Sendable (MarkOutcome) -> [SQLStatement] = { _ in [] }
    ) async throws -> MarkOutcome {
        let clock = clock
        return try await store.update(sessionID, alongside: alongside, { aggregate in
            try aggregate.authorize(caller, .mark(delivererID: delivererID))
            return try aggregate.mark(mark, reference, by: delivererID, reason: reason, at: clock.now(), actor: caller.id)
        }, output: { package, aggregate in
            MarkOutcome(package: package, deliverer: aggregate.deliverer(id: package.assignedDelivererID ?? ""), session: aggregate.session)
        })
    }

    public func reassign(_ sessionID: String, packageID: String, to delivererID: String, caller: Caller) async throws -> Package {
        let clock = clock
        return try await store.update(sessionID, { aggregate in
            try aggregate.authorize(caller, .manage)
            return try aggregate.reassign(packageID, to: delivererID, at: clock.now(), actor: caller.id)
        }, output: { package, _ in package })
    }

    public enum Transition: Sendable { case pause, resume, complete, archive }

    public func transition(
        _ sessionID: String, _ transition: Transition, caller: Caller, alongside: @escaping @Sendable (DeliverySession) -> [SQLStatement] = { _ in [] }
    ) async throws -> DeliverySession {
        let clock = clock
        return try await store.update(sessionID, alongside: alongside, { aggregate in
            try aggregate.authorize(caller, .manage)
            let now = clock.now()
            switch transition {
            case .pause: try aggregate.pause(at: now, actor: caller.id)
            case .resume: try aggregate.resume(at: now, actor: caller.id)
            case .complete: try aggregate.complete(at: now, actor: caller.id)
            case .archive: try aggregate.archive(at: now, actor: caller.id)
            }
        }, output: { _, aggregate in aggregate.session })
    }

    /// The `{added, duplicates}` answer of `addPackages` as JSON text (the HTTP answer's shape).
    public static func json(_ outcome: AddPackagesOutcome) -> String {
        String(buffer: JSONResponse.encode(AddPackagesResponse(added: outcome.added, duplicates: outcome.duplicates), capacity: 256 * (outcome.added.count + 1)))
    }

    // MARK: reads

    /// The session with everything linked, if `caller` may see it (else a 404, as a missing one).
    public func session(_ sessionID: String, caller: Caller) async throws -> DeliveryAggregate {
        guard let aggregate = try await store.load(sessionID) else { throw DeliveryError.sessionNotFound(sessionID) }
        try aggregate.authorize(caller, .read)
        return aggregate
    }

    /// The full session document as JSON bytes and its version (for the ETag). Encoded once per version.
    public func document(_ sessionID: String, caller: Caller) async throws -> (body: ByteBuffer, version: Int64) {
        let aggregate = try await session(sessionID, caller: caller)
        if let cached = documents.get(sessionID), cached.version == aggregate.version {
            return (cached.value, cached.version)
        }
        let document = SessionDocument(aggregate: aggregate)
        let body = JSONResponse.encode(document, capacity: document.estimatedSize)
        documents.publish(sessionID, version: aggregate.version, value: body)
        return (body, aggregate.version)
    }

    /// A user's sessions, newest first: one status, or every status but `archived`; with `barcode`,
    /// only those holding a package whose barcode contains that text.
    public func sessions(
        userID: String, status: SessionStatus?, barcode: String? = nil, cursor: String?, limit: Int, caller: Caller
    ) async throws -> (items: [DeliverySession], next: String?) {
        try DeliveryAccess.authorizeListing(caller, userID: userID)
        let (sql, binds) = DeliverySQL.listQuery(userID: userID, status: status, barcode: barcode, after: cursor, limit: limit + 1)
        let rows = try await store.storage.query(sql, binds).map(DeliverySQL.session)
        let items = Array(rows.prefix(limit))
        return (items, rows.count > limit ? items.last?.id : nil)
    }

    public func audit(_ sessionID: String, after cursor: Int64?, limit: Int, caller: Caller) async throws -> (items: [AuditEntry], next: String?) {
        let aggregate = try await session(sessionID, caller: caller)
        let remaining = aggregate.audit.filter { $0.seq > (cursor ?? 0) }
        let items = Array(remaining.prefix(limit))
        return (items, remaining.count > limit ? items.last.map { String($0.seq) } : nil)
    }

    /// How many sessions are in each state (for `/metrics`).
    public func countsByStatus() async throws -> [SessionStatus: Int] {
        let rows = try await store.storage.query("SELECT status, COUNT(*) FROM delivery_sessions GROUP BY status")
        var counts = Dictionary(uniqueKeysWithValues: SessionStatus.allCases.map { ($0, 0) })
        for row in rows {
            if let status = SessionStatus(rawValue: try row.string(0)) { counts[status] = Int(try row.int(1)) }
        }
        return counts
    }

    public struct Verification: Sendable, Equatable {
        public var valid: Bool
        public var entries: Int
        public var firstBadSeq: Int64?
    }

    /// Recomputes the hash chain from the rows in the database (not from memory).
    public func verifyAudit(_ sessionID: String, caller: Caller) async throws -> Verification {
        _ = try await session(sessionID, caller: caller)
        // The rows as stored, read from the database itself (never from a cache).
        let entries = try await store.storage.query(DeliverySQL.auditQuery, [.text(sessionID)]).map(DeliverySQL.auditEntry)
        var previous = AuditChain.genesis
        for (index, entry) in entries.enumerated() {
            let expected = AuditChain.hash(
                previous: previous, stream: sessionID, seq: entry.seq, action: entry.action, actorID: entry.actorID,
                createdAt: entry.createdAt, details: entry.details)
            if entry.seq != Int64(index + 1) || entry.prevHash != previous || entry.hash != expected {
                return Verification(valid: false, entries: entries.count, firstBadSeq: entry.seq)
            }
            previous = entry.hash
        }
        return Verification(valid: true, entries: entries.count, firstBadSeq: nil)
    }
}
