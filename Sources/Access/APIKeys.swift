import Foundation
import Kernel

/// API keys: made by an admin (any role) or by an owner (its deliverers' and viewers'), listed,
/// rotated and revoked by whoever may make them; channel keys made and revoked with their channel.
extension AccessService {
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
}
