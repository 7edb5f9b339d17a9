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

extension Submission {
    func json(full: Bool) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(id), "automation_slug": .string(automationSlug), "status": .string(status.rawValue),
            "created_at": .string(createdAt.rfc3339), "updated_at": .string(updatedAt.rfc3339),
        ]
        if full {
            object["payload"] = payload
            object["result"] = result ?? .null
            object["error"] = error ?? .null
            object["attempts"] = .int(Int64(attempts))
        }
        return .object(object)
    }
}

func page(_ items: [JSONValue], next: String?) -> JSONValue {
    ["items": .array(items), "next_cursor": next.map(JSONValue.string) ?? .null]
}
