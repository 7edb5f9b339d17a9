import Kernel

/// The JSON shapes of the access contract (snake_case, nulls written out).
extension APIKey {
    func json(secret: String? = nil) -> JSONValue {
        var object: [String: JSONValue] = [
            "key_id": .string(id), "prefix": .string(prefix), "name": .string(name), "role": .string(role.rawValue),
            "user_id": userID.map(JSONValue.string) ?? .null, "deliverer_id": delivererID.map(JSONValue.string) ?? .null,
            "created_at": .string(createdAt.rfc3339), "expires_at": expiresAt.map { .string($0.rfc3339) } ?? .null,
            "last_used_at": lastUsedAt.map { .string($0.rfc3339) } ?? .null, "revoked": .bool(revoked),
            "revoked_at": revokedAt.map { .string($0.rfc3339) } ?? .null, "replaced_by": replacedBy.map(JSONValue.string) ?? .null,
        ]
        if let secret { object["key"] = .string(secret) }
        if let channelID { object["channel_id"] = .string(channelID) }
        return .object(object)
    }
}

extension LoginSession {
    func json(current: String?) -> JSONValue {
        [
            "session_id": .string(id), "user_id": userID.map(JSONValue.string) ?? .null,
            "deliverer_id": delivererID.map(JSONValue.string) ?? .null, "role": .string(role.rawValue), "roles": [.string(role.rawValue)],
            "ip": ip.map(JSONValue.string) ?? .null, "user_agent": userAgent.map(JSONValue.string) ?? .null,
            "created_at": .string(createdAt.rfc3339), "expires_at": .string(expiresAt.rfc3339), "last_seen_at": .string(lastSeenAt.rfc3339),
            "revoked": .bool(revoked), "current": .bool(id == current),
        ]
    }
}

extension AuthAudit {
    var json: JSONValue {
        [
            "id": .string(id), "timestamp": .string(timestamp.rfc3339), "user_id": userID.map(JSONValue.string) ?? .null,
            "action": .string(action), "status": .string(status.rawValue), "details": JSONValue.parse(details),
        ]
    }
}

/// A submission as JSON, written straight into the response: a big import's payload and result
/// are copied as stored, never parsed and encoded again.
struct SubmissionJSON: JSONWritable {
    var submission: Submission
    var full: Bool

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("id", submission.id)
        writer.field("automation_slug", submission.automationSlug)
        writer.field("status", submission.status.rawValue)
        writer.field("created_at", submission.createdAt)
        writer.field("updated_at", submission.updatedAt)
        if full {
            writer.key("payload")
            writer.raw(json: submission.payload.canonicalText())
            writer.key("result")
            writer.raw(json: submission.result ?? "null")
            writer.key("error")
            writer.raw(json: submission.error ?? "null")
            writer.field("attempts", submission.attempts)
        }
        writer.endObject()
    }
}

struct SubmissionPage: JSONWritable {
    var items: [Submission]
    var next: String?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("items")
        writer.beginArray()
        for item in items { SubmissionJSON(submission: item, full: false).write(to: &writer) }
        writer.endArray()
        writer.field("next_cursor", next)
        writer.endObject()
    }
}

func page(_ items: [JSONValue], next: String?) -> JSONValue {
    ["items": .array(items), "next_cursor": next.map(JSONValue.string) ?? .null]
}
