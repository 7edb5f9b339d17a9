import Crypto
import Foundation
import Hummingbird
import Kernel

/// The conversations contract's HTTP surface: decode, call the service, encode.
public struct ConversationRoutes: Sendable {
    let service: ConversationService

    public init(service: ConversationService) { self.service = service }

    struct OpenBody: Decodable {
        var channel: String
        var contact: String
        /// The tenant: an admin names it; an owner's or channel key's is its own.
        var userID: String?
        enum CodingKeys: String, CodingKey { case channel, contact, userID = "user_id" }
    }

    struct ConsentBody: Decodable { var given: Bool }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let service = service
        let tag = "conversations"
        routes.add(.init(.post, "/api/conversations", summary: "The live conversation of a contact on a channel of the tenant (200), or a new one (201)", tag: tag, request: "OpenConversation", response: "Conversation", status: 201, errors: [400, 403, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: OpenBody.self, context: context)
            return try await IdempotencySlot.respond {
                try await service.open(userID: body.userID, channel: body.channel, contact: body.contact, caller: context.caller)
            } render: { .json(ConversationJSON(conversation: $0.conversation), status: $0.created ? .created : .ok) }
        }
        routes.add(.init(.get, "/api/conversations/{id}", summary: "One conversation with its computed lead figures", tag: tag, response: "Conversation", errors: [404]), to: router) { _, context in
            JSONResponse.write(ConversationJSON(conversation: try await service.conversation(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.get, "/api/conversations/{id}/messages", summary: "The last messages, oldest first", tag: tag, response: "ConversationMessages", errors: [404, 422], query: [.limit(maximum: 1000)]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...1000)
            let conversation = try await service.conversation(try context.parameters.require("id"), caller: context.caller)
            return JSONResponse.write(MessagesJSON(messages: Array(conversation.messages.suffix(limit))))
        }
        routes.add(.init(.post, "/api/conversations/{id}/turns", summary: "Apply turn current + 1 (the same turn again with the same body changes nothing)", tag: tag, request: "ConversationTurn", response: "Conversation", errors: [400, 404, 409, 422]), to: router) { request, context in
            var request = request
            let buffer = try await request.collectBody(upTo: context.maxUploadSize)
            let turn = try Self.turn(buffer)
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.turn(id, turn, caller: context.caller)
            } render: { .json(ConversationJSON(conversation: $0)) }
        }
        routes.add(.init(.post, "/api/conversations/{id}/consent", summary: "The contact's consent (LGPD): given, or withdrawn (clears the profile)", tag: tag, request: "ConversationConsent", response: "Conversation", errors: [400, 404, 409, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: ConsentBody.self, context: context)
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.consent(id, given: body.given, caller: context.caller)
            } render: { .json(ConversationJSON(conversation: $0)) }
        }
        routes.add(.init(.post, "/api/conversations/{id}/expire", summary: "Archive the conversation now", tag: tag, response: "Conversation", errors: [404]), to: router) { _, context in
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.expire(id, caller: context.caller)
            } render: { .json(ConversationJSON(conversation: $0)) }
        }
        routes.add(.init(.get, "/api/conversations/contact/{contact}/history", summary: "A contact's archived conversations in the tenant, newest first (admin: every tenant's, or ?user_id=)", tag: tag, response: "ConversationHistory", errors: [403, 422], query: [.limit(maximum: 200), QueryParameter("user_id", schema: ["type": "string"])]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 20, range: 1...200)
            let items = try await service.history(
                contact: try context.parameters.require("contact"), userID: request.queryString("user_id"), limit: limit, caller: context.caller)
            return JSONResponse.write(HistoryJSON(items: items))
        }
        routes.add(.init(.delete, "/api/conversations/contact/{contact}", summary: "Erase a contact in the tenant (admin: every tenant's, or ?user_id=): conversations, messages, their events' data, chat updates and sent texts, stored answers", tag: tag, response: "ConversationErasure", errors: [403, 422], query: [QueryParameter("user_id", schema: ["type": "string"])]), to: router) { request, context in
            let erased = try await service.erase(contact: try context.parameters.require("contact"), userID: request.queryString("user_id"), caller: context.caller)
            return JSONResponse.write(ErasedJSON(conversations: erased.conversations, messages: erased.messages))
        }
    }

    /// Decodes a turn; its digest is SHA-256 of the body's canonical JSON, so the same turn sent
    /// again with its keys in another order is still the same turn.
    static func turn(_ buffer: ByteBuffer) throws -> Turn {
        guard case .object(let body) = try JSONBody.decode(JSONValue.self, from: buffer) else { throw Problem.malformedBody("a turn is a JSON object") }
        guard case .int(let turnID)? = body["turn_id"] else { throw ConversationError.invalid(field: "turn_id", detail: "turn_id is a whole number, the current one + 1") }
        var messages: [(role: ConversationMessage.Role, content: String)] = []
        if let value = body["messages"], value != .null {
            guard case .array(let items) = value, items.count <= 100 else { throw ConversationError.invalid(field: "messages", detail: "a list of at most 100 messages") }
            for (index, item) in items.enumerated() {
                guard case .object(let message) = item, case .string(let roleText)? = message["role"], let role = ConversationMessage.Role(rawValue: roleText) else {
                    throw ConversationError.invalid(field: "messages[\(index)].role", detail: "role is user, assistant or system")
                }
                guard case .string(let content)? = message["content"], !content.isEmpty, content.utf8.count <= 16_384 else {
                    throw ConversationError.invalid(field: "messages[\(index)].content", detail: "content is a non-empty string of at most 16 KB")
                }
                messages.append((role, content))
            }
        }
        var state: ConversationState?
        if let value = body["state"], value != .null {
            guard case .string(let text) = value, let parsed = ConversationState(rawValue: text) else {
                throw ConversationError.invalid(field: "state", detail: "state is one of \(ConversationState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            state = parsed
        }
        var profile: [String: JSONValue]?
        if let value = body["profile"], value != .null {
            guard case .object(let fields) = value else { throw ConversationError.invalid(field: "profile", detail: "profile is an object of profile fields") }
            profile = fields
        }
        var summary: String?
        if let value = body["summary"], value != .null {
            guard case .string(let text) = value, text.utf8.count <= 16_384 else { throw ConversationError.invalid(field: "summary", detail: "summary is a string of at most 16 KB") }
            summary = text
        }
        let digest = SHA256.hash(data: Data(JSONValue.object(body).canonicalText().utf8)).map { String(format: "%02x", $0) }.joined()
        return Turn(turnID: turnID, messages: messages, state: state, profile: profile, summary: summary, digest: digest)
    }
}

struct ConversationJSON: JSONWritable {
    var conversation: Conversation

    func write(to writer: inout JSONWriter) {
        let score = conversation.qualificationScore
        writer.beginObject()
        writer.field("conversation_id", conversation.id)
        writer.field("user_id", conversation.userID)
        writer.field("channel", conversation.channel)
        writer.field("contact", conversation.contact)
        writer.field("state", conversation.state.rawValue)
        writer.field("turn_id", conversation.turnID)
        writer.field("summary", conversation.summary)
        writer.field("profile", conversation.profile)
        writer.field("interaction_count", conversation.interactionCount)
        writer.field("completeness", conversation.profile.completeness)
        writer.field("qualification_score", score)
        writer.field("lead_class", LeadProfile.leadClass(score: score).rawValue)
        writer.field("consent_given", conversation.consentGiven)
        writer.field("consent_at", conversation.consentAt)
        writer.field("created_at", conversation.createdAt)
        writer.field("updated_at", conversation.updatedAt)
        writer.field("expires_at", conversation.expiresAt)
        writer.field("archived_at", conversation.archivedAt)
        writer.endObject()
    }
}

struct MessagesJSON: JSONWritable {
    var messages: [ConversationMessage]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("items")
        writer.beginArray()
        for message in messages {
            writer.beginObject()
            writer.field("seq", message.seq)
            writer.field("role", message.role.rawValue)
            writer.field("content", message.content)
            writer.field("created_at", message.createdAt)
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
    }
}

struct HistoryJSON: JSONWritable {
    var items: [Conversation]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("items", array: items.map(ConversationJSON.init))
        writer.endObject()
    }
}

struct ErasedJSON: JSONWritable {
    var conversations: Int
    var messages: Int

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("erased")
        writer.beginObject()
        writer.field("conversations", conversations)
        writer.field("messages", messages)
        writer.endObject()
        writer.endObject()
    }
}
