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
