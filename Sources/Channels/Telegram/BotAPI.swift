import Foundation

/// The Bot API's JSON, for the methods and fields the delivery bot uses. Names as Telegram spells
/// them (snake_case keys); everything the bot does not read is left out and ignored when decoding.
public enum BotAPI {
    public struct Response<Result: Decodable & Sendable>: Decodable, Sendable {
        public var ok: Bool
        public var result: Result?
        public var description: String?
        public var errorCode: Int?
        public var parameters: Parameters?

        public struct Parameters: Decodable, Sendable {
            public var retryAfter: Int?
            enum CodingKeys: String, CodingKey { case retryAfter = "retry_after" }
        }

        enum CodingKeys: String, CodingKey { case ok, result, description, errorCode = "error_code", parameters }
    }

    public struct User: Codable, Sendable, Equatable {
        public var id: Int64
        public var isBot: Bool?
        public var firstName: String
        public var username: String?
        enum CodingKeys: String, CodingKey { case id, isBot = "is_bot", firstName = "first_name", username }
    }

    public struct Chat: Codable, Sendable, Equatable {
        public var id: Int64
        public var type: String
    }

    public struct PhotoSize: Codable, Sendable, Equatable {
        public var fileID: String
        public var width: Int
        public var height: Int
        public var fileSize: Int?
        enum CodingKeys: String, CodingKey { case fileID = "file_id", width, height, fileSize = "file_size" }
    }

    public struct Message: Codable, Sendable, Equatable {
        public var messageID: Int64
        public var from: User?
        public var chat: Chat
        public var date: Int64?
        public var text: String?
        public var caption: String?
        public var photo: [PhotoSize]?
        enum CodingKeys: String, CodingKey { case messageID = "message_id", from, chat, date, text, caption, photo }
    }

    public struct CallbackQuery: Codable, Sendable, Equatable {
        public var id: String
        public var from: User
        public var message: Message?
        public var data: String?
    }

    public struct Update: Codable, Sendable, Equatable {
        public var updateID: Int64
        public var message: Message?
        public var callbackQuery: CallbackQuery?
        enum CodingKeys: String, CodingKey { case updateID = "update_id", message, callbackQuery = "callback_query" }
    }

    public struct File: Codable, Sendable {
        public var fileID: String
        public var filePath: String?
        enum CodingKeys: String, CodingKey { case fileID = "file_id", filePath = "file_path" }
    }

    public struct WebhookInfo: Codable, Sendable, Equatable {
        public var url: String
        public var pendingUpdateCount: Int
        public var lastErrorDate: Int64?
        public var lastErrorMessage: String?
        enum CodingKeys: String, CodingKey {
            case url, pendingUpdateCount = "pending_update_count", lastErrorDate = "last_error_date", lastErrorMessage = "last_error_message"
        }
    }

    public struct Button: Codable, Sendable, Equatable {
        public var text: String
        public var callbackData: String
        public init(_ text: String, data: String) {
            self.text = text
            self.callbackData = data
        }
        enum CodingKeys: String, CodingKey { case text, callbackData = "callback_data" }
    }

    public struct Keyboard: Codable, Sendable, Equatable {
        public var inlineKeyboard: [[Button]]
        public init(_ rows: [[Button]]) { self.inlineKeyboard = rows }
        enum CodingKeys: String, CodingKey { case inlineKeyboard = "inline_keyboard" }
    }

    /// What an answer to a method with no interesting result decodes as (`true`, a message…).
    public struct Ignored: Decodable, Sendable {
        public init(from decoder: any Decoder) throws {}
    }

    // MARK: method parameters

    public struct GetUpdates: Encodable, Sendable {
        public var offset: Int64
        public var timeout: Int
        public var allowedUpdates = ["message", "callback_query"]
        enum CodingKeys: String, CodingKey { case offset, timeout, allowedUpdates = "allowed_updates" }
    }

    public struct SetWebhook: Encodable, Sendable {
        public var url: String
        public var secretToken: String
        public var allowedUpdates = ["message", "callback_query"]
        public var dropPendingUpdates = false
        enum CodingKeys: String, CodingKey {
            case url, secretToken = "secret_token", allowedUpdates = "allowed_updates", dropPendingUpdates = "drop_pending_updates"
        }
    }

    public struct DeleteWebhook: Encodable, Sendable {
        public var dropPendingUpdates = false
        enum CodingKeys: String, CodingKey { case dropPendingUpdates = "drop_pending_updates" }
    }

    public struct GetFile: Encodable, Sendable {
        public var fileID: String
        enum CodingKeys: String, CodingKey { case fileID = "file_id" }
    }

    public struct None: Encodable, Sendable {}
}

/// A message the bot sends: a text, or a photo of an invite's QR code (drawn when it is sent, so
/// the outbox keeps text only), or the answer to a button press.
public enum OutgoingMessage: Codable, Sendable, Equatable {
    case text(chatID: Int64, text: String, keyboard: BotAPI.Keyboard?)
    case inviteQR(chatID: Int64, url: String, caption: String)
    case callbackAnswer(queryID: String, text: String?)
    /// A picker's buttons redrawn (`editMessageReplyMarkup`).
    case editKeyboard(chatID: Int64, messageID: Int64, keyboard: BotAPI.Keyboard)

    /// The chat whose order and pace the message follows (nil: none, it is answered at once).
    public var chatID: Int64? {
        switch self {
        case .text(let chatID, _, _), .inviteQR(let chatID, _, _), .editKeyboard(let chatID, _, _): chatID
        case .callbackAnswer: nil
        }
    }

    /// Whether Telegram accepting it counts in `messages_out` (`send…` methods, not callback answers).
    public var countsAsMessage: Bool {
        switch self {
        case .text, .inviteQR: true
        case .callbackAnswer, .editKeyboard: false
        }
    }
}
