import Access
import Channels
import Kernel
import Logging
import Webhooks

public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line (for log collectors).
    case json
    /// swift-log's `key=value` lines (for reading in a terminal).
    case text
}

/// Everything `sessiond serve` needs, parsed once at start.
/// Precedence: command-line flag, then environment variable, then default.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var database: DatabaseLocation
    public var logLevel: Logger.Level
    public var logFormat: LogFormat = .json
    /// PostgreSQL: the most connections this server opens (`DATABASE_POOL_SIZE`).
    public var databasePoolSize = 16
    /// Largest JSON request body, in bytes (413 above it), unless a route says otherwise.
    public var maxBodyBytes: Int
    /// Keys, login sessions, rate limits and submissions.
    public var access = AccessConfiguration()
    /// How long a cached session is served before its version is checked against the database.
    /// Other servers' writes normally evict it sooner, through the event log; this bounds how
    /// stale a read can be if that news is lost.
    public var readStaleness: Duration = .seconds(1)
    /// The event feed's settings (how often it reads the log when nothing woke it).
    public var events = EventFeed.Configuration()
    /// `CONVERSATION_TTL`: a conversation idle this long is archived.
    public var conversationTTLSeconds: Int64 = 86_400
    /// How often idle conversations are looked for.
    public var conversationSweep: Duration = .seconds(30)
    /// Webhook deliveries: retries, timeout, SSRF guard, workers, the key that seals secrets.
    public var webhooks = WebhookConfiguration()
    /// Label photos: the largest taken, in bytes and in pixels, and the time one may take.
    public var scanning = ScanningConfiguration()
    /// Bot channels: the Bot API's address, the key that seals tokens, polling, backoff and lease.
    public var channels = ChannelsConfiguration()
    /// `TRUSTED_PROXIES`: the proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    public var trustedProxies = TrustedProxies()
    /// `METRICS_KEY`: when set, `GET /metrics` needs `Authorization: Bearer` it.
    public var metricsKey: String?
    /// `STREAMS_PER_CREDENTIAL`: open event streams one key or login session may hold (0: no cap).
    public var streamsPerCredential = 20
    /// `HTTP_IDLE_TIMEOUT`: a connection that sends nothing this long (a request half sent, or
    /// none after the last answer) is closed; a response in progress (a live stream) is not idle.
    public var httpIdleTimeout: Duration = .seconds(60)
    /// How long each kind of row is kept (`*_RETENTION`), and how often the sweep runs.
    public var retention = RetentionConfiguration()

    public init(host: String = "127.0.0.1", port: Int = 8080, database: DatabaseLocation = .sqlite(path: DatabaseLocation.defaultSQLitePath), logLevel: Logger.Level = .info, maxBodyBytes: Int = 1 << 20) {
        self.host = host
        self.port = port
        self.database = database
        self.logLevel = logLevel
        self.maxBodyBytes = maxBodyBytes
    }

    /// Values given on the command line; nil means "not given".
    public struct Flags: Sendable {
        public var host: String?
        public var port: Int?
        public var database: String?
        public var logLevel: String?
        public var logFormat: String?

        public init(host: String? = nil, port: Int? = nil, database: String? = nil, logLevel: String? = nil, logFormat: String? = nil) {
            self.host = host
            self.port = port
            self.database = database
            self.logLevel = logLevel
            self.logFormat = logFormat
        }
    }

    /// Reads flags over `HOST`, `PORT`, `DATABASE_URL`, `DATABASE_POOL_SIZE`, `LOG_LEVEL`, `LOG_FORMAT`, `MAX_BODY_BYTES`, and the
    /// access settings (`ADMIN_API_KEY`, `PUBLIC_BASE_URL`, `LOGIN_SESSION_TTL`, `LOGIN_IDLE_TIMEOUT`,
    /// `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, `AUTH_FAILURE_BURST`, `SUBMISSION_LEASE_SECONDS`);
    /// reports every bad value at once, secrets never echoed.
    public static func resolve(flags: Flags, environment: [String: String]) throws(ConfigurationError) -> ServerConfiguration {
        var problems: [String] = []
        var configuration = ServerConfiguration()
        if let host = flags.host ?? environment["HOST"] { configuration.host = host }
        if let port = flags.port {
            configuration.port = port
        } else if let text = environment["PORT"] {
            if let port = Int(text) { configuration.port = port } else { problems.append("PORT: \(text) is not a number") }
        }
        if !(0...65535).contains(configuration.port) { problems.append("port: \(configuration.port) is not between 0 and 65535") }
        if let text = flags.database ?? environment["DATABASE_URL"], !text.isEmpty {
            do {
                configuration.database = try DatabaseLocation(parsing: text)
            } catch {
                problems += error.problems
            }
        }
        if let text = flags.logLevel ?? environment["LOG_LEVEL"] {
            if let level = Logger.Level(rawValue: text.lowercased()) {
                configuration.logLevel = level
            } else {
                problems.append("log level: \(text) is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if let text = flags.logFormat ?? environment["LOG_FORMAT"] {
            if let format = LogFormat(rawValue: text.lowercased()) {
                configuration.logFormat = format
            } else {
                problems.append("log format: \(text) is not one of \(LogFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if let text = environment["MAX_BODY_BYTES"] {
            if let bytes = Int(text), bytes >= 1024 { configuration.maxBodyBytes = bytes } else { problems.append("MAX_BODY_BYTES: \(text) is not a number of bytes >= 1024") }
        }
        if let text = environment["DATABASE_POOL_SIZE"], !text.isEmpty {
            if let size = Int(text), (1...500).contains(size) { configuration.databasePoolSize = size } else { problems.append("DATABASE_POOL_SIZE: \(text) is not a number from 1 to 500") }
        }
        if let text = environment["CONVERSATION_TTL"], !text.isEmpty {
            if let seconds = duration(text), seconds >= 1 { configuration.conversationTTLSeconds = seconds } else { problems.append("CONVERSATION_TTL: \(text) is not a duration of 1 s or more") }
        }
        if let text = environment["TRUSTED_PROXIES"], !text.trimmingCharacters(in: .whitespaces).isEmpty {
            switch TrustedProxies.parse(text) {
            case .success(let proxies): configuration.trustedProxies = proxies
            case .failure(let error): problems.append("TRUSTED_PROXIES: \(error.entry) is not an address or a CIDR range")
            }
        }
        if let key = environment["METRICS_KEY"], !key.isEmpty {
            if key.count >= 16, key.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) {
                configuration.metricsKey = key
            } else {
                problems.append("METRICS_KEY: must be 16 or more visible ASCII characters (the value is not shown)")
            }
        }
        if let text = environment["STREAMS_PER_CREDENTIAL"], !text.isEmpty {
            if let count = Int(text), (0...10_000).contains(count) { configuration.streamsPerCredential = count } else { problems.append("STREAMS_PER_CREDENTIAL: \(text) is not a number from 0 to 10000") }
        }
        if let text = environment["HTTP_IDLE_TIMEOUT"], !text.trimmingCharacters(in: .whitespaces).isEmpty {
            if let seconds = duration(text), (1...3600).contains(seconds) { configuration.httpIdleTimeout = .seconds(seconds) } else { problems.append("HTTP_IDLE_TIMEOUT: \(text) is not a duration from 1 s to 3600 s") }
        }
        configuration.retention = retention(environment, &problems)
        configuration.access = access(environment, &problems)
        configuration.webhooks = webhooks(environment, &problems)
        configuration.scanning = scanning(environment, &problems)
        configuration.channels = channels(environment, publicBaseURL: configuration.access.publicBaseURL, &problems)
        if !problems.isEmpty { throw ConfigurationError(problems) }
        return configuration
    }

    /// `TELEGRAM_API_URL`, `CHANNELS_SECRET_KEY` (32 bytes in base64), `TELEGRAM_POLL_TIMEOUT`, `CHANNEL_MAX_BACKOFF`,
    /// `CHANNEL_LEASE_TTL` (seconds); `PUBLIC_BASE_URL` as the access settings read it.
    static func channels(_ environment: [String: String], publicBaseURL: String?, _ problems: inout [String]) -> ChannelsConfiguration {
        var channels = ChannelsConfiguration(publicBaseURL: publicBaseURL)
        func value(_ name: String) -> String? { environment[name].flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 } }
        if let url = value("TELEGRAM_API_URL") {
            if url.hasPrefix("http://") || url.hasPrefix("https://") { channels.telegramAPIURL = url } else { problems.append("TELEGRAM_API_URL: \(url) is not an http:// or https:// URL") }
        }
        if let key = value("CHANNELS_SECRET_KEY") {
            if let box = try? SecretBox(base64: key) { channels.secretBox = box } else { problems.append("CHANNELS_SECRET_KEY: must be 32 bytes in base64, as `openssl rand -base64 32` prints (the value is not shown)") }
        }
        func seconds(_ name: String, _ range: ClosedRange<Int>, _ apply: (Int) -> Void) {
            guard let text = value(name) else { return }
            if let number = Int(text), range.contains(number) { apply(number) } else { problems.append("\(name): \(text) is not a number of seconds from \(range.lowerBound) to \(range.upperBound)") }
        }
        seconds("TELEGRAM_POLL_TIMEOUT", 0...50) { channels.pollTimeoutSeconds = $0 }
        seconds("CHANNEL_MAX_BACKOFF", 1...3600) { channels.maxBackoffSeconds = $0 }
        seconds("CHANNEL_LEASE_TTL", 2...600) { channels.leaseTTLSeconds = $0 }
        return channels
    }

    /// `SCAN_MAX_BYTES`, `SCAN_MAX_PIXELS`, `SCAN_TIME_BUDGET` (a duration), `SCAN_TESSDATA` (a directory).
    static func scanning(_ environment: [String: String], _ problems: inout [String]) -> ScanningConfiguration {
        var scanning = ScanningConfiguration()
        func value(_ name: String) -> String? { environment[name].flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 } }
        if let text = value("SCAN_MAX_BYTES") {
            if let bytes = Int(text), (1024...(100 << 20)).contains(bytes) { scanning.maxImageBytes = bytes } else { problems.append("SCAN_MAX_BYTES: \(text) is not a number of bytes from 1024 to 104857600") }
        }
        if let text = value("SCAN_MAX_PIXELS") {
            if let pixels = Int(text), (10_000...200_000_000).contains(pixels) { scanning.maxPixels = pixels } else { problems.append("SCAN_MAX_PIXELS: \(text) is not a number from 10000 to 200000000") }
        }
        if let text = value("SCAN_TIME_BUDGET") {
            if let seconds = duration(text), (1...60).contains(seconds) { scanning.timeBudget = .seconds(seconds) } else { problems.append("SCAN_TIME_BUDGET: \(text) is not a duration from 1 s to 60 s") }
        }
        scanning.tessdata = value("SCAN_TESSDATA")
        return scanning
    }

    /// `WEBHOOK_RETRY_SCHEDULE` (seconds, comma-separated), `WEBHOOK_TIMEOUT`, `WEBHOOK_ALLOW_PRIVATE`,
    /// `WEBHOOK_ALLOWED_HOSTS` (hosts and CIDR ranges, comma-separated), `WEBHOOK_DISABLE_AFTER`,
    /// `WEBHOOK_LOG_RETENTION` (durations: seconds, or with s, m, h or d), `WEBHOOK_WORKERS`,
    /// `WEBHOOK_SECRET_KEY` (32 bytes in base64).
    static func webhooks(_ environment: [String: String], _ problems: inout [String]) -> WebhookConfiguration {
        var webhooks = WebhookConfiguration()
        func value(_ name: String) -> String? { environment[name].flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 } }
        if let text = value("WEBHOOK_RETRY_SCHEDULE") {
            let steps = text.split(separator: ",").map { Int64($0.trimmingCharacters(in: .whitespaces)) }
            if !steps.isEmpty, steps.count <= 30, steps.allSatisfy({ ($0 ?? -1) >= 0 && ($0 ?? 0) <= 604_800 }) {
                webhooks.policy.retrySchedule = steps.compactMap { $0 }
            } else {
                problems.append("WEBHOOK_RETRY_SCHEDULE: \(text) is not 1 to 30 comma-separated numbers of seconds (each up to 604800)")
            }
        }
        if let text = value("WEBHOOK_TIMEOUT") {
            if let seconds = duration(text), (1...300).contains(seconds) { webhooks.timeoutSeconds = seconds } else { problems.append("WEBHOOK_TIMEOUT: \(text) is not a duration from 1 s to 300 s") }
        }
        if let text = value("WEBHOOK_DISABLE_AFTER") {
            if let seconds = duration(text), seconds >= 60 { webhooks.policy.disableAfter = seconds } else { problems.append("WEBHOOK_DISABLE_AFTER: \(text) is not a duration of 60 s or more (as 5d)") }
        }
        if let text = value("WEBHOOK_LOG_RETENTION") {
            if let seconds = duration(text), seconds >= 60 { webhooks.logRetentionSeconds = seconds } else { problems.append("WEBHOOK_LOG_RETENTION: \(text) is not a duration of 60 s or more (as 30d)") }
        }
        if let text = value("WEBHOOK_ALLOW_PRIVATE") {
            switch text.lowercased() {
            case "true", "1", "yes", "on": webhooks.allowPrivate = true
            case "false", "0", "no", "off": webhooks.allowPrivate = false
            default: problems.append("WEBHOOK_ALLOW_PRIVATE: \(text) is not true or false")
            }
        }
        if let text = value("WEBHOOK_ALLOWED_HOSTS") {
            webhooks.allowList = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            do {
                _ = try ReceiverGuard(allowList: webhooks.allowList)
            } catch {
                problems.append("WEBHOOK_ALLOWED_HOSTS: \(error.entry) is neither a host name nor a CIDR range")
            }
        }
        if let text = value("WEBHOOK_MAX_ENDPOINTS_PER_OWNER") {
            if let count = Int(text), (0...10_000).contains(count) { webhooks.maxEndpointsPerOwner = count } else { problems.append("WEBHOOK_MAX_ENDPOINTS_PER_OWNER: \(text) is not a number from 0 to 10000") }
        }
        if let text = value("WEBHOOK_WORKERS") {
            if let workers = Int(text), (1...64).contains(workers) { webhooks.workers = workers } else { problems.append("WEBHOOK_WORKERS: \(text) is not a number from 1 to 64") }
        }
        if let key = value("WEBHOOK_SECRET_KEY") {
            if (try? SecretBox(base64: key)) != nil { webhooks.secretKey = key } else { problems.append("WEBHOOK_SECRET_KEY: must be 32 bytes in base64, as `openssl rand -base64 32` prints (the value is not shown)") }
        }
        return webhooks
    }

    /// `EVENT_RETENTION`, `AUDIT_RETENTION`, `CHANNEL_UPDATE_RETENTION`, `SCAN_ATTEMPT_RETENTION`,
    /// `SUBMISSION_RETENTION`: durations (`0` keeps for ever).
    static func retention(_ environment: [String: String], _ problems: inout [String]) -> RetentionConfiguration {
        var retention = RetentionConfiguration()
        let settings: [(String, WritableKeyPath<RetentionConfiguration, Int64>)] = [
            ("EVENT_RETENTION", \.eventSeconds), ("AUDIT_RETENTION", \.auditSeconds), ("CHANNEL_UPDATE_RETENTION", \.channelUpdateSeconds),
            ("SCAN_ATTEMPT_RETENTION", \.scanAttemptSeconds), ("SUBMISSION_RETENTION", \.submissionSeconds),
        ]
        for (name, field) in settings {
            guard let text = environment[name], !text.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            if let seconds = duration(text), seconds == 0 || seconds >= 60 {
                retention[keyPath: field] = seconds
            } else {
                problems.append("\(name): \(text) is not a duration of 60 s or more (as 30d or 12h), or 0 to keep for ever")
            }
        }
        return retention
    }

    /// Seconds from `90`, `90s`, `15m`, `12h` or `5d`.
    static func duration(_ text: String) -> Int64? {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        if let last = text.last, let unit = units[last] { return Int64(text.dropLast()).map { $0 * unit } }
        return Int64(text)
    }

    static func access(_ environment: [String: String], _ problems: inout [String]) -> AccessConfiguration {
        var access = AccessConfiguration()
        if let key = environment["ADMIN_API_KEY"], !key.isEmpty {
            if key.count >= 32, key.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) {
                access.adminKey = key
            } else {
                problems.append("ADMIN_API_KEY: must be 32 or more visible ASCII characters (the value is not shown)")
            }
        }
        if let url = environment["PUBLIC_BASE_URL"], !url.isEmpty {
            if url.hasPrefix("http://") || url.hasPrefix("https://") {
                access.publicBaseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            } else {
                problems.append("PUBLIC_BASE_URL: \(url) is not an http:// or https:// URL")
            }
        }
        func seconds(_ name: String, _ range: ClosedRange<Int64>, _ apply: (Int64) -> Void) {
            guard let text = environment[name], !text.isEmpty else { return }
            if let value = Int64(text), range.contains(value) { apply(value) } else { problems.append("\(name): \(text) is not a number from \(range.lowerBound) to \(range.upperBound)") }
        }
        seconds("LOGIN_SESSION_TTL", 60...31_536_000) { access.loginSessionLifetimeSeconds = $0 }
        seconds("LOGIN_IDLE_TIMEOUT", 60...31_536_000) { access.loginIdleTimeoutSeconds = $0 }
        seconds("RATE_LIMIT_BURST", 1...1_000_000) { access.rateLimitBurst = Int($0) }
        seconds("AUTH_FAILURE_BURST", 1...1_000_000) { access.authFailureBurst = Int($0) }
        seconds("SUBMISSION_LEASE_SECONDS", 1...86_400) { access.submissionLeaseSeconds = $0 }
        if let text = environment["RATE_LIMIT_PER_SECOND"], !text.isEmpty {
            if let value = Double(text), value >= 0, value.isFinite { access.rateLimitPerSecond = value } else { problems.append("RATE_LIMIT_PER_SECOND: \(text) is not a number >= 0 (0 turns the limit off)") }
        }
        return access
    }
}

/// How long each kind of row is kept; 0 keeps it for ever. Pruned in small batches by one server
/// at a time (`RetentionSweep`).
public struct RetentionConfiguration: Sendable {
    /// `EVENT_RETENTION` (30 d): never an event a webhook endpoint or the bot's notifier still needs.
    public var eventSeconds: Int64 = 30 * 86_400
    /// `AUDIT_RETENTION` (365 d): the auth audit.
    public var auditSeconds: Int64 = 365 * 86_400
    /// `CHANNEL_UPDATE_RETENTION` (7 d): raw chat updates and sent message texts (ids and counts stay).
    public var channelUpdateSeconds: Int64 = 7 * 86_400
    /// `SCAN_ATTEMPT_RETENTION` (90 d).
    public var scanAttemptSeconds: Int64 = 90 * 86_400
    /// `SUBMISSION_RETENTION` (30 d): finished submissions.
    public var submissionSeconds: Int64 = 30 * 86_400
    /// Used or expired login links and ended login sessions (7 d).
    public var loginSeconds: Int64 = 7 * 86_400
    /// How often the sweep runs.
    public var interval: Duration = .seconds(600)

    public init() {}
}

/// Label photos (`SCAN_*`).
public struct ScanningConfiguration: Sendable {
    /// The largest photo, in bytes (413 above it). 10 MB.
    public var maxImageBytes = 10 * 1024 * 1024
    /// The most pixels a photo may have, as its header states (422 above it).
    public var maxPixels = 40_000_000
    /// The time one photo may take; steps left when it runs out are skipped.
    public var timeBudget: Duration = .seconds(4)
    /// Where Tesseract's `eng.traineddata` is (nil: Tesseract's own default, Debian's package).
    public var tessdata: String?

    public init() {}
}
