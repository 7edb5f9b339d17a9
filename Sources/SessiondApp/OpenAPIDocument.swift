import Kernel

/// OpenAPI 3.1, built from the route registry (so no route can be missing) and the schemas below.
enum OpenAPIDocument {
    static func make(routes: [RouteDescription], eventTypes: [(type: String, summary: String)]) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for route in routes {
            var operation: [String: JSONValue] = [
                "summary": .string(route.summary),
                "tags": .array([.string(route.tag)]),
                "operationId": .string(operationID(route)),
            ]
            var parameters: [JSONValue] = route.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { part in
                ["name": .string(String(part.dropFirst().dropLast())), "in": "path", "required": true, "schema": ["type": "string"]]
            }
            for parameter in route.queryParameters {
                parameters.append(["name": .string(parameter.name), "in": "query", "required": false, "schema": parameter.schema])
            }
            var errors = route.errorStatuses
            switch route.access {
            case .key:
                operation["security"] = [["bearerAuth": []], ["apiKeyHeader": []], ["loginCookie": []]]
                errors += [401, 403, 429]
            case .public:
                operation["security"] = []
            }
            if route.method == .post, route.errorMediaType == "application/problem+json" {
                parameters.append([
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "schema": ["type": "string", "pattern": "^[!-~]{1,255}$"],
                    "description": "Replays the first answer for 24 h; the same key with another request is a 422, and while the first request runs, a 409.",
                ])
                errors += [409, 422, 503]
            }
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let request = route.requestSchema {
                var content: [String: JSONValue] = [route.requestMediaType: ["schema": ref(request)]]
                for (mediaType, schema) in route.alternativeRequests { content[mediaType] = ["schema": ref(schema)] }
                operation["requestBody"] = ["required": true, "content": .object(content)]
            }
            var responses: [String: JSONValue] = [:]
            var success: [String: JSONValue] = ["description": .string(route.successStatus == 204 ? "No content" : "Success")]
            if let response = route.responseSchema {
                success["content"] = .object([route.responseMediaType: ["schema": ref(response)]])
            }
            responses[String(route.successStatus)] = .object(success)
            for status in Set(errors).sorted() {
                let content: JSONValue = route.errorMediaType == "application/problem+json" ? ["schema": ref("Problem")] : [:]
                var problem: JSONValue = ["description": .string(Self.describe(status)), "content": .object([route.errorMediaType: content])]
                if status == 429, case .object(var object) = problem {
                    object["headers"] = [
                        "Retry-After": ["schema": integer], "RateLimit-Limit": ["schema": integer],
                        "RateLimit-Remaining": ["schema": integer], "RateLimit-Reset": ["schema": integer],
                    ]
                    problem = .object(object)
                }
                responses[String(status)] = problem
            }
            operation["responses"] = .object(responses)
            paths[route.path, default: [:]][route.method.rawValue.lowercased()] = .object(operation)
        }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "sessiond", "version": "0.1.0",
                "description": "Durable session engine for chat-driven operations: delivery sessions with packages, deliverers, money and an audit trail; API keys, roles, login sessions, auth audits and background submissions. Every /api/ route needs a key.",
            ],
            "paths": .object(paths.mapValues { .object($0) }),
            "components": [
                "schemas": .object(schemas.merging(accessSchemas) { first, _ in first }.merging(eventSchemas(eventTypes)) { first, _ in first }.merging(webhookSchemas) { first, _ in first }.merging(conversationSchemas) { first, _ in first }.merging(scanSchemas) { first, _ in first }.merging(channelSchemas) { first, _ in first }),
                "securitySchemes": [
                    "bearerAuth": ["type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer sdk_…` (or the admin key)."],
                    "apiKeyHeader": ["type": "apiKey", "in": "header", "name": "X-API-Key"],
                    "loginCookie": [
                        "type": "apiKey", "in": "cookie", "name": "sessiond_session",
                        "description": "A login session; changes made with it need this server's Origin.",
                    ],
                ],
            ],
        ]
    }

    static func describe(_ status: Int) -> String {
        switch status {
        case 401: "No valid credential: missing-key, malformed-key, invalid-key, expired-key, revoked-key (or the login session's)"
        case 403: "The caller's role may not do this"
        case 404: "Not found, or not visible to the caller"
        case 429: "Rate limited: retry after Retry-After seconds"
        case 503: "Other writes to the same session kept winning (write-contention): retry after Retry-After seconds"
        default: "Problem"
        }
    }

    /// The event log's shapes; every event type is listed, with what it means.
    static func eventSchemas(_ types: [(type: String, summary: String)]) -> [String: JSONValue] {
        let catalog = types.sorted { $0.type < $1.type }
        let listing = catalog.map { "- `\($0.type)`: \($0.summary)" }.joined(separator: "\n")
        return [
            "Event": object(
                [
                    "event_id": ["type": "string", "pattern": "^[0-9a-f]{32}$", "description": "Opaque cursor; sorts in commit order."],
                    "type": ["type": "string", "enum": .array(catalog.map { .string($0.type) }), "description": .string("Event types:\n" + listing)],
                    "session_id": nullableString, "user_id": nullableString, "created_at": time,
                    "seq": ["type": ["integer", "null"], "description": "The event's number within its session: 1, 2, 3… without gaps."],
                    "data": ["type": "object"],
                ], required: ["event_id", "type", "created_at", "data"]),
            "EventPage": object(["items": array(ref("Event")), "next_cursor": string]),
            "EventTypes": object(["items": array(object(["type": string, "description": string]))]),
            "EventStream": [
                "type": "string",
                "description": "Server-Sent Events: each message has `id:` (the event_id), `event:` (the type) and `data:` (the Event as JSON); send `Last-Event-ID` to resume; a `: keep-alive` comment at least every 15 s.",
            ],
            "Metrics": ["type": "string", "description": "Prometheus text exposition format."],
        ]
    }

    /// The conversations' shapes.
    static var conversationSchemas: [String: JSONValue] {
        let states: JSONValue = ["type": "string", "enum": ["greeting", "collecting_profile", "qualifying", "recommending", "negotiating", "scheduling", "handoff", "closed"]]
        let profile = object([
            "budget_min": ["type": .array(["integer", "null"])], "budget_max": ["type": .array(["integer", "null"])], "main_use": nullableString,
            "city": nullableString, "state": nullableString, "priorities": array(string), "preferred_brands": array(string), "preferred_types": array(string),
            "urgency": ["type": .array(["string", "null"]), "enum": ["immediate", "1-3 months", "3-6 months", "exploring", .null]],
        ])
        let conversation = object([
            "conversation_id": string, "user_id": string, "channel": string, "contact": string, "state": states, "turn_id": integer, "summary": nullableString,
            "profile": profile, "interaction_count": integer, "completeness": ["type": "number"], "qualification_score": integer,
            "lead_class": ["type": "string", "enum": ["high", "medium", "low"]], "consent_given": bool, "consent_at": nullableTime,
            "created_at": time, "updated_at": time, "expires_at": time, "archived_at": nullableTime,
        ])
        return [
            "OpenConversation": object(["channel": string, "contact": string, "user_id": string], required: ["channel", "contact"]),
            "Conversation": conversation,
            "ConversationMessages": object(["items": array(object(["seq": integer, "role": ["type": "string", "enum": ["user", "assistant", "system"]], "content": string, "created_at": time]))]),
            "ConversationTurn": object(
                [
                    "turn_id": integer, "messages": array(object(["role": string, "content": string])), "state": states,
                    "profile": ["type": "object"], "summary": string,
                ], required: ["turn_id"]),
            "ConversationConsent": object(["given": bool], required: ["given"]),
            "ConversationHistory": object(["items": array(ref("Conversation"))]),
            "ConversationErasure": object(["erased": object(["conversations": integer, "messages": integer])]),
        ]
    }

    /// The channels shapes (tokens, proxy passwords and webhook secrets are write-only: never in an answer).
    static var channelSchemas: [String: JSONValue] {
        let nullableInteger: JSONValue = ["type": .array(["integer", "null"])]
        let token: JSONValue = ["type": "string", "pattern": "^[0-9]+:[A-Za-z0-9_-]{20,}$", "writeOnly": true, "description": "The bot's token from @BotFather (stored encrypted)."]
        let proxyIn = object(
            [
                "type": ["type": "string", "enum": ["http", "socks5"]], "host": string, "port": ["type": "integer", "minimum": 1, "maximum": 65535],
                "username": string, "password": ["type": "string", "writeOnly": true],
            ], required: ["type", "host", "port"])
        let proxyOut: JSONValue = [
            "oneOf": [object(["type": string, "host": string, "port": integer, "username": nullableString, "has_password": bool]), ["type": "null"]],
        ]
        let channel: [String: JSONValue] = [
            "channel_id": string, "kind": ["type": "string", "enum": ["telegram"]], "name": string, "user_id": string,
            "mode": ["type": "string", "enum": ["polling", "webhook"]], "proxy": proxyOut, "default_package_value_cents": integer,
            "bot": ["oneOf": [object(["id": integer, "username": nullableString, "first_name": string]), ["type": "null"]]],
            "desired": ["type": "string", "enum": ["connected", "disconnected"]],
            "status": ["type": "string", "enum": ["disconnected", "connecting", "connected", "error"]], "last_error": nullableString,
            "last_error_at": nullableTime, "since": time, "webhook_url": nullableString, "api_key_id": string, "created_at": time, "updated_at": time,
        ]
        var created = channel
        created["api_key"] = ["type": "string", "description": "The channel's own key (role channel): shown in this answer only."]
        let invite: [String: JSONValue] = [
            "invite_id": string, "channel_id": string, "role": ["type": "string", "enum": ["owner", "deliverer"]], "user_id": nullableString,
            "deliverer_id": nullableString, "name": nullableString, "base_salary_cents": integer, "commission_per_delivery_cents": integer,
            "token": ["type": "string", "description": "Shown when the invite is made only."], "url": ["type": "string", "description": "https://t.me/<bot>?start=<token>"],
            "qr_url": string, "created_at": time, "expires_at": time, "used_at": nullableTime, "used_by_telegram_user_id": nullableInteger, "revoked_at": nullableTime,
        ]
        let link = object([
            "link_id": string, "channel_id": string, "role": ["type": "string", "enum": ["owner", "deliverer"]], "user_id": nullableString,
            "deliverer_id": nullableString, "name": nullableString, "base_salary_cents": integer, "commission_per_delivery_cents": integer,
            "telegram_user_id": integer, "chat_id": integer, "telegram_username": nullableString, "created_at": time,
        ])
        return [
            "CreateChannel": object(
                [
                    "kind": ["type": "string", "enum": ["telegram"]], "name": string, "user_id": string, "token": token,
                    "mode": ["type": "string", "enum": ["polling", "webhook"]], "proxy": proxyIn, "default_package_value_cents": integer,
                ], required: ["kind", "name", "user_id", "token"]),
            "UpdateChannel": object([
                "name": string, "token": token, "mode": ["type": "string", "enum": ["polling", "webhook"]],
                "proxy": ["oneOf": [proxyIn, ["type": "null"]], "description": "null removes the proxy"], "default_package_value_cents": integer,
            ]),
            "Channel": object(channel),
            "CreatedChannel": object(created),
            "ChannelPage": object(["items": array(ref("Channel")), "next_cursor": nullableString]),
            "ChannelStatus": object([
                "channel_id": string, "desired": string, "status": string, "last_error": nullableString, "last_error_at": nullableTime, "since": time,
                "mode": string, "bot_username": nullableString,
                "webhook": [
                    "oneOf": [
                        object(["url": string, "pending_update_count": nullableInteger, "last_error_date": nullableTime, "last_error_message": nullableString]),
                        ["type": "null"],
                    ]
                ],
            ]),
            "ChannelStats": object(["channel_id": string, "updates_in": integer, "messages_out": integer, "errors": integer, "last_activity_at": nullableTime]),
            "ProxyTest": object(["ok": bool, "latency_ms": integer, "exit_ip": nullableString, "error": nullableString]),
            "CreateInvite": object(
                [
                    "role": ["type": "string", "enum": ["owner", "deliverer"]], "user_id": string, "deliverer_id": string, "name": string,
                    "base_salary_cents": integer, "commission_per_delivery_cents": integer, "expires_in": ["type": "integer", "minimum": 1, "maximum": 2_592_000],
                ], required: ["role"]),
            "Invite": object(invite),
            "InvitePage": object(["items": array(ref("Invite")), "next_cursor": nullableString]),
            "LinkPage": object(["items": array(link), "next_cursor": nullableString]),
        ]
    }

    /// The scanning shapes.
    static var scanSchemas: [String: JSONValue] {
        let number: JSONValue = ["type": "number"]
        let formats: JSONValue = ["type": .array(["string", "null"]), "description": "code128, code39, ean13, ean8, upca, upce, itf, qr, datamatrix, s10 (OCR of a Correios number), …"]
        let candidate = object(["barcode": string, "confidence": number, "package_id": nullableString])
        let step = object(["step": string, "variant": string, "elapsed_ms": number, "result": array(string)])
        return [
            "ScanImage": ["type": "string", "contentMediaType": "image/jpeg", "description": "The photo's bytes (JPEG or PNG), up to SCAN_MAX_BYTES."],
            "ScanForm": object([
                "image": ["type": "string", "contentMediaType": "application/octet-stream", "description": "The photo (JPEG or PNG)."],
                "intent": ["type": "string", "enum": ["lookup", "add", "deliver"]], "deliverer_id": string,
            ], required: ["image"]),
            "ScanResult": object([
                "found": bool, "barcode": nullableString, "format": formats,
                "method": ["type": .array(["string", "null"]), "enum": ["zbar", "zxing", "ocr", "match", .null]],
                "confidence": number, "package": ["oneOf": [ref("Package"), ["type": "null"]]], "candidates": array(candidate),
                "attempt_id": string, "elapsed_ms": number, "intent": string,
                "outcome": ["type": "string", "enum": ["none", "added", "duplicate", "delivered"]],
            ]),
            "ScanAttemptPage": object([
                "items": array(object([
                    "attempt_id": string, "session_id": string, "actor_id": nullableString, "intent": string, "found": bool,
                    "barcode": nullableString, "format": nullableString, "method": nullableString, "confidence": number,
                    "package_id": nullableString, "outcome": ["type": "string", "enum": ["none", "added", "duplicate", "delivered", "rejected", "error"]],
                    "candidates": array(candidate), "steps": array(step),
                    "image": object(["bytes": integer, "width": ["type": .array(["integer", "null"])], "height": ["type": .array(["integer", "null"])]]),
                    "elapsed_ms": number, "error": nullableString, "created_at": time,
                ])),
                "next_cursor": nullableString,
            ]),
        ]
    }

    /// The webhooks' shapes.
    static var webhookSchemas: [String: JSONValue] {
        let nullableInteger: JSONValue = ["type": .array(["integer", "null"])]
        let nullableNumber: JSONValue = ["type": .array(["number", "null"])]
        let events: JSONValue = [
            "type": "array", "items": string, "description": "Exact types and prefixes such as `delivery.*`; empty (or `*`) is every type.",
        ]
        let endpoint: [String: JSONValue] = [
            "endpoint_id": string, "url": string, "events": events, "description": string, "enabled": bool, "user_id": nullableString,
            "disabled_reason": ["type": .array(["string", "null"]), "description": "`gone` (the receiver answered 410) or `failing` (failed for WEBHOOK_DISABLE_AFTER)."],
            "previous_secret_expires_at": nullableTime, "consecutive_failures": integer, "failing_since": nullableTime, "circuit_open_until": nullableTime,
            "created_at": time, "updated_at": time,
        ]
        var created = endpoint
        created["secret"] = ["type": "string", "pattern": "^whsec_", "description": "The signing secret: shown in this answer only."]
        return [
            "CreateWebhook": object(
                [
                    "url": ["type": "string", "format": "uri"], "events": events, "description": string, "enabled": bool,
                    "user_id": ["type": "string", "description": "Admin only: the owner whose events it receives (none: every event)."],
                ], required: ["url"]),
            "UpdateWebhook": object(["url": ["type": "string", "format": "uri"], "events": events, "description": string, "enabled": bool]),
            "ReplayWebhook": object(["since": time, "event_id": ["type": "string", "pattern": "^[0-9a-f]{32}$"]]),
            "Webhook": object(endpoint, required: ["endpoint_id", "url", "events", "enabled", "created_at"]),
            "CreatedWebhook": object(created, required: ["endpoint_id", "url", "events", "enabled", "secret", "created_at"]),
            "WebhookPage": object(["items": array(ref("Webhook")), "next_cursor": nullableString]),
            "WebhookQueued": object(["endpoint_id": string, "type": string, "queued": integer]),
            "WebhookDelivery": object([
                "delivery_id": string, "event_id": string, "event_type": string, "attempt": integer,
                "status": ["type": "string", "enum": ["succeeded", "failed"]], "response_status": nullableInteger, "latency_ms": integer,
                "error": nullableString, "response_body": ["type": .array(["string", "null"]), "description": "The first 20 KB of the answer."],
                "created_at": time,
            ]),
            "WebhookDeliveryPage": object(["items": array(ref("WebhookDelivery")), "next_cursor": nullableString]),
            "WebhookStats": object([
                "items": array(
                    object([
                        "endpoint_id": string, "url": string, "enabled": bool, "disabled_reason": nullableString, "pending": integer, "succeeded": integer,
                        "failed": integer, "aborted": integer, "attempts_24h": integer, "failed_attempts_24h": integer, "success_rate_24h": nullableNumber,
                        "avg_latency_ms_24h": nullableNumber, "max_latency_ms_24h": nullableInteger, "last_success_at": nullableTime, "last_failure_at": nullableTime,
                        "consecutive_failures": integer, "circuit": ["type": "string", "enum": ["closed", "open", "half_open"]],
                    ])),
                "totals": object([
                    "endpoints": integer, "pending": integer, "succeeded": integer, "failed": integer, "attempts_24h": integer, "failed_attempts_24h": integer,
                ]),
            ]),
        ]
    }

    static var accessSchemas: [String: JSONValue] {
        let nullableTimeRef = nullableTime
        let key: [String: JSONValue] = [
            "key_id": string, "prefix": string, "name": string,
            "role": ["type": "string", "enum": ["admin", "owner", "viewer", "deliverer", "channel"]],
            "user_id": nullableString, "deliverer_id": nullableString, "created_at": time, "expires_at": nullableTimeRef,
            "last_used_at": nullableTimeRef, "revoked": bool, "revoked_at": nullableTimeRef, "replaced_by": nullableString,
        ]
        var created = key
        created["key"] = ["type": "string", "description": "The secret: shown in this answer only."]
        let submission: [String: JSONValue] = [
            "id": string, "automation_slug": string, "status": ["type": "string", "enum": ["pending", "processing", "success", "error"]],
            "created_at": time, "updated_at": time,
        ]
        var detail = submission
        detail["payload"] = ["type": "object"]
        detail["result"] = ["type": .array(["object", "null"])]
        detail["error"] = ["type": .array(["object", "null"])]
        detail["attempts"] = integer
        let loginSession = object([
            "session_id": string, "user_id": nullableString, "deliverer_id": nullableString, "role": string, "roles": array(string),
            "ip": nullableString, "user_agent": nullableString, "created_at": time, "expires_at": time, "last_seen_at": time,
            "revoked": bool, "current": bool,
        ])
        return [
            "CreateKey": object(
                [
                    "name": ["type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"],
                    "role": ["type": "string", "enum": ["admin", "owner", "viewer", "deliverer", "channel"]],
                    "user_id": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"],
                    "deliverer_id": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"],
                    "expires_at": ["type": "string", "format": "date-time"],
                ], required: ["name", "role"]),
            "Key": object(key),
            "CreatedKey": object(created, required: ["key_id", "key", "prefix", "role"]),
            "KeyPage": object(["items": array(ref("Key")), "next_cursor": nullableString]),
            "LoginLinkRequest": object(["user_id": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"]]),
            "LoginLink": object(["url": string, "expires_at": time], required: ["url", "expires_at"]),
            "WhoAmI": object([
                "kind": ["type": "string", "enum": ["api_key", "login_session"]], "role": string, "principal_id": nullableString,
                "user_id": nullableString, "deliverer_id": nullableString, "key_id": nullableString, "session_id": nullableString,
                "expires_at": nullableTimeRef,
            ]),
            "LoginSession": loginSession,
            "LoginSessionPage": object(["items": array(ref("LoginSession")), "next_cursor": nullableString]),
            "RevokedCount": object(["revoked": integer]),
            "LoggedOut": object(["logged_out": bool]),
            "AuditLogPage": object([
                "items": array(object([
                    "id": string, "timestamp": time, "user_id": nullableString, "action": string,
                    "status": ["type": "string", "enum": ["success", "failure"]], "details": ["type": "object"],
                ])),
                "next_cursor": nullableString,
            ]),
            "SubmissionRequest": object(
                ["automation_slug": ["type": "string", "enum": ["package-import", "session-report", "barcode-scan"]], "payload": ["type": "object"]],
                required: ["automation_slug", "payload"]),
            "Submission": object(submission),
            "SubmissionDetail": object(detail),
            "SubmissionPage": object(["items": array(ref("Submission")), "next_cursor": nullableString]),
        ]
    }

    static func operationID(_ route: RouteDescription) -> String {
        let words = route.path.split(separator: "/").map { $0.hasPrefix("{") ? "by_" + $0.dropFirst().dropLast() : String($0) }
        return route.method.rawValue.lowercased() + "_" + words.joined(separator: "_").replacingOccurrences(of: "-", with: "_")
    }

    static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }

    static let string: JSONValue = ["type": "string"]
    /// A string the API refuses when empty or blank.
    static let required: JSONValue = ["type": "string", "minLength": 1, "pattern": "\\S"]
    static let nullableString: JSONValue = ["type": .array(["string", "null"])]
    static let integer: JSONValue = ["type": "integer"]
    static let cents: JSONValue = ["type": "integer", "minimum": 0, "description": "Integer cents (BRL)."]
    static let time: JSONValue = ["type": "string", "format": "date-time"]
    static let nullableTime: JSONValue = ["type": .array(["string", "null"]), "format": "date-time"]
    static let bool: JSONValue = ["type": "boolean"]

    static func object(_ properties: [String: JSONValue], required: [String] = []) -> JSONValue {
        var schema: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { schema["required"] = .array(required.map(JSONValue.string)) }
        return .object(schema)
    }

    static func array(_ items: JSONValue) -> JSONValue { ["type": "array", "items": items] }

    static let sessionProperties: [String: JSONValue] = [
        "session_id": string, "user_id": string, "name": nullableString,
        "status": ["type": "string", "enum": .array(["open", "active", "paused", "completed", "archived"])],
        "version": integer, "created_at": time, "started_at": nullableTime, "paused_at": nullableTime,
        "completed_at": nullableTime, "archived_at": nullableTime, "is_readonly": bool, "was_reused": bool,
        "reuse_count": integer, "packages_total": integer, "packages_delivered": integer, "packages_failed": integer,
        "packages_pending": integer, "total_revenue_cents": integer, "total_cost_cents": integer, "total_profit_cents": integer,
        "financial_snapshot": ["oneOf": .array([ref("FinancialSnapshot"), ["type": "null"]])],
    ]

    /// `{package_id | barcode, deliverer_id}`: one of the two references, and the deliverer.
    static func mark(failed: Bool) -> JSONValue {
        var properties: [String: JSONValue] = ["deliverer_id": required]
        var needed: [JSONValue] = ["deliverer_id"]
        if failed {
            properties["reason"] = ["type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\S"]
            needed.append("reason")
        }
        let byID = properties.merging(["package_id": required]) { old, _ in old }
        let byBarcode = properties.merging(["barcode": required]) { old, _ in old }
        return [
            "anyOf": [
                ["type": "object", "properties": .object(byID), "required": .array(needed + ["package_id"])],
                ["type": "object", "properties": .object(byBarcode), "required": .array(needed + ["barcode"])],
            ]
        ]
    }

    static var schemas: [String: JSONValue] {
        let delivererPay = object([
            "deliverer_id": string, "name": nullableString, "packages_assigned": integer, "packages_delivered": integer,
            "packages_failed": integer, "base_salary_cents": cents, "commission_per_delivery_cents": cents, "total_earned_cents": cents,
        ])
        var document = sessionProperties
        document["packages"] = array(ref("Package"))
        document["addresses"] = array(ref("Address"))
        document["deliverers"] = array(ref("Deliverer"))
        document["audit"] = array(ref("AuditEntry"))
        let addressInput = object(
            [
                "street": string, "number": string, "district": string, "city": string, "state": string, "postal_code": string,
                "latitude": ["type": "number", "minimum": -90, "maximum": 90], "longitude": ["type": "number", "minimum": -180, "maximum": 180],
            ], required: ["street"])
        return [
            "Problem": object(
                ["type": string, "title": string, "status": integer, "detail": string, "field": string],
                required: ["type", "title", "status", "detail"]),
            "Health": object(["status": string]),
            "Readiness": object(["status": string, "database": string, "schema_version": integer, "expected_schema_version": integer]),
            "Session": object(sessionProperties, required: ["session_id", "user_id", "status"]),
            "SessionDocument": object(document, required: ["session_id", "packages", "addresses", "deliverers", "audit"]),
            "SessionPage": object(["items": array(ref("Session")), "next_cursor": nullableString]),
            "Package": object([
                "package_id": string, "barcode": string,
                "delivery_status": ["type": "string", "enum": .array(["pending", "picked_up", "delivered", "failed"])],
                "value_cents": cents, "recipient": nullableString, "address_id": nullableString, "assigned_deliverer_id": nullableString,
                "picked_up_at": nullableTime, "delivered_at": nullableTime, "failed_at": nullableTime, "failure_reason": nullableString,
                "created_at": time,
            ]),
            "Address": object([
                "address_id": string, "street": string, "number": nullableString, "district": nullableString, "city": nullableString,
                "state": nullableString, "postal_code": nullableString, "latitude": ["type": .array(["number", "null"])],
                "longitude": ["type": .array(["number", "null"])], "package_count": integer,
            ]),
            "Deliverer": object([
                "deliverer_id": string, "name": nullableString, "packages_assigned": integer, "packages_delivered": integer,
                "packages_failed": integer, "packages_pending": integer, "base_salary_cents": cents,
                "commission_per_delivery_cents": cents, "total_earned_cents": cents,
            ]),
            "AuditEntry": object([
                "seq": integer, "action": string, "actor_id": nullableString, "details": ["type": "object"], "created_at": time,
                "prev_hash": string, "hash": string,
            ]),
            "AuditPage": object(["items": array(ref("AuditEntry")), "next_cursor": nullableString]),
            "AuditVerification": object(["valid": bool, "entries": integer, "first_bad_seq": ["type": .array(["integer", "null"])]]),
            "FinancialSnapshot": object([
                "total_revenue_cents": integer, "total_cost_cents": integer, "total_profit_cents": integer, "packages_total": integer,
                "packages_delivered": integer, "packages_failed": integer, "packages_pending": integer,
                "deliverers": array(delivererPay), "completed_at": time,
            ]),
            "Dashboard": object([
                "session_id": string, "status": string, "packages_total": integer, "packages_delivered": integer,
                "packages_failed": integer, "packages_pending": integer, "packages_picked_up": integer,
                "progress_percent": ["type": "number"], "delivered_percent": ["type": "number"],
                "total_revenue_cents": integer, "total_cost_cents": integer, "total_profit_cents": integer,
                "deliverers": array(["type": "object"]),
            ]),
            "CreateSession": object(["user_id": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"], "name": ["type": "string", "maxLength": 200]], required: ["user_id"]),
            "AddPackages": object(
                [
                    "packages": [
                        "type": "array", "minItems": 1, "maxItems": 1000,
                        "items": object(
                            [
                                "barcode": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"],
                                "value_cents": ["type": "integer", "minimum": 0, "maximum": 1_000_000_000_000],
                                "recipient": ["type": "string", "maxLength": 500], "address": addressInput,
                            ], required: ["barcode"]),
                    ]
                ], required: ["packages"]),
            "AddPackagesResult": object(["added": array(ref("Package")), "duplicates": array(string)]),
            "Reuse": object(["user_id": required], required: ["user_id"]),
            "Start": object(
                [
                    "deliverers": [
                        "type": "array", "minItems": 1,
                        "items": object(
                            [
                                "deliverer_id": ["type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"], "name": string,
                                "base_salary_cents": ["type": "integer", "minimum": 0, "maximum": 1_000_000_000_000],
                                "commission_per_delivery_cents": ["type": "integer", "minimum": 0, "maximum": 1_000_000_000_000],
                            ],
                            required: ["deliverer_id", "base_salary_cents", "commission_per_delivery_cents"]),
                    ],
                    "assignments": ["type": "object", "additionalProperties": string, "description": "package_id → deliverer_id"],
                ], required: ["deliverers"]),
            "Mark": mark(failed: false),
            "MarkFailed": mark(failed: true),
            "MarkResult": object(["package": ref("Package"), "deliverer": ref("Deliverer"), "session": ref("Session")]),
            "Reassign": object(["deliverer_id": required], required: ["deliverer_id"]),
        ]
    }
}
