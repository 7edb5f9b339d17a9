import Crypto
import Foundation
import Kernel

/// Invites (one-time deep links, with their QR codes) and the links they make: who may make,
/// see, revoke and remove them, and the statements the bot's `/convidar` commits with its reply.
extension ChannelService {
    // MARK: invites and links

    public struct NewInvite: Sendable {
        public var role: String?
        public var userID: String?
        public var delivererID: String?
        public var name: String?
        public var baseSalaryCents: Int64?
        public var commissionPerDeliveryCents: Int64?
        public var expiresIn: Int64?

        public init(
            role: String?, userID: String?, delivererID: String?, name: String?, baseSalaryCents: Int64?, commissionPerDeliveryCents: Int64?,
            expiresIn: Int64?
        ) {
            self.role = role
            self.userID = userID
            self.delivererID = delivererID
            self.name = name
            self.baseSalaryCents = baseSalaryCents
            self.commissionPerDeliveryCents = commissionPerDeliveryCents
            self.expiresIn = expiresIn
        }
    }

    public struct CreatedInvite: Sendable {
        public var invite: Invite
        public var token: String
        public var url: String
    }

    static func tokenHash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public func createInvite(_ id: String, _ request: NewInvite, caller: Caller) async throws -> CreatedInvite {
        let channel = try await managed(id, caller)
        let (invite, token, url, statements) = try inviteStatements(channel, request, actor: caller)
        try await storage.write(statements, answering: CreatedInvite(invite: invite, token: token, url: url))
        didCommitEvents()
        return CreatedInvite(invite: invite, token: token, url: url)
    }

    /// An invite's row and event, for a transaction of the caller's (the bot's `/convidar` sends its QR in the same one).
    func inviteStatements(_ channel: Channel, _ request: NewInvite, actor: Caller) throws -> (Invite, String, String, [SQLStatement]) {
        guard let role = request.role.flatMap(Invite.Role.init(rawValue:)) else { throw ChannelError.invalid(field: "role", detail: "role is owner or deliverer.") }
        guard let username = channel.bot?.username else { throw ChannelError.notConnected }
        var userID: String?
        var delivererID: String?
        switch role {
        case .owner:
            if let requested = request.userID, requested != channel.userID {
                throw ChannelError.invalid(field: "user_id", detail: "An owner invite is for the channel's user_id (\(channel.userID)).")
            }
            userID = channel.userID
        case .deliverer:
            if let requested = request.delivererID { delivererID = try PersonID.checked(requested, field: "deliverer_id") }
        }
        let name = try Self.text(request.name, field: "name", required: false)
        let salary = request.baseSalaryCents ?? 0
        let commission = request.commissionPerDeliveryCents ?? 0
        guard salary >= 0 else { throw ChannelError.invalid(field: "base_salary_cents", detail: "base_salary_cents is 0 or more.") }
        guard commission >= 0 else { throw ChannelError.invalid(field: "commission_per_delivery_cents", detail: "commission_per_delivery_cents is 0 or more.") }
        let expiresIn = request.expiresIn ?? 604_800
        guard (1...2_592_000).contains(expiresIn) else { throw ChannelError.invalid(field: "expires_in", detail: "expires_in is 1 to 2592000 seconds.") }
        let now = clock.now()
        let token = Self.randomSecret(length: 32)
        let invite = Invite(
            id: ids.make(), channelID: channel.id, role: role, userID: userID, delivererID: delivererID, name: name, baseSalaryCents: salary,
            commissionPerDeliveryCents: commission, createdAt: now, expiresAt: Timestamp(milliseconds: now.milliseconds + expiresIn * 1000), usedAt: nil,
            usedByTelegramUserID: nil)
        let url = "https://t.me/\(username)?start=\(token)"
        let insert = SQLStatement(
            """
            INSERT INTO channel_invites (invite_id, channel_id, role, user_id, deliverer_id, name, base_salary_cents, commission_per_delivery_cents,
                token_hash, token_sealed, created_at, expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(invite.id), .text(channel.id), .text(role.rawValue), SQLValue(userID), SQLValue(delivererID), SQLValue(name), .int(salary),
                .int(commission), .text(Self.tokenHash(token)), .text(try sealed(token, invite.id + ":invite")), .int(now.milliseconds),
                .int(invite.expiresAt.milliseconds),
            ])
        let created = event("channel.invite.created", channel, at: now) { data in
            data.field("invite_id", invite.id)
            data.field("role", role.rawValue)
            data.field("deliverer_id", delivererID)
        }
        return (invite, token, url, [insert] + events.append([created]))
    }

    public func invites(_ id: String, caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [Invite], next: String?) {
        _ = try await visible(id, caller)
        let items = try await store.invites(id, after: cursor, limit: limit + 1)
        let page = Array(items.prefix(limit))
        return (page, items.count > limit ? page.last?.id : nil)
    }

    /// The invite's QR code as PNG (the owner's or an admin's: it links whoever scans it); 410 once
    /// it is used, revoked or expired.
    public func inviteQR(_ id: String, inviteID: String, caller: Caller) async throws -> [UInt8] {
        let channel = try await visible(id, caller)
        try Self.requireOwnerOrAdmin(caller, "Only the channel's owner or an admin gets an invite's QR code.")
        guard let (invite, sealedToken) = try await store.invite(inviteID, channelID: id) else { throw ChannelError.notFound("No invite \(inviteID).") }
        guard invite.isOpen(at: clock.now()) else { throw ChannelError.inviteGone }
        guard let box = configuration.secretBox else { throw ChannelError.noSecretKey }
        let token: String
        do { token = try box.open(sealedToken, boundTo: inviteID + ":invite") } catch { throw ChannelError.secretUnreadable(id) }
        guard let username = channel.bot?.username else { throw ChannelError.notConnected }
        return try QRCode.png("https://t.me/\(username)?start=\(token)")
    }

    /// Revokes an unused invite (the owner or an admin): it links nobody from then on. Revoking it
    /// again, or one already used, answers it as it is.
    public func revokeInvite(_ id: String, inviteID: String, caller: Caller) async throws -> Invite {
        let channel = try await visible(id, caller)
        try Self.requireOwnerOrAdmin(caller, "Only the channel's owner or an admin revokes invites.")
        guard var invite = try await store.invite(inviteID, channelID: id)?.invite else { throw ChannelError.notFound("No invite \(inviteID).") }
        guard invite.revokedAt == nil, invite.usedAt == nil else { return invite }
        let now = clock.now()
        do {
            try await storage.write(
                [
                    ChannelStore.revokeInvite(inviteID, channelID: id, at: now)
                ] + events.append([event("channel.invite.revoked", channel, at: now) { $0.field("invite_id", inviteID) }]),
                answering: invite)
        } catch StorageError.conflict {
            return try await store.invite(inviteID, channelID: id)?.invite ?? invite  // used or revoked meanwhile
        }
        didCommitEvents()
        invite.revokedAt = now
        return invite
    }

    static func requireOwnerOrAdmin(_ caller: Caller, _ detail: String) throws {
        guard caller.isAdmin || caller.role == "owner" else { throw ChannelError.forbidden(detail) }
    }

    public func links(_ id: String, caller: Caller, after cursor: String?, limit: Int) async throws -> (items: [ChannelLink], next: String?) {
        _ = try await visible(id, caller)
        let items = try await store.links(id, after: cursor, limit: limit + 1)
        let page = Array(items.prefix(limit))
        return (page, items.count > limit ? page.last?.id : nil)
    }

    public func removeLink(_ id: String, linkID: String, caller: Caller) async throws {
        let channel = try await managed(id, caller)
        let now = clock.now()
        do {
            try await storage.write(
                [SQLStatement("DELETE FROM channel_links WHERE link_id = ? AND channel_id = ?", [.text(linkID), .text(id)], expectedChanges: 1)]
                    + events.append([event("channel.link.removed", channel, at: now) { $0.field("link_id", linkID) }]))
        } catch StorageError.conflict {
            throw ChannelError.notFound("No link \(linkID).")
        }
        didCommitEvents()
    }
}
