import Kernel

/// What each role may do with conversations (the tenancy contract). A conversation belongs to an
/// owner's `user_id`; one of another tenant is a 404, exactly like a missing one.
///
/// - `admin`: every tenant's (a new conversation names its `user_id`; reads may name one).
/// - `owner` and a `channel` key (its owner's bot): read and change their `user_id`'s.
/// - `viewer`: reads its `user_id`'s; any change is a 403.
/// - anyone else (a deliverer): 403.
enum ConversationAccess {
    enum Need { case read, change }

    /// The tenant the caller acts in for `need`, or nil for an admin acting across tenants
    /// (`requested`, when given, narrows an admin to one; a non-admin naming another is a 403).
    static func tenant(_ caller: Caller, _ need: Need, requested: String? = nil) throws(ConversationError) -> String? {
        if caller.isAdmin {
            guard let requested else { return nil }
            guard PersonID.isValid(requested) else { throw .invalid(field: "user_id", detail: "user_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ + -") }
            return requested
        }
        switch caller.role {
        case "owner", "channel": break
        case "viewer" where need == .read: break
        case "viewer": throw .forbidden("A viewer reads conversations; it changes nothing.")
        default: throw .forbidden("Conversations are kept by an admin, an owner or a channel key (and read by viewers).")
        }
        guard let own = caller.userID else { throw .forbidden("This key has no user.") }
        if let requested, requested != own { throw .forbidden("An owner acts on its own user_id's conversations only.") }
        return own
    }

    /// The tenant a new conversation belongs to: the caller's, or the one an admin names (422 without).
    static func owner(ofNew caller: Caller, requested: String?) throws(ConversationError) -> String {
        if caller.isAdmin, requested == nil { throw .invalid(field: "user_id", detail: "An admin names the user_id the conversation belongs to.") }
        guard let tenant = try tenant(caller, .change, requested: requested) else { throw .invalid(field: "user_id", detail: "user_id is required.") }
        return tenant
    }

    /// `conversation` when the caller may act on it for `need`; otherwise 404 (another tenant's) or 403.
    static func check(_ conversation: Conversation, _ caller: Caller, _ need: Need) throws(ConversationError) {
        guard let tenant = try tenant(caller, need) else { return }
        guard conversation.userID == tenant else { throw .notFound(conversation.id) }
    }
}
