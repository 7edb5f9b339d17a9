import Kernel
import NIOCore

/// The delivery module's events: one beside each audit entry a rule appends, typed
/// `delivery.` + the entry's action, numbered by the entry's `seq` (so each session's events count
/// 1, 2, 3… without gaps), readable by the session's user and its deliverers.
///
/// `data`: `actor_id`, the audit entry's `details`, and the session's figures after the change
/// (`session`), so a dashboard can update itself from the event alone.
public enum DeliveryEvents {
    /// Every type this module emits, with what it means (`GET /api/events/types`).
    public static let types: [(type: String, summary: String)] = [
        ("delivery.session.created", "A delivery session was opened."),
        ("delivery.session.reused", "The owner came back into an open session."),
        ("delivery.packages.added", "Packages were added (details: added and duplicate barcodes)."),
        ("delivery.package.removed", "A package was removed before the session started."),
        ("delivery.session.started", "Deliverers were brought in and packages assigned; the session is active."),
        ("delivery.package.picked_up", "A deliverer picked a package up."),
        ("delivery.package.delivered", "A deliverer delivered a package."),
        ("delivery.package.failed", "A delivery failed, with the reason."),
        ("delivery.package.reassigned", "A package moved to another deliverer."),
        ("delivery.session.paused", "An active session was paused."),
        ("delivery.session.resumed", "A paused session was resumed."),
        ("delivery.session.completed", "The session closed with its financial snapshot."),
        ("delivery.session.archived", "A completed session left the default listings."),
    ]

    static func events(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [NewEvent] {
        let known = before?.audit.count ?? 0
        guard after.audit.count > known else { return [] }
        let session = after.session
        let audience = after.deliverers.map { AudienceTag.tag("deliverer_id", $0.id) }
        var figures = JSONWriter(capacity: 256)
        figures.beginObject()
        figures.field("status", session.status.rawValue)
        figures.field("version", session.version)
        figures.field("packages_total", session.packagesTotal)
        figures.field("packages_delivered", session.packagesDelivered)
        figures.field("packages_failed", session.packagesFailed)
        figures.field("packages_pending", session.packagesTotal - session.packagesDelivered - session.packagesFailed)
        figures.field("total_revenue_cents", session.totalRevenueCents)
        figures.field("total_cost_cents", session.totalCostCents)
        figures.endObject()
        let figuresText = String(buffer: figures.buffer)
        return after.audit[known...].map { entry in
            var data = JSONWriter(capacity: 128 + entry.details.utf8.count + figuresText.utf8.count)
            data.beginObject()
            data.field("actor_id", entry.actorID)
            data.key("details")
            data.raw(json: entry.details)
            data.key("session")
            data.raw(json: figuresText)
            data.endObject()
            return NewEvent(
                type: "delivery." + entry.action, sessionID: session.id, seq: entry.seq, version: session.version, userID: session.userID,
                audience: audience, createdAt: entry.createdAt, data: String(buffer: data.buffer))
        }
    }
}
