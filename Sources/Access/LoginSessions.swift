import Kernel

/// One-time login links and the login sessions they (or the web's key form) start: who may make
/// them, and who may see and end them (an owner its user's, anyone else those its own credential
/// started, an admin anyone's).
extension AccessService {
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
}
