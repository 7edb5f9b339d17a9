import Kernel

/// The webhooks settings (`WEBHOOK_*` in the environment; see `ServerConfiguration`).
public struct WebhookConfiguration: Sendable {
    /// Retry schedule, circuit breaker and disabling (`WEBHOOK_RETRY_SCHEDULE`, `WEBHOOK_DISABLE_AFTER`).
    public var policy = DeliveryPolicy()
    /// How long one attempt may take, connection included (`WEBHOOK_TIMEOUT`, seconds).
    public var timeoutSeconds: Int64 = 15
    /// `WEBHOOK_ALLOW_PRIVATE`: loopback, private, link-local and CGNAT receivers allowed.
    public var allowPrivate = false
    /// `WEBHOOK_ALLOWED_HOSTS`: host names and CIDR ranges allowed whatever they resolve to.
    public var allowList: [String] = []
    /// `WEBHOOK_MAX_ENDPOINTS_PER_OWNER` (20; 0: no cap): endpoints one owner may have.
    public var maxEndpointsPerOwner = 20
    /// Sending workers in each server (`WEBHOOK_WORKERS`).
    public var workers = 5
    /// Messages one worker leases and sends at once.
    public var batch = 32
    /// `WEBHOOK_SECRET_KEY`: 32 bytes in base64 that encrypt signing secrets at rest. Unset, a key
    /// is generated and kept in the database (which then protects nothing against a stolen copy of it;
    /// the server warns).
    public var secretKey: String?
    /// How long the delivery log keeps attempts (`WEBHOOK_LOG_RETENTION`, seconds; 30 days).
    public var logRetentionSeconds: Int64 = 30 * 86_400
    /// How much of a receiver's answer the delivery log keeps.
    public var responseBodyLimit = 20 * 1024
    /// How long a rotated-out secret still signs (24 h).
    public var previousSecretValiditySeconds: Int64 = 86_400
    /// How often the fan-out reads the event log when nothing woke it.
    public var pollInterval: Duration = .milliseconds(500)

    public init() {}
}
