import Kernel

/// The `conversation.*` events a change emits. They carry figures, never the messages' text or the
/// profile (so erasing a contact has little to scrub from the log).
public enum ConversationEvents {
    public static let types: [(type: String, summary: String)] = [
        ("conversation.created", "A live conversation started for a contact on a channel."),
        ("conversation.turn.applied", "A turn was applied: its turn_id, how many messages it added, the state after it, the lead figures."),
        ("conversation.state.changed", "The conversation moved from one state to another."),
        ("conversation.consent.given", "The contact gave consent (LGPD) to keep a profile."),
        ("conversation.consent.withdrawn", "The contact withdrew consent; the profile was cleared."),
        ("conversation.archived", "The conversation left the live set (idle past CONVERSATION_TTL, or expired on request)."),
    ]

    static func events(from before: Conversation?, to after: Conversation) -> [NewEvent] {
        func event(_ type: String, _ fields: (inout JSONWriter) -> Void) -> NewEvent {
            var writer = JSONWriter(capacity: 160)
            writer.beginObject()
            writer.field("channel", after.channel)
            fields(&writer)
            writer.endObject()
            return NewEvent(
                type: type, sessionID: after.id, version: after.version, userID: after.userID.isEmpty ? nil : after.userID, createdAt: after.updatedAt,
                data: String(buffer: writer.buffer))
        }
        guard let before else { return [event("conversation.created") { _ in }] }
        var events: [NewEvent] = []
        if after.turnID != before.turnID {
            events.append(event("conversation.turn.applied") { writer in
                writer.field("turn_id", after.turnID)
                writer.field("messages_added", after.messages.count - before.messages.count)
                writer.field("state", after.state.rawValue)
                writer.field("completeness", after.profile.completeness)
                writer.field("qualification_score", after.qualificationScore)
            })
        }
        if after.state != before.state {
            events.append(event("conversation.state.changed") { writer in
                writer.field("from", before.state.rawValue)
                writer.field("to", after.state.rawValue)
            })
        }
        if after.consentGiven != before.consentGiven {
            events.append(event(after.consentGiven ? "conversation.consent.given" : "conversation.consent.withdrawn") { _ in })
        }
        if after.archivedAt != nil, before.archivedAt == nil {
            events.append(event("conversation.archived") { writer in writer.field("turn_id", after.turnID) })
        }
        return events
    }
}
