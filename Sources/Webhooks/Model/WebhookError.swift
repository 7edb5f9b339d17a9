import Hummingbird
import Kernel

/// Everything the webhooks module refuses, each with its problem+json form.
public enum WebhookError: ProblemConvertible, Equatable {
    case endpointNotFound(String)
    case eventNotFound(String)
    case forbidden(String)
    case invalid(field: String, detail: String)
    /// The owner has `WEBHOOK_MAX_ENDPOINTS_PER_OWNER` endpoints already.
    case tooManyEndpoints(Int)
    /// Secrets are stored encrypted; this server cannot open them (a changed `WEBHOOK_SECRET_KEY`).
    case secretUnreadable(String)

    public var problem: Problem {
        switch self {
        case .endpointNotFound(let id): .notFound("No webhook endpoint \(id).")
        case .eventNotFound(let id): .notFound("No event \(id) that this endpoint receives.")
        case .forbidden(let detail): Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: detail)
        case .invalid(let field, let detail): .validation(field, detail)
        case .tooManyEndpoints(let limit):
            .conflict("too-many-endpoints", "This owner has \(limit) webhook endpoints already (WEBHOOK_MAX_ENDPOINTS_PER_OWNER); delete one first.", title: "Too many endpoints")
        case .secretUnreadable(let id):
            Problem(
                status: .internalServerError, slug: "secret-unreadable", title: "Stored secret unreadable",
                detail: "The signing secret of endpoint \(id) does not open with this server's WEBHOOK_SECRET_KEY.")
        }
    }
}

/// The webhooks module's event types.
public enum WebhookEvents {
    public static let test = "webhook.test"
    static let created = "webhook.endpoint.created"
    public static let types: [(type: String, summary: String)] = [
        ("webhook.test", "A test delivery asked for with POST /api/webhooks/{id}/test; sent to that endpoint only."),
        ("webhook.endpoint.created", "A webhook endpoint was created."),
        ("webhook.endpoint.updated", "A webhook endpoint's URL, events, description or enabled flag changed, or its secret was rotated."),
        ("webhook.endpoint.deleted", "A webhook endpoint was deleted."),
        ("webhook.endpoint.disabled", "The server disabled an endpoint: its receiver answered 410 Gone, or failed for WEBHOOK_DISABLE_AFTER."),
    ]
}
