import Foundation
import Kernel

/// A receiver of events: where to POST, which events, whose events, and how it is doing.
public struct WebhookEndpoint: Sendable, Equatable {
    public var id: String
    /// Whose events it receives: an owner's `user_id`, or nil for an admin's endpoint (every event).
    public var userID: String?
    public var url: String
    /// Exact types and prefixes (`delivery.*`); empty means every type.
    public var events: [String]
    public var description: String
    public var enabled: Bool
    /// Why the server disabled it (`gone`: the receiver answered 410; `failing`: it failed for
    /// `WEBHOOK_DISABLE_AFTER`); nil when enabled, or disabled by its owner.
    public var disabledReason: String?
    /// Events up to here were committed before the endpoint existed and are not sent (replay can).
    public var startAfter: EventID
    public var consecutiveFailures: Int64
    public var failingSince: Timestamp?
    public var circuitOpenUntil: Timestamp?
    /// How many times in a row the circuit opened: its first opening, then each failed probe.
    public var circuitOpens: Int64 = 0
    /// Sealed (`SecretBox`) signing secrets: the current one, and the one it replaced while that is still valid.
    var sealedSecret: String
    var sealedPreviousSecret: String?
    public var previousSecretExpiresAt: Timestamp?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    /// The caller whose view of the event log this endpoint gets.
    var reader: Caller {
        guard let userID else { return .system }
        return Caller(kind: .apiKey, id: userID, role: "owner", scopes: ["user_id": userID])
    }

    var filter: EventFilter { EventFilter(types: events) }

    /// Whether this endpoint is sent `event` (committed after it was made, of a type it wants,
    /// visible to its owner; a `webhook.test` event only to the endpoint it tests; never the event
    /// of its own creation). `subject` is the endpoint a `webhook.*` event is about.
    func wants(_ event: Event, about subject: String?) -> Bool {
        event.id > startAfter && receives(event, about: subject)
    }

    /// The same, whenever the event was made (what a replay may send again).
    func receives(_ event: Event, about subject: String?) -> Bool {
        if event.type == WebhookEvents.test { return subject == id }
        if event.type == WebhookEvents.created, subject == id { return false }
        return filter.matches(event) && event.isVisible(to: reader)
    }

    public enum Circuit: String, Sendable { case closed, open, halfOpen = "half_open" }

    public func circuit(now: Timestamp, threshold: Int64) -> Circuit {
        if let until = circuitOpenUntil, until > now { return .open }
        return consecutiveFailures >= threshold ? .halfOpen : .closed
    }
}

/// Creating or changing an endpoint, as the routes decode it.
public struct EndpointDraft: Sendable {
    public var url: String?
    public var events: [String]?
    public var description: String?
    public var enabled: Bool?

    public init(url: String? = nil, events: [String]? = nil, description: String? = nil, enabled: Bool? = nil) {
        self.url = url
        self.events = events
        self.description = description
        self.enabled = enabled
    }
}

/// One attempt to deliver one event to one endpoint, as the delivery log shows it.
public struct DeliveryAttempt: Sendable, Equatable {
    public var id: Int64
    public var endpointID: String
    public var eventID: String
    public var eventType: String
    public var attempt: Int64
    /// `succeeded` or `failed`.
    public var status: String
    public var responseStatus: Int64?
    public var latencyMilliseconds: Int64
    public var error: String?
    /// The first `WebhookConfiguration.responseBodyLimit` bytes of the answer.
    public var responseBody: String?
    public var createdAt: Timestamp
}
