import Delivery
import Hummingbird
import Kernel
import Logging
import ServiceLifecycle

/// Every migration of every module, in one list (versions: kernel 1–99, delivery 101–199, …).
public let allMigrations: [Migration] = IdempotencyStore.migrations + DeliveryService.migrations

/// The composition root, used by `sessiond serve` and by every test: configuration in, a ready
/// Application out. It opens clients but does no I/O; migrations run before the server listens.
public func buildApplication(
    _ configuration: ServerConfiguration, clock: WallClock = .system, logger: Logger? = nil
) throws -> some ApplicationProtocol {
    let logger = logger ?? {
        var logger = Logger(label: "sessiond")
        logger.logLevel = configuration.logLevel
        return logger
    }()
    let storage = try Storage.open(configuration.database, logger: logger)
    let ids = IDGenerator(clock: clock)
    let migrator = Migrator(migrations: allMigrations, logger: logger)
    let routes = RouteRegistry()

    let router = Router(context: SessiondRequestContext.self)
    // Outermost first: id and log line, body limit, errors to problem+json, idempotent replay.
    router.add(middleware: RequestLogMiddleware(ids: ids))
    router.add(middleware: BodyLimitMiddleware(maxBytes: configuration.maxBodyBytes))
    router.add(middleware: ProblemMiddleware(routes: routes))
    let idempotency = IdempotencyStore(storage: storage)
    router.add(middleware: IdempotencyMiddleware(store: idempotency, clock: clock, routes: routes))

    SystemRoutes(storage: storage, migrator: migrator, routes: routes).register(on: router)
    let delivery = DeliveryService(store: DeliveryStores.make(storage), clock: clock, ids: ids)
    DeliveryRoutes(service: delivery).register(on: router, routes: routes)

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sessiond"),
        services: [
            StorageService(storage: storage),
            IdempotencyJanitor(store: idempotency, clock: clock, logger: logger),
        ],
        logger: logger)
    app.beforeServerStarts {
        try await migrator.migrate(storage, now: clock.now().milliseconds)
    }
    return app
}

/// Sets the request body limit from configuration.
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = SessiondRequestContext
    let maxBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.maxUploadSize = maxBytes
        return try await next(request, context)
    }
}

/// Keeps the database open for the life of the server: runs PostgreSQL's pool; on shutdown
/// finishes queued SQLite writes and closes the file.
struct StorageService: Service {
    let storage: Storage

    func run() async throws {
        switch storage {
        case .postgres(let db):
            await cancelWhenGracefulShutdown { await db.run() }
        case .sqlite(let db):
            try? await gracefulShutdown()
            db.close()
        }
    }
}

/// `sessiond migrate`: opens the database, applies what is missing, closes it.
public func runMigrations(_ configuration: ServerConfiguration, logger: Logger) async throws {
    let storage = try Storage.open(configuration.database, logger: logger)
    let migrator = Migrator(migrations: allMigrations, logger: logger)
    switch storage {
    case .sqlite(let db):
        defer { db.close() }
        try await migrator.migrate(storage, now: WallClock.system.now().milliseconds)
    case .postgres(let db):
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await db.run() }
            defer { group.cancelAll() }
            try await migrator.migrate(storage, now: WallClock.system.now().milliseconds)
        }
    }
}
