import Kernel

import Foundation

/// What a chat bot waits for in one chat (the chat's current session, a reason it asked for, a
/// picker's selection), kept per (channel, chat) so that a restart in the middle of a dialog
/// continues where it was. The state is the bot's own JSON object; this module only keeps it.
/// Saving returns a statement, so the bot commits the state in the transaction of the change the
/// message caused (a package marked, an update recorded as handled).
public struct ChatDialogs: Sendable {
    let storage: Storage

    public init(storage: Storage) { self.storage = storage }

    /// The chat's state; nil when the bot never saved one (or saved one this build cannot read).
    /// Read for every message a bot handles: a lookup (SQLite: on the calling thread, no pool hop).
    public func state<State: Decodable>(_ type: State.Type, channel: String, chat: String) async throws -> State? {
        let rows = try await storage.lookup("SELECT state FROM chat_dialogs WHERE channel = ? AND chat = ?", [.text(channel), .text(chat)])
        guard let text = try rows.first?.string(0) else { return nil }
        return try? JSONDecoder().decode(State.self, from: Data(text.utf8))
    }

    /// The statement that stores the chat's state (replacing the one before).
    public func save(channel: String, chat: String, state: some Encodable, at now: Timestamp) throws -> SQLStatement {
        let text = String(decoding: try JSONValue.encoder.encode(state), as: UTF8.self)
        return SQLStatement(
            """
            INSERT INTO chat_dialogs (channel, chat, state, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (channel, chat) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
            """, [.text(channel), .text(chat), .text(text), .int(now.milliseconds)])
    }

    /// The statement that forgets every chat of a channel (a deleted bot).
    public func forget(channel: String) -> SQLStatement {
        SQLStatement("DELETE FROM chat_dialogs WHERE channel = ?", [.text(channel)])
    }
}
