import Foundation
import Kernel
import NIOCore
import Logging
import Synchronization

/// Settings of the access module, parsed once at start by the composition root.
public struct AccessConfiguration: Sendable {
    /// `ADMIN_API_KEY` (32+ characters); when nil, a key is generated on first start and printed once.
    public var adminKey: String?
    /// Where people reach this server (`PUBLIC_BASE_URL`): login links point there, and an https
    /// URL makes the login cookie `Secure`. Nil: `http://HOST:PORT` of the request.
    public var publicBaseURL: String?
    public var loginLinkLifetimeSeconds: Int64 = 600
    /// Absolute lifetime of a login session (`LOGIN_SESSION_TTL`).
    public var loginSessionLifetimeSeconds: Int64 = 86_400
    /// A login session unused this long ends (`LOGIN_IDLE_TIMEOUT`).
    public var loginIdleTimeoutSeconds: Int64 = 7_200
    /// Per key: sustained requests per second and burst (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`; 0 turns it off).
    public var rateLimitPerSecond: Double = 100
    public var rateLimitBurst: Int = 200
    /// Failed authentications per client address: sustained per second and burst.
    public var authFailuresPerSecond: Double = 5
    public var authFailureBurst: Int = 300
    /// How long a worker holds a submission before another may take it over (`SUBMISSION_LEASE_SECONDS`).
    public var submissionLeaseSeconds: Int64 = 60

    public init() {}

    public static let cookieName = "sessiond_session"

    var cookieIsSecure: Bool { publicBaseURL?.lowercased().hasPrefix("https://") ?? false }
}

/// What a request presented to prove who it is.
public enum Credential: Sendable, Equatable {
    case none
    case key(String)
    case cookie(String)
    /// An `Authorization` header that is not `Bearer <token>`.
    case malformedHeader
}

/// API keys, the admin key, login links and sessions, and the auth audit: the rules of access.
public final class AccessService: Sendable {
    let store: AccessStore
    let clock: WallClock
    let ids: IDGenerator
    let logger: Logger
    public let configuration: AccessConfiguration
    private let adminHash = Mutex<String?>(nil)
    /// `last_used_at` per key id, kept here and written in batches by `AccessHousekeeping`.
    private let lastUsed = Mutex<[String: Int64]>([:])
    public let keyLimiter: RateLimiter
    public let failureLimiter: RateLimiter
    /// Credentials are cached and checked against the revocation epoch that concurrent requests
    /// read together: on PostgreSQL a round trip per request cost most of a request, and on SQLite
    /// it halved authentication's CPU again (docs/BENCHMARKS.md). Nil reads every row each time.
    private let watch: RevocationWatch?
    private let cache = Mutex<CredentialCache>(CredentialCache())
    /// Credentials live streams hold, by id: the revocation epoch at which each was last found valid.
    private let holding = Mutex<[String: Int64]>([:])

    struct CredentialCache {
        var epoch: Int64 = -1
        var keys: [String: APIKey] = [:]
        var sessions: [String: LoginSession] = [:]
        static let capacity = 50_000

        /// Forgets everything when the epoch moved (a revocation somewhere) or the cache is full.
        mutating func align(to epoch: Int64) {
            if epoch != self.epoch || keys.count + sessions.count > Self.capacity {
                keys.removeAll()
                sessions.removeAll()
                self.epoch = epoch
            }
        }
    }

    /// Events of key changes go to the log in the change's transaction; this wakes its readers.
    let events: EventLog
    let didCommitEvents: @Sendable () -> Void

    public init(
        storage: Storage, clock: WallClock, ids: IDGenerator, configuration: AccessConfiguration, logger: Logger,
        didCommitEvents: @escaping @Sendable () -> Void = {}
    ) {
        self.store = AccessStore(storage: storage)
        self.events = EventLog(dialect: storage.dialect)
        self.didCommitEvents = didCommitEvents
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.configuration = configuration
        self.keyLimiter = RateLimiter(perSecond: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst)
        self.failureLimiter = RateLimiter(perSecond: configuration.authFailuresPerSecond, burst: configuration.authFailureBurst)
        let store = self.store
        self.watch = RevocationWatch { try await store.epoch() }
    }

    /// The key stored under `hash`: from the cache when no revocation happened since it was read.
    func storedKey(hash: String) async throws -> APIKey? {
        try await cached(hash, in: \.keys) { try await store.key(hash: hash) }
    }

    /// The login session stored under `hash`, cached like keys; `fresh` skips the cache.
    func storedSession(hash: String, fresh: Bool = false) async throws -> LoginSession? {
        try await cached(hash, in: \.sessions, fresh: fresh) { try await store.loginSession(hash: hash) }
    }

    /// A credential's row, from the cache unless the epoch moved since it was read. The row is read after the epoch, so a revocation committed after that read bumps the
    /// epoch again and the next request reads the row anew.
    private func cached<Row: Sendable>(
        _ hash: String, in table: WritableKeyPath<CredentialCache, [String: Row]>, fresh: Bool = false,
        load: () async throws -> Row?
    ) async throws -> Row? {
        guard let watch else { return try await load() }
        let epoch = try await watch.current()
        if !fresh, let hit = cache.withLock({ cache -> Row? in
            cache.align(to: epoch)
            return cache[keyPath: table][hash]
        }) {
            return hit
        }
        guard let row = try await load() else { return nil }
        cache.withLock { cache in if cache.epoch == epoch { cache[keyPath: table][hash] = row } }
        return row
    }

    func rememberTouch(hash: String, at now: Timestamp) {
        cache.withLock { cache in cache.sessions[hash]?.lastSeenAt = now }
    }

    public static var migrations: [Migration] { AccessSQL.migrations }

    /// What the access module keeps for a while: the auth audit (`AUDIT_RETENTION`), used or
    /// expired login links and ended login sessions (`loginSeconds`, 7 days), finished
    /// submissions (`SUBMISSION_RETENTION`).
    public func retentionRules(auditSeconds: Int64, loginSeconds: Int64, submissionSeconds: Int64) -> [RetentionRule] {
        let idle = configuration.loginIdleTimeoutSeconds
        return [
            RetentionRule("audits", keepSeconds: auditSeconds) { cutoff, limit in AccessSQL.pruneAudits(cutoff: cutoff, limit: limit) },
            RetentionRule("login_links", keepSeconds: loginSeconds) { cutoff, limit in AccessSQL.pruneLoginLinks(cutoff: cutoff, limit: limit) },
            RetentionRule("login_sessions", keepSeconds: loginSeconds) { cutoff, limit in
                AccessSQL.pruneLoginSessions(cutoff: cutoff, idleSeconds: idle, limit: limit)
            },
            RetentionRule("submissions", keepSeconds: submissionSeconds) { cutoff, limit in AccessSQL.pruneSubmissions(cutoff: cutoff, limit: limit) },
        ]
    }

    // MARK: the admin key

    static let adminHashSetting = "admin_key_hash"

    /// Loads the admin key's hash: `ADMIN_API_KEY` when set (its hash replaces any stored one), else
    /// the stored hash, else a new key whose hash is stored and which is returned to be shown once.
    public func bootstrapAdminKey() async throws -> String? {
        let now = clock.now()
        if let key = configuration.adminKey {
            let hash = KeyFormat.hash(key)
            if try await store.setting(Self.adminHashSetting) != hash { try await store.setSetting(Self.adminHashSetting, hash, now: now) }
            adminHash.withLock { $0 = hash }
            return nil
        }
        if let stored = try await store.setting(Self.adminHashSetting) {
            adminHash.withLock { $0 = stored }
            return nil
        }
        let key = KeyFormat.makeKey()
        if try await store.setSettingIfAbsent(Self.adminHashSetting, KeyFormat.hash(key), now: now) {
            adminHash.withLock { $0 = KeyFormat.hash(key) }
            return key
        }
        // Another server made it first; its operator saw that key.
        let stored = try await store.setting(Self.adminHashSetting)
        adminHash.withLock { $0 = stored }
        return nil
    }

    /// The caller authenticated with `ADMIN_API_KEY` itself (not an admin-role API key).
    public func isBootstrapAdmin(_ caller: Caller) -> Bool { caller.kind == .apiKey && caller.credentialID == "admin" }

    // MARK: authentication

    /// Who presented `credential`, or the 401 problem saying why not. Every lookup reads the
    /// database, so a key or session revoked by any server or by `sessiond keys revoke` is refused
    /// at once everywhere.
    public func authenticate(_ credential: Credential, now: Timestamp) async throws -> Caller {
        switch credential {
        case .none: throw AccessError.missingKey
        case .malformedHeader: throw AccessError.malformedKey
        case .key(let token): return try await authenticateKey(token, now: now)
        case .cookie(let token): return try await authenticateCookie(token, now: now).caller
        }
    }

    func authenticateKey(_ token: String, now: Timestamp) async throws -> Caller {
        let structure = KeyFormat.structure(of: token)
        guard structure != .malformed else { throw AccessError.malformedKey }
        let hash = KeyFormat.hash(token)
        if let admin = adminHash.withLock({ $0 }), KeyFormat.constantTimeEqual(hash, admin) {
            return Caller(kind: .apiKey, id: "admin", credentialID: "admin", role: AccessRole.admin.rawValue)
        }
        guard let key = try await storedKey(hash: hash), KeyFormat.constantTimeEqual(key.hash, hash) else {
            // Nothing stored under it: a typo of one of ours (its checksum fails), or a wrong key.
            if structure == .ours, !KeyFormat.hasValidChecksum(token) { throw AccessError.malformedKey }
            throw AccessError.invalidKey
        }
        if key.revoked { throw AccessError.revokedKey }
        if let expires = key.expiresAt, expires <= now { throw AccessError.expiredKey }
        if key.role == .deliverer, key.userID == nil { throw AccessError.keyNeedsOwner }
        lastUsed.withLock { $0[key.id] = now.milliseconds }
        return key.caller
    }

    public func authenticateCookie(_ token: String, now: Timestamp) async throws -> LoginSession {
        guard KeyFormat.isTokenShaped(token) else { throw AccessError.malformedSession }
        let hash = KeyFormat.hash(token)
        guard var session = try await storedSession(hash: hash), KeyFormat.constantTimeEqual(session.tokenHash, hash) else {
            throw AccessError.invalidSession
        }
        if session.revoked { throw AccessError.revokedSession }
        if session.expiresAt <= now { throw AccessError.expiredSession }
        let idle = configuration.loginIdleTimeoutSeconds * 1000
        if now.milliseconds - session.lastSeenAt.milliseconds > idle, watch != nil {
            // Another server may have seen it since this one cached it: decide on the stored row.
            session = try await storedSession(hash: hash, fresh: true) ?? session
            if session.revoked { throw AccessError.revokedSession }
        }
        if now.milliseconds - session.lastSeenAt.milliseconds > idle { throw AccessError.expiredSession }
        // last_seen_at is written at most every minute (or every quarter of the idle timeout).
        if now.milliseconds - session.lastSeenAt.milliseconds >= min(60_000, idle / 4) {
            try await store.touchLoginSession(id: session.id, at: now)
            rememberTouch(hash: hash, at: now)
        }
        return session
    }

    /// Whether the credential behind `caller` still authenticates (not revoked, not expired), as of
    /// a read that began after this call: what a live stream asks before it sends and while it
    /// waits. Credentials already checked at the current revocation epoch are not read again.
    public func credentialHolds(_ caller: Caller) async -> Bool {
        let now = clock.now()
        if let expires = caller.expiresAt, expires <= now { return false }
        guard caller.kind != .anonymous, let id = caller.credentialID else { return true }
        if isBootstrapAdmin(caller) { return true }
        do {
            let epoch = if let watch { try await watch.current() } else { try await store.epoch() }
            if holding.withLock({ $0[id] }) == epoch { return true }
            let holds: Bool
            switch caller.kind {
            case .apiKey:
                guard let key = try await store.key(id: id) else { return false }
                holds = !key.revoked && (key.expiresAt.map { $0 > now } ?? true)
            case .loginSession:
                guard let session = try await store.loginSession(id: id) else { return false }
                holds = !session.revoked && session.expiresAt > now
            case .anonymous:
                holds = true
            }
            if holds {
                holding.withLock { holding in
                    if holding.count >= 50_000 { holding.removeAll() }
                    holding[id] = epoch
                }
            }
            return holds
        } catch {
            // The database cannot say: keep the stream (its next round asks again).
            logger.warning("could not check a stream's credential", metadata: ["error": "\(error)"])
            return true
        }
    }

    /// When a request authenticated by the key was last seen, by this server (not yet written).
    func pendingLastUsed(_ keyID: String) -> Int64? { lastUsed.withLock { $0[keyID] } }

    /// Writes the `last_used_at` times gathered since the last call.
    public func flushLastUsed() async throws {
        let batch = lastUsed.withLock { times -> [String: Int64] in
            let batch = times
            times.removeAll()
            return batch
        }
        do {
            try await store.recordLastUsed(batch)
        } catch {
            // Keep them for the next flush (newer times win).
            lastUsed.withLock { times in for (id, time) in batch where (times[id] ?? 0) < time { times[id] = time } }
            throw error
        }
    }

    // MARK: API keys

    public struct NewKey: Sendable {
        public var name: String
        public var role: String
        public var userID: String?
        public var delivererID: String?
        public var expiresAt: String?

        public init(name: String, role: String, userID: String? = nil, delivererID: String? = nil, expiresAt: String? = nil) {
            self.name = name
            self.role = role
            self.userID = userID
            self.delivererID = delivererID
            self.expiresAt = expiresAt
        }
    }

    /// A key with its secret, as it is answered the once it is shown.
    public struct CreatedKey: Sendable {
        public var key: APIKey
        public var secret: String
    }

    /// A new key and its secret, which is shown this once. An admin makes any key; an owner makes
    /// `deliverer` and `viewer` keys for its own `user_id` (the default), nothing else.
    public func createKey(_ request: NewKey, caller: Caller, ip: String? = nil) async throws -> (key: APIKey, secret: String) {
        let now = clock.now()
        let name = request.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 200 else { throw AccessError.invalid(field: "name", detail: "name must be 1 to 200 characters.") }
        guard let role = AccessRole(rawValue: request.role), role != .channel else {
            throw AccessError.invalid(
                field: "role",
                detail: "role must be one of \(AccessRole.allCases.filter { $0 != .channel }.map(\.rawValue).joined(separator: ", ")) (a channel key is made with its channel).")
        }
        var userID = try Self.personID(request.userID, field: "user_id")
        let delivererID = try Self.personID(request.delivererID, field: "deliverer_id")
        switch caller.accessRole {
        case .admin: break
        case .owner:
            guard role == .deliverer || role == .viewer else { throw AccessError.forbidden("An owner makes deliverer and viewer keys only.") }
            guard let own = caller.userID else { throw AccessError.forbidden("This key has no user.") }
            if let userID, userID != own { throw AccessError.forbidden("An owner makes keys for its own user_id only.") }
            userID = own
        default:
            throw AccessError.forbidden("Only an admin, or an owner for its deliverers and viewers, creates API keys.")
        }
        if role.needsUserID && userID == nil { throw AccessError.invalid(field: "user_id", detail: "A \(role.rawValue) key needs user_id (the owner it works for).") }
        if role.needsDelivererID && delivererID == nil { throw AccessError.invalid(field: "deliverer_id", detail: "A deliverer key needs deliverer_id.") }
        var expiresAt: Timestamp?
        if let text = request.expiresAt {
            // RFC 3339; a time without an offset is read as UTC. A time already past makes a key
            // that is refused as expired from the start (useful to test a client's handling).
            guard let parsed = Timestamp(rfc3339: text) ?? Timestamp(rfc3339: text + "Z") else {
                throw AccessError.invalid(field: "expires_at", detail: "expires_at must be an RFC 3339 time, such as 2026-12-31T23:59:59Z.")
            }
            expiresAt = parsed
        }
        let secret = KeyFormat.makeKey()
        let key = APIKey(
            id: ids.make(), name: name, role: role, userID: userID,
            delivererID: role.needsDelivererID ? delivererID : nil, prefix: String(secret.prefix(KeyFormat.displayedLength)),
            hash: KeyFormat.hash(secret), createdAt: now, expiresAt: expiresAt, revokedAt: nil, lastUsedAt: nil, replacedBy: nil)
        try await store.write(
            [
                AccessSQL.insertKey(key, createdBy: caller.id),
                audit(AuditAction.keyCreated, .success, userID: key.userID, caller: caller, details: ["key_id": .string(key.id), "role": .string(role.rawValue), "name": .string(name)], at: now, ip: ip),
            ] + events.append([keyEvent("access.key.created", key, caller: caller, at: now)]), answering: CreatedKey(key: key, secret: secret))
        KernelMetrics.eventsAppended(1)
        didCommitEvents()
        return (key, secret)
    }

    public func keys(after cursor: String?, limit: Int, caller: Caller) async throws -> (items: [APIKey], next: String?) {
        let rows: [APIKey]
        if caller.isAdmin {
            rows = try await store.keys(after: cursor, limit: limit + 1)
        } else {
            let tenant = try ownerTenant(caller, "Only an admin, or an owner for its deliverers and viewers, lists API keys.")
            rows = try await store.keys(userID: tenant, roles: Self.ownerManagedRoles, after: cursor, limit: limit + 1)
        }
        var items = Array(rows.prefix(limit))
        for index in items.indices {
            if let pending = pendingLastUsed(items[index].id), pending > (items[index].lastUsedAt?.milliseconds ?? 0) {
                items[index].lastUsedAt = Timestamp(milliseconds: pending)
            }
        }
        return (items, rows.count > limit ? items.last?.id : nil)
    }

    public func key(_ id: String, caller: Caller) async throws -> APIKey {
        if caller.isAdmin {
            guard let key = try await store.key(id: id) else { throw AccessError.notFound("API key \(id) does not exist.") }
            return key
        }
        let tenant = try ownerTenant(caller, "Only an admin, or an owner for its deliverers and viewers, manages API keys.")
        guard let key = try await store.key(id: id), key.userID == tenant, Self.ownerManagedRoles.contains(key.role) else {
            throw AccessError.notFound("API key \(id) does not exist.")
        }
        return key
    }

    /// The keys an owner makes, reads, rotates and revokes for its own `user_id`.
    static let ownerManagedRoles: [AccessRole] = [.deliverer, .viewer]

    /// An owner's `user_id`; anyone else but an admin is refused with `detail`.
    func ownerTenant(_ caller: Caller, _ detail: String) throws -> String {
        guard caller.accessRole == .owner, let tenant = caller.userID else { throw AccessError.forbidden(detail) }
        return tenant
    }

    public func revokeKey(_ id: String, caller: Caller, ip: String? = nil) async throws -> APIKey {
        var key = try await key(id, caller: caller)
        guard !key.revoked else { return key }
        let now = clock.now()
        var revoked = key
        revoked.revokedAt = now
        do {
            try await store.write(
                [
                    AccessStore.revokeKey(id, at: now), AccessSQL.bumpEpoch,
                    audit(AuditAction.keyRevoked, .success, userID: key.userID, caller: caller, details: ["key_id": .string(id)], at: now, ip: ip),
                ] + events.append([keyEvent("access.key.revoked", key, caller: caller, at: now)]), answering: revoked)
        } catch StorageError.conflict {
            return try await self.key(id, caller: caller)  // revoked meanwhile
        }
        KernelMetrics.eventsAppended(1)
        didCommitEvents()
        key.revokedAt = now
        return key
    }

    /// A new key with the old one's name, role and scope; the old one is revoked in the same transaction.
    public func rotateKey(_ id: String, caller: Caller, ip: String? = nil) async throws -> (key: APIKey, secret: String) {
        let old = try await key(id, caller: caller)
        guard !old.revoked else { throw Problem.conflict("key-revoked", "Key \(id) is revoked; create a new key instead.", title: "Key revoked") }
        let now = clock.now()
        let secret = KeyFormat.makeKey()
        let key = APIKey(
            id: ids.make(), name: old.name, role: old.role, userID: old.userID, delivererID: old.delivererID,
            prefix: String(secret.prefix(KeyFormat.displayedLength)), hash: KeyFormat.hash(secret), createdAt: now,
            expiresAt: old.expiresAt.flatMap { $0 > now ? $0 : nil }, revokedAt: nil, lastUsedAt: nil, replacedBy: nil, channelID: old.channelID)
        do {
            try await store.write(
                [
                    AccessSQL.insertKey(key, createdBy: caller.id),
                    AccessStore.revokeKey(id, at: now, replacedBy: key.id), AccessSQL.bumpEpoch,
                    audit(AuditAction.keyRotated, .success, userID: key.userID, caller: caller, details: ["key_id": .string(id), "new_key_id": .string(key.id)], at: now, ip: ip),
                ] + events.append([
                    keyEvent("access.key.created", key, caller: caller, at: now), keyEvent("access.key.revoked", old, caller: caller, at: now),
                ]), answering: CreatedKey(key: key, secret: secret))
        } catch StorageError.conflict {
            throw Problem.conflict("key-revoked", "Key \(id) was revoked meanwhile.", title: "Key revoked")
        }
        KernelMetrics.eventsAppended(2)
        didCommitEvents()
        return (key, secret)
    }

    /// A channel's own key (role `channel`, acting for the channel's `user_id` on that channel only),
    /// for the transaction that creates the channel: the key, its secret (shown once) and the statements.
    public func channelKey(channelID: String, userID: String, name: String, caller: Caller) -> (key: APIKey, secret: String, statements: [SQLStatement]) {
        let now = clock.now()
        let secret = KeyFormat.makeKey()
        let key = APIKey(
            id: ids.make(), name: String(("channel " + name).prefix(200)), role: .channel, userID: userID, delivererID: nil,
            prefix: String(secret.prefix(KeyFormat.displayedLength)), hash: KeyFormat.hash(secret), createdAt: now, expiresAt: nil, revokedAt: nil,
            lastUsedAt: nil, replacedBy: nil, channelID: channelID)
        let statements = [
            AccessSQL.insertKey(key, createdBy: caller.id),
            audit(AuditAction.keyCreated, .success, userID: userID, caller: caller, details: ["key_id": .string(key.id), "role": "channel", "channel_id": .string(channelID)], at: now, ip: nil),
        ] + events.append([keyEvent("access.key.created", key, caller: caller, at: now)])
        return (key, secret, statements)
    }

    /// Revokes a channel's key (and a key that replaced it by rotation), for the transaction that deletes the channel.
    public func revokeChannelKeys(channelID: String, caller: Caller) -> [SQLStatement] {
        let now = clock.now()
        return [
            SQLStatement("UPDATE api_keys SET revoked_at = ? WHERE channel_id = ? AND revoked_at IS NULL", [.int(now.milliseconds), .text(channelID)]),
            AccessSQL.bumpEpoch,
            audit(AuditAction.keyRevoked, .success, userID: nil, caller: caller, details: ["channel_id": .string(channelID)], at: now, ip: nil),
        ]
    }

    /// Every type this module emits, with what it means (`GET /api/events/types`).
    public static let eventTypes: [(type: String, summary: String)] = [
        ("access.key.created", "An API key was created (or made by a rotation); never its secret."),
        ("access.key.revoked", "An API key was revoked (or replaced by a rotation)."),
    ]

    /// A key's event: admins read it (keys are the admin's to manage); never the secret.
    func keyEvent(_ type: String, _ key: APIKey, caller: Caller, at now: Timestamp) -> NewEvent {
        var data = JSONWriter(capacity: 256)
        data.beginObject()
        data.field("key_id", key.id)
        data.field("name", key.name)
        data.field("role", key.role.rawValue)
        data.field("prefix", key.prefix)
        data.field("user_id", key.userID)
        data.field("deliverer_id", key.delivererID)
        data.field("actor_id", caller.id)
        data.endObject()
        return NewEvent(type: type, createdAt: now, data: String(buffer: data.buffer))
    }

    // MARK: login links and sessions

    /// A one-time link that logs `userID` in (an admin names the user; an owner gets one for itself).
    public func createLoginLink(userID requested: String?, caller: Caller, baseURL: String, ip: String? = nil) async throws -> (url: String, expiresAt: Timestamp) {
        let userID: String
        switch caller.accessRole {
        case .admin:
            guard let requested = try Self.personID(requested, field: "user_id") else {
                throw AccessError.invalid(field: "user_id", detail: "An admin names the user_id the link logs in.")
            }
            userID = requested
        case .owner:
            guard let own = caller.userID else { throw AccessError.forbidden("This key has no user.") }
            if let requested, requested != own { throw AccessError.forbidden("An owner makes login links for itself only.") }
            userID = own
        default:
            throw AccessError.forbidden("Only an admin, or an owner for itself, makes login links.")
        }
        let now = clock.now()
        let token = KeyFormat.makeToken()
        let expiresAt = Timestamp(milliseconds: now.milliseconds + configuration.loginLinkLifetimeSeconds * 1000)
        try await store.write([
            AccessStore.insertLoginLink(hash: KeyFormat.hash(token), userID: userID, role: .owner, now: now, expiresAt: expiresAt, createdBy: caller.id),
            audit(AuditAction.loginLinkCreated, .success, userID: userID, caller: caller, details: [:], at: now, ip: ip),
        ])
        let base = configuration.publicBaseURL ?? baseURL
        return ((base.hasSuffix("/") ? String(base.dropLast()) : base) + "/auth/login?token=" + token, expiresAt)
    }

    /// Uses a login link once: a new login session and its cookie token. A used, expired or unknown
    /// token logs nobody in (and is audited as a failed login).
    public func useLoginLink(_ token: String, ip: String?, userAgent: String?) async throws -> (session: LoginSession, token: String) {
        let now = clock.now()
        let hash = KeyFormat.hash(token)
        let link = KeyFormat.isTokenShaped(token) ? try await store.loginLink(hash: hash) : nil
        guard let link, link.usedAt == nil, link.expiresAt > now else {
            let reason = link == nil ? "unknown" : (link?.usedAt != nil ? "used" : "expired")
            try await store.write([
                audit(AuditAction.login, .failure, userID: link?.userID, caller: nil, details: ["method": "link", "reason": .string(reason)], at: now, ip: ip)
            ])
            throw Problem(status: .unauthorized, slug: "invalid-login-link", title: "Login link not valid", detail: "This login link is \(reason == "unknown" ? "not known" : reason); ask for a new one.")
        }
        do {
            return try await startLoginSession(
                userID: link.userID, role: link.role, startedBy: "link", method: "link", ip: ip, userAgent: userAgent, now: now,
                alongside: [AccessStore.useLoginLink(hash: hash, now: now)])
        } catch StorageError.conflict {
            throw Problem(status: .unauthorized, slug: "invalid-login-link", title: "Login link not valid", detail: "This login link was used already; ask for a new one.")
        }
    }

    /// A login session for whoever `caller` is (the web's API-key login form): owner and viewer keys only.
    public func startLoginSession(for caller: Caller, ip: String?, userAgent: String?) async throws -> (session: LoginSession, token: String) {
        guard let role = caller.accessRole, role == .owner || role == .viewer, let userID = caller.userID else {
            throw AccessError.forbidden("Only an owner or viewer key logs in to the dashboard.")
        }
        return try await startLoginSession(
            userID: userID, role: role, startedBy: caller.credentialID, method: "api_key", ip: ip, userAgent: userAgent, now: clock.now(), alongside: [])
    }

    func startLoginSession(
        userID: String, role: AccessRole, startedBy: String?, method: String, ip: String?, userAgent: String?, now: Timestamp, alongside: [SQLStatement]
    ) async throws -> (session: LoginSession, token: String) {
        let token = KeyFormat.makeToken()
        let session = LoginSession(
            id: ids.make(), tokenHash: KeyFormat.hash(token), userID: userID, delivererID: nil, role: role, ip: ip.map { String($0.prefix(64)) },
            userAgent: userAgent.map { String($0.prefix(400)) }, createdAt: now,
            expiresAt: Timestamp(milliseconds: now.milliseconds + configuration.loginSessionLifetimeSeconds * 1000), lastSeenAt: now,
            revoked: false, startedBy: startedBy)
        try await store.write(
            alongside + [
                AccessStore.insertLoginSession(session),
                audit(AuditAction.login, .success, userID: userID, caller: nil, details: ["method": .string(method), "session_id": .string(session.id)], at: now, ip: ip),
            ])
        return (session, token)
    }

    /// Login sessions the caller may see: an admin's, anyone's (or `userID`'s); an owner's, its
    /// `user_id`'s (its own and its viewers'); anyone else's, those its own credential started.
    public func loginSessions(caller: Caller, userID filter: String?, after cursor: String?, limit: Int) async throws -> (items: [LoginSession], next: String?) {
        let rows: [LoginSession]
        if caller.isAdmin {
            rows = try await store.loginSessions(userID: filter.map { try PersonID.checked($0, field: "user_id") }, after: cursor, limit: limit + 1)
        } else if caller.accessRole == .owner, let userID = caller.userID {
            rows = try await store.loginSessions(userID: userID, after: cursor, limit: limit + 1)
        } else if let origin = try await originCredential(caller) {
            rows = try await store.loginSessions(startedBy: origin, after: cursor, limit: limit + 1)
        } else {
            rows = []
        }
        let items = Array(rows.prefix(limit))
        return (items, rows.count > limit ? items.last?.id : nil)
    }

    /// The credential behind the caller: its API key, or the one that started its login session.
    func originCredential(_ caller: Caller) async throws -> String? {
        switch caller.kind {
        case .apiKey: return caller.credentialID
        case .loginSession:
            guard let id = caller.credentialID else { return nil }
            return try await store.loginSession(id: id)?.startedBy
        case .anonymous: return nil
        }
    }

    /// Ends one login session the caller may see (`loginSessions`); another is a 404.
    public func revokeLoginSession(_ id: String, caller: Caller, ip: String? = nil) async throws -> LoginSession {
        guard var session = try await store.loginSession(id: id), try await owns(session, caller) else {
            throw AccessError.notFound("Login session \(id) does not exist.")
        }
        guard !session.revoked else { return session }
        let now = clock.now()
        try await store.write([
            AccessStore.revokeLoginSession(id: id, at: now), AccessSQL.bumpEpoch,
            audit(AuditAction.sessionRevoked, .success, userID: session.userID, caller: caller, details: ["session_id": .string(id)], at: now, ip: ip),
        ])
        session.revoked = true
        return session
    }

    /// Ends every login session the caller may see but the one this request came with. An admin
    /// names the user (`userID`, 422 without).
    public func revokeOtherLoginSessions(caller: Caller, userID filter: String? = nil, ip: String? = nil) async throws -> Int {
        if caller.isAdmin {
            guard let filter else { throw AccessError.invalid(field: "user_id", detail: "An admin names the user_id whose login sessions end.") }
            _ = try PersonID.checked(filter, field: "user_id")
        }
        let current = caller.kind == .loginSession ? caller.credentialID : nil
        var revoked = 0
        var cursor: String?
        let now = clock.now()
        repeat {
            let page = try await loginSessions(caller: caller, userID: caller.isAdmin ? filter : nil, after: cursor, limit: 200)
            let targets = page.items.filter { !$0.revoked && $0.id != current }
            if !targets.isEmpty {
                try await store.write(
                    [AccessSQL.bumpEpoch] + targets.map { AccessStore.revokeLoginSession(id: $0.id, at: now) } + targets.map {
                        audit(AuditAction.sessionRevoked, .success, userID: $0.userID, caller: caller, details: ["session_id": .string($0.id), "reason": "revoke-others"], at: now, ip: ip)
                    })
            }
            revoked += targets.count
            cursor = page.next
        } while cursor != nil
        return revoked
    }

    /// Ends the login session the request came with.
    public func logout(caller: Caller, ip: String? = nil) async throws {
        guard caller.kind == .loginSession, let id = caller.credentialID else { throw AccessError.notLoginSession }
        let now = clock.now()
        try await store.write([
            AccessStore.revokeLoginSession(id: id, at: now), AccessSQL.bumpEpoch,
            audit(AuditAction.logout, .success, userID: caller.userID, caller: caller, details: ["session_id": .string(id)], at: now, ip: ip),
        ])
    }

    func owns(_ session: LoginSession, _ caller: Caller) async throws -> Bool {
        if caller.isAdmin { return true }
        if caller.accessRole == .owner, let userID = caller.userID { return session.userID == userID }
        guard let started = session.startedBy else { return false }
        return try await originCredential(caller) == started
    }

    // MARK: the auth audit

    public struct AuditQuery: Sendable {
        public var userID: String?
        public var action: String?
        public var status: String?
        public var since: String?
        public var until: String?
        public init(userID: String? = nil, action: String? = nil, status: String? = nil, since: String? = nil, until: String? = nil) {
            self.userID = userID
            self.action = action
            self.status = status
            self.since = since
            self.until = until
        }
    }

    public func audits(_ query: AuditQuery, after cursor: String?, limit: Int, caller: Caller) async throws -> (items: [AuthAudit], next: String?) {
        try requireAdmin(caller, "Only an admin reads the auth audit.")
        var filter = AccessStore.AuditFilter(userID: query.userID, action: query.action)
        if let text = query.status {
            guard let status = AuthAudit.Status(rawValue: text) else { throw AccessError.invalid(field: "status", detail: "status must be success or failure.") }
            filter.status = status
        }
        for (field, text) in [("since", query.since), ("until", query.until)] {
            guard let text else { continue }
            guard let time = Timestamp(rfc3339: text) else { throw AccessError.invalid(field: field, detail: "\(field) must be an RFC 3339 time.") }
            if field == "since" { filter.since = time } else { filter.until = time }
        }
        let rows = try await store.audits(filter, after: cursor, limit: limit + 1)
        let items = Array(rows.prefix(limit))
        return (items, rows.count > limit ? items.last?.id : nil)
    }

    /// Records an auth event on its own (failures, denials); changes record theirs in their own transaction.
    public func record(_ action: String, _ status: AuthAudit.Status, userID: String?, caller: Caller?, details: [String: JSONValue], ip: String?) async {
        do {
            try await store.write([audit(action, status, userID: userID, caller: caller, details: details, at: clock.now(), ip: ip)])
        } catch {
            logger.warning("could not record an auth audit", metadata: ["action": .string(action), "error": "\(error)"])
        }
    }

    func audit(_ action: String, _ status: AuthAudit.Status, userID: String?, caller: Caller?, details: [String: JSONValue], at now: Timestamp, ip: String?) -> SQLStatement {
        var details = details
        if let caller, let id = caller.id {
            details["actor_id"] = .string(id)
            details["actor_role"] = .string(caller.role)
            if let credential = caller.credentialID { details["credential_id"] = .string(credential) }
        }
        let entry = AuthAudit(id: ids.make(), timestamp: now, userID: userID ?? caller?.userID, action: action, status: status, details: JSONValue.object(details).canonicalText())
        return AccessSQL.insertAudit(entry, ip: ip)
    }

    // MARK: helpers

    func requireAdmin(_ caller: Caller, _ detail: String) throws {
        guard caller.isAdmin else { throw AccessError.forbidden(detail) }
    }

    /// A person's id (`user_id`, `deliverer_id`: see `PersonID`), or nil when absent.
    static func personID(_ value: String?, field: String) throws -> String? {
        guard let value else { return nil }
        return try PersonID.checked(value, field: field)
    }
}
