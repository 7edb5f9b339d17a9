import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The webhooks contract's HTTP surface: decode, call the service, encode.
public struct WebhookRoutes: Sendable {
    let service: WebhookService

    public init(service: WebhookService) { self.service = service }

    struct CreateBody: Decodable {
        var url: String
        var events: [String]?
        var description: String?
        var enabled: Bool?
        var userID: String?
        enum CodingKeys: String, CodingKey { case url, events, description, enabled, userID = "user_id" }
    }

    struct PatchBody: Decodable {
        var url: String?
        var events: [String]?
        var description: String?
        var enabled: Bool?
    }

    struct ReplayBody: Decodable {
        var since: String?
        var eventID: String?
        enum CodingKeys: String, CodingKey { case since, eventID = "event_id" }
    }

    /// An answer holding a secret: never cached, never replayed.
    static func withSecret(_ created: WebhookService.Created, status: HTTPResponse.Status) -> RenderedAnswer {
        .json(EndpointJSON(endpoint: created.endpoint, secret: created.secret), status: status, headers: [.location: "/api/webhooks/\(created.endpoint.id)", .cacheControl: "no-store"])
    }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let service = service
        let tag = "webhooks"
        routes.add(.init(.post, "/api/webhooks", summary: "Create a webhook endpoint; its whsec_ secret is in this answer only", tag: tag, request: "CreateWebhook", response: "CreatedWebhook", status: 201, errors: [400, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: CreateBody.self, context: context)
            return try await IdempotencySlot.respond {
                try await service.create(.init(url: body.url, events: body.events, description: body.description, enabled: body.enabled), userID: body.userID, caller: context.caller)
            } render: { Self.withSecret($0, status: .created) }
        }
        routes.add(.init(.get, "/api/webhooks", summary: "Webhook endpoints the caller manages", tag: tag, response: "WebhookPage", errors: [422], query: [.limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.endpoints(caller: context.caller, after: request.queryString("cursor"), limit: limit)
            return JSONResponse.write(Page(items: page.items.map { EndpointJSON(endpoint: $0) }, next: page.next))
        }
        routes.add(.init(.get, "/api/webhooks/stats", summary: "Per endpoint: messages pending, delivered and failed; attempts, failures and latency of the last 24 h; circuit", tag: tag, response: "WebhookStats"), to: router) { _, context in
            let stats = try await service.stats(caller: context.caller)
            return JSONResponse.write(StatsJSON(items: stats))
        }
        routes.add(.init(.get, "/api/webhooks/{id}", summary: "One webhook endpoint (never its secret)", tag: tag, response: "Webhook", errors: [404]), to: router) { _, context in
            JSONResponse.write(EndpointJSON(endpoint: try await service.endpoint(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.patch, "/api/webhooks/{id}", summary: "Change url, events, description or enabled (enabling closes the circuit)", tag: tag, request: "UpdateWebhook", response: "Webhook", errors: [400, 404, 409, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: PatchBody.self, context: context)
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.update(id, .init(url: body.url, events: body.events, description: body.description, enabled: body.enabled), caller: context.caller)
            } render: { .json(EndpointJSON(endpoint: $0)) }
        }
        routes.add(.init(.delete, "/api/webhooks/{id}", summary: "Delete an endpoint, its queue and its delivery log", tag: tag, status: 204, errors: [404]), to: router) { _, context in
            try await service.delete(try context.parameters.require("id"), caller: context.caller)
            return Response(status: .noContent)
        }
        routes.add(.init(.post, "/api/webhooks/{id}/rotate-secret", summary: "A new secret; the old one keeps signing beside it for 24 h", tag: tag, response: "CreatedWebhook", errors: [404, 409]), to: router) { _, context in
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.rotateSecret(id, caller: context.caller)
            } render: { Self.withSecret($0, status: .ok) }
        }
        routes.add(.init(.post, "/api/webhooks/{id}/test", summary: "Send a webhook.test event to this endpoint", tag: tag, response: "WebhookQueued", status: 202, errors: [404]), to: router) { _, context in
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.test(id, caller: context.caller)
            } render: { .json(QueuedJSON(endpointID: $0.id, type: WebhookEvents.test, queued: 1), status: .accepted) }
        }
        routes.add(.init(.post, "/api/webhooks/{id}/replay", summary: "Send one event (event_id), or every event since a time (since), again", tag: tag, request: "ReplayWebhook", response: "WebhookQueued", status: 202, errors: [400, 404, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: ReplayBody.self, context: context)
            let id = try context.parameters.require("id")
            var since: Timestamp?
            if let text = body.since {
                guard let time = Timestamp(rfc3339: text) else { throw WebhookError.invalid(field: "since", detail: "since is an RFC 3339 time, as in 2026-11-26T10:00:00Z") }
                since = time
            }
            return try await IdempotencySlot.respond {
                try await service.replay(id, since: since, eventID: body.eventID, caller: context.caller)
            } render: { .json(QueuedJSON(endpointID: id, type: nil, queued: $0), status: .accepted) }
        }
        routes.add(.init(.get, "/api/webhooks/{id}/deliveries", summary: "The endpoint's delivery log, newest first: every attempt with its answer", tag: tag, response: "WebhookDeliveryPage", errors: [404, 422], query: [
            QueryParameter("status", schema: ["type": "string", "enum": ["succeeded", "failed"]]), .limit(maximum: 200), .cursor(),
        ]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.deliveries(
                try context.parameters.require("id"), status: request.queryString("status"), cursor: request.queryString("cursor"), limit: limit, caller: context.caller)
            return JSONResponse.write(Page(items: page.items.map(AttemptJSON.init), next: page.next))
        }
    }
}

struct EndpointJSON: JSONWritable {
    var endpoint: WebhookEndpoint
    var secret: String?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("endpoint_id", endpoint.id)
        writer.field("url", endpoint.url)
        writer.field("events", array: endpoint.events)
        writer.field("description", endpoint.description)
        writer.field("enabled", endpoint.enabled)
        if let secret { writer.field("secret", secret) }
        writer.field("user_id", endpoint.userID)
        writer.field("disabled_reason", endpoint.disabledReason)
        writer.field("previous_secret_expires_at", endpoint.previousSecretExpiresAt)
        writer.field("consecutive_failures", endpoint.consecutiveFailures)
        writer.field("failing_since", endpoint.failingSince)
        writer.field("circuit_open_until", endpoint.circuitOpenUntil)
        writer.field("created_at", endpoint.createdAt)
        writer.field("updated_at", endpoint.updatedAt)
        writer.endObject()
    }
}

struct AttemptJSON: JSONWritable {
    var attempt: DeliveryAttempt

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("delivery_id", String(attempt.id))
        writer.field("event_id", attempt.eventID)
        writer.field("event_type", attempt.eventType)
        writer.field("attempt", attempt.attempt)
        writer.field("status", attempt.status)
        writer.field("response_status", attempt.responseStatus)
        writer.field("latency_ms", attempt.latencyMilliseconds)
        writer.field("error", attempt.error)
        writer.field("response_body", attempt.responseBody)
        writer.field("created_at", attempt.createdAt)
        writer.endObject()
    }
}

struct QueuedJSON: JSONWritable {
    var endpointID: String
    var type: String?
    var queued: Int

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("endpoint_id", endpointID)
        if let type { writer.field("type", type) }
        writer.field("queued", queued)
        writer.endObject()
    }
}

struct StatsJSON: JSONWritable {
    var items: [WebhookService.Stats]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("items")
        writer.beginArray()
        for stats in items {
            writer.beginObject()
            writer.field("endpoint_id", stats.endpoint.id)
            writer.field("url", stats.endpoint.url)
            writer.field("enabled", stats.endpoint.enabled)
            writer.field("disabled_reason", stats.endpoint.disabledReason)
            writer.field("pending", stats.pending)
            writer.field("succeeded", stats.succeeded)
            writer.field("failed", stats.failed)
            writer.field("aborted", stats.aborted)
            writer.field("attempts_24h", stats.attempts24h)
            writer.field("failed_attempts_24h", stats.failedAttempts24h)
            writer.field("success_rate_24h", stats.attempts24h > 0 ? Double(stats.attempts24h - stats.failedAttempts24h) / Double(stats.attempts24h) : nil)
            writer.field("avg_latency_ms_24h", stats.averageLatency24h)
            writer.field("max_latency_ms_24h", stats.maximumLatency24h)
            writer.field("last_success_at", stats.lastSuccessAt)
            writer.field("last_failure_at", stats.lastFailureAt)
            writer.field("consecutive_failures", stats.endpoint.consecutiveFailures)
            writer.field("circuit", stats.circuit.rawValue)
            writer.endObject()
        }
        writer.endArray()
        writer.key("totals")
        writer.beginObject()
        writer.field("endpoints", items.count)
        writer.field("pending", items.reduce(0) { $0 + $1.pending })
        writer.field("succeeded", items.reduce(0) { $0 + $1.succeeded })
        writer.field("failed", items.reduce(0) { $0 + $1.failed })
        writer.field("attempts_24h", items.reduce(0) { $0 + $1.attempts24h })
        writer.field("failed_attempts_24h", items.reduce(0) { $0 + $1.failedAttempts24h })
        writer.endObject()
        writer.endObject()
    }
}
