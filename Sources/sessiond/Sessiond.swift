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
        subcommands: [Serve.self, Migrate.self],
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
