import Kernel

/// What each role may do with delivery sessions (the access contract's role × route rules). The
/// access module says who the caller is; this says what that caller may do here.
///
/// - `admin`: everything.
/// - `owner` (and a `channel` key, which acts for its owner): everything with its own user's sessions.
/// - `viewer`: reads its user's sessions; any change is a 403.
/// - `deliverer`: reads its owner's sessions it delivers in, and marks pickup/delivered/failed with
///   its own `deliverer_id`; anything else in those sessions is a 403.
///
/// A session the caller may not see is a 404, exactly like one that does not exist.
public enum DeliveryPermission: Sendable, Equatable {
    case read
    case manage
    /// Marking a package picked up, delivered or failed for `delivererID`.
    case mark(delivererID: String)
}

extension Caller {
    var delivererID: String? { scope("deliverer_id") }
    /// Owner-like roles act for their `user_id`.
    var actsAsOwner: Bool { role == "owner" || role == "channel" }
}

enum DeliveryAccess {
    static func authorize(_ caller: Caller, _ permission: DeliveryPermission, on session: DeliverySession, deliverers: [SessionDeliverer]) throws {
        if caller.isAdmin { return }
        let owner = caller.userID != nil && caller.userID == session.userID
        if caller.actsAsOwner {
            guard owner else { throw DeliveryError.sessionNotFound(session.id) }
            return
        }
        if caller.role == "viewer" {
            guard owner else { throw DeliveryError.sessionNotFound(session.id) }
            guard permission == .read else { throw DeliveryError.forbidden("A viewer key reads sessions; it changes nothing.") }
            return
        }
        // A deliverer serves one owner: another owner's deliverer with the same id sees nothing here.
        if caller.role == "deliverer", owner, let own = caller.delivererID, deliverers.contains(where: { $0.id == own }) {
            switch permission {
            case .read: return
            case .mark(let delivererID) where delivererID == own: return
            case .mark: throw DeliveryError.forbidden("A deliverer marks packages with its own deliverer_id only.")
            case .manage: throw DeliveryError.forbidden("A deliverer marks its packages; it does not manage the session.")
            }
        }
        throw DeliveryError.sessionNotFound(session.id)
    }

    /// Creating a session for `userID`.
    static func authorizeCreate(_ caller: Caller, userID: String) throws {
        if caller.isAdmin { return }
        guard caller.actsAsOwner else { throw DeliveryError.forbidden("Only an admin or an owner creates sessions.") }
        guard caller.userID == userID else { throw DeliveryError.forbidden("An owner creates sessions for its own user_id only.") }
    }

    /// Listing `userID`'s sessions: another user's listing is a 404.
    static func authorizeListing(_ caller: Caller, userID: String) throws {
        if caller.isAdmin { return }
        guard caller.actsAsOwner || caller.role == "viewer", caller.userID == userID else {
            throw DeliveryError.userNotFound(userID)
        }
    }
}

extension DeliveryAggregate {
    public func authorize(_ caller: Caller, _ permission: DeliveryPermission) throws {
        try DeliveryAccess.authorize(caller, permission, on: session, deliverers: deliverers)
    }
}
