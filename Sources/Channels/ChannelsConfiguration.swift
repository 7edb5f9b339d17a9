import Kernel

/// The channels part of the server's configuration (environment names in `ServerConfiguration`).
public struct ChannelsConfiguration: Sendable {
    /// `TELEGRAM_API_URL`: `{it}/bot<token>/<method>` and `{it}/file/bot<token>/<path>`.
    public var telegramAPIURL: String
    /// `PUBLIC_BASE_URL`: this server as Telegram reaches it (webhook mode).
    public var publicBaseURL: String?
    /// `CHANNELS_SECRET_KEY`: seals bot tokens, proxy passwords, webhook secrets and invite tokens; nil: channels cannot be created.
    public var secretBox: SecretBox?
    /// `TELEGRAM_POLL_TIMEOUT` seconds: `getUpdates`'s `timeout`.
    public var pollTimeoutSeconds: Int
    /// `CHANNEL_MAX_BACKOFF` seconds: the cap of the reconnect backoff.
    public var maxBackoffSeconds: Int
    /// `CHANNEL_LEASE_TTL` seconds: the poller lease.
    public var leaseTTLSeconds: Int
    /// The largest photo the bot downloads to scan.
    public var maxPhotoBytes: Int

    public init(
        telegramAPIURL: String = "https://api.telegram.org", publicBaseURL: String? = nil, secretBox: SecretBox? = nil, pollTimeoutSeconds: Int = 25,
        maxBackoffSeconds: Int = 30, leaseTTLSeconds: Int = 30, maxPhotoBytes: Int = 10 << 20
    ) {
        self.telegramAPIURL = telegramAPIURL
        self.publicBaseURL = publicBaseURL
        self.secretBox = secretBox
        self.pollTimeoutSeconds = pollTimeoutSeconds
        self.maxBackoffSeconds = maxBackoffSeconds
        self.leaseTTLSeconds = leaseTTLSeconds
        self.maxPhotoBytes = maxPhotoBytes
    }
}
