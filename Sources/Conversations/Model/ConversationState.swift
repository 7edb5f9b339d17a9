/// Where a conversation is, and where it may go next (PRODUCT.md, "Conversations contract"): the
/// next state in order; from `qualifying` or `recommending` back to `collecting_profile`; from any
/// state but `closed` to `handoff` or `closed`; `closed` is final. Everything else is refused.
public enum ConversationState: String, Sendable, CaseIterable, Codable {
    case greeting
    case collectingProfile = "collecting_profile"
    case qualifying
    case recommending
    case negotiating
    case scheduling
    case handoff
    case closed

    /// The states in their forward order.
    static let order: [ConversationState] = [.greeting, .collectingProfile, .qualifying, .recommending, .negotiating, .scheduling, .handoff, .closed]

    public func canMove(to next: ConversationState) -> Bool {
        if self == .closed { return false }
        if next == .handoff || next == .closed { return true }
        if let index = Self.order.firstIndex(of: self), index + 1 < Self.order.count, Self.order[index + 1] == next { return true }
        return (self == .qualifying || self == .recommending) && next == .collectingProfile
    }
}
