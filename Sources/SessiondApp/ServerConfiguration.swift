import Kernel
import Logging

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
    /// Largest JSON request body, in bytes (413 above it).
    public var maxBodyBytes: Int

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

    /// Reads flags over `HOST`, `PORT`, `DATABASE_URL`, `LOG_LEVEL`, `LOG_FORMAT`, `MAX_BODY_BYTES`; reports every
    /// bad value at once.
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
        if !problems.isEmpty { throw ConfigurationError(problems) }
        return configuration
    }
}
