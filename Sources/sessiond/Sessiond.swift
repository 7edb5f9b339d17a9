import Access
import ArgumentParser
import Foundation
import Hummingbird
import Kernel
import Logging
import SessiondApp

@main
struct Sessiond: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessiond",
        abstract: "A durable session engine for chat-driven operations.",
        discussion: """
            Data lives in an embedded SQLite file by default (./data/sessiond.sqlite), or in PostgreSQL
            when --database / DATABASE_URL is a postgres:// URL. Flags win over environment variables.
            """,
        subcommands: [Serve.self, Migrate.self, Keys.self, Export.self],
        defaultSubcommand: Serve.self
    )
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("sqlite:PATH or postgres://user:password@host:port/database (env DATABASE_URL).", valueName: "url"))
    var database: String?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (env LOG_LEVEL).", valueName: "level"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("json (one object per line, the default) or text (env LOG_FORMAT).", valueName: "format"))
    var logFormat: String?
}

/// Sends every logger of the process to the chosen format; once, before anything logs.
func bootstrapLogging(_ configuration: ServerConfiguration) {
    switch configuration.logFormat {
    case .json: LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: configuration.logLevel) }
    case .text: LoggingSystem.bootstrap(StreamLogHandler.standardOutput)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending migrations, then serve the HTTP API.")

    @Option(name: .long, help: "Address to listen on (env HOST, default 127.0.0.1).")
    var host: String?

    @Option(name: .shortAndLong, help: "Port to listen on (env PORT, default 8080).")
    var port: Int?

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let flags = ServerConfiguration.Flags(host: host, port: port, database: common.database, logLevel: common.logLevel, logFormat: common.logFormat)
        let configuration = try ServerConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
        bootstrapLogging(configuration)
        defer { LogSink.shared.flush() }
        let app = try buildApplication(configuration)
        try await app.runService()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending migrations and exit.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let flags = ServerConfiguration.Flags(database: common.database, logLevel: common.logLevel, logFormat: common.logFormat)
        let configuration = try ServerConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
        bootstrapLogging(configuration)
        defer { LogSink.shared.flush() }
        var logger = Logger(label: "sessiond")
        logger.logLevel = configuration.logLevel
        try await runMigrations(configuration, logger: logger)
    }
}

/// `sessiond keys …`: the operator manages API keys on the database directly, while servers run.
/// Revocation takes effect at once on every server (each request reads its key from the database).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list, revoke and rotate API keys (on the configured database).",
        subcommands: [Create.self, List.self, Revoke.self, Rotate.self])

    /// Runs `body` with the access service on the configured, migrated database.
    /// Standard output carries only the command's answer; logs (errors only, unless --log-level says
    /// otherwise) go to standard error. A refusal prints its detail and exits with status 1.
    static func withAccess<T: Sendable>(_ common: CommonOptions, _ body: @Sendable (AccessService) async throws -> T) async throws -> T {
        let flags = ServerConfiguration.Flags(database: common.database, logLevel: common.logLevel ?? "error", logFormat: common.logFormat)
        let configuration = try ServerConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = {
            var logger = Logger(label: "sessiond")
            logger.logLevel = configuration.logLevel
            return logger
        }()
        do {
            return try await withDatabase(configuration, logger: logger) { storage in
                try await body(accessService(storage, configuration: configuration, logger: logger))
            }
        } catch let error as any ProblemConvertible {
            FileHandle.standardError.write(Data("error: \(error.problem.detail)\n".utf8))
            throw ExitCode.failure
        } catch let problem as Problem {
            FileHandle.standardError.write(Data("error: \(problem.detail)\n".utf8))
            throw ExitCode.failure
        }
    }

    static func show(_ key: APIKey, secret: String? = nil) {
        var line = "\(key.id)  \(key.prefix)…  \(key.role.rawValue)  \(key.name)"
        if let user = key.userID { line += "  user_id=\(user)" }
        if let deliverer = key.delivererID { line += "  deliverer_id=\(deliverer)" }
        if let expires = key.expiresAt { line += "  expires_at=\(expires.rfc3339)" }
        if let used = key.lastUsedAt { line += "  last_used_at=\(used.rfc3339)" }
        if key.revoked { line += "  REVOKED" }
        print(line)
        if let secret { print("key (shown this once): \(secret)") }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; its secret is printed once.")
        @Option(help: "A name to recognise the key by.") var name: String
        @Option(help: "admin, owner, viewer, deliverer or channel.") var role: String
        @Option(name: .customLong("user-id"), help: "The user an owner, viewer or channel key acts for.") var userID: String?
        @Option(name: .customLong("deliverer-id"), help: "The deliverer a deliverer key acts for.") var delivererID: String?
        @Option(name: .customLong("expires-at"), help: "RFC 3339 time after which the key is refused.") var expiresAt: String?
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let request = AccessService.NewKey(name: name, role: role, userID: userID, delivererID: delivererID, expiresAt: expiresAt)
            let (key, secret) = try await Keys.withAccess(common) { access in try await access.createKey(request, caller: .system) }
            Keys.show(key, secret: secret)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys, newest first (never their secrets).")
        @Option(help: "How many.") var limit = 200
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let keys = try await Keys.withAccess(common) { access in try await access.keys(after: nil, limit: limit, caller: .system).items }
            for key in keys { Keys.show(key) }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key at once, on every server.")
        @Argument(help: "The key_id.") var keyID: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            Keys.show(try await Keys.withAccess(common) { access in try await access.revokeKey(keyID, caller: .system) })
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace a key by a new one (printed once); the old one is revoked.")
        @Argument(help: "The key_id.") var keyID: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let (key, secret) = try await Keys.withAccess(common) { access in try await access.rotateKey(keyID, caller: .system) }
            Keys.show(key, secret: secret)
        }
    }
}

/// `sessiond export …`: data out of the database for analytics tools.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Export data for analytics tools.", subcommands: [Conversations.self])

    struct Conversations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Archived conversations as CSV (header row; profile lists joined by |).")
        @Option(help: "RFC 3339 time: conversations archived at or after it.") var since: String
        @Option(help: "csv (the only format for now).") var format = "csv"
        @Option(help: "Write to this file instead of standard output.") var output: String?
        @Option(help: "Only this owner's conversations (default: every owner's; the user_id column says whose).") var userID: String?
        @OptionGroup var common: CommonOptions

        func run() async throws {
            guard let since = Timestamp(rfc3339: since) else { throw ValidationError("--since: \(since) is not an RFC 3339 time, as in 2026-11-01T00:00:00Z") }
            if let userID, !PersonID.isValid(userID) { throw ValidationError("--user-id: \(userID) is not a user_id (1 to 64 characters of A-Z a-z 0-9 . _ : @ + -)") }
            guard format == "csv" else { throw ValidationError("--format: \(format) is not supported (csv)") }
            let flags = ServerConfiguration.Flags(database: common.database, logLevel: common.logLevel ?? "error", logFormat: common.logFormat)
            let configuration = try ServerConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
            LoggingSystem.bootstrap(StreamLogHandler.standardError)
            var logger = Logger(label: "sessiond")
            logger.logLevel = configuration.logLevel
            let count = try await ConversationExport.write(since: since, userID: userID, toFile: output ?? "/dev/stdout", configuration, logger: logger)
            FileHandle.standardError.write(Data("exported \(count) conversations\n".utf8))
        }
    }
}
