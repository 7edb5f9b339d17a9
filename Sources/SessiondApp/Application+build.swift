import Access
import Channels
import Conversations
import Delivery
import Events
import Foundation
import Hummingbird
import Kernel
import Logging
import Scanning
import ServiceLifecycle
import Web
import Webhooks

/// Every migration of every module, in one list (versions: kernel 1–99, delivery 101–199, access 201–299, …).
public let allMigrations: [Migration] =
    IdempotencyStore.migrations + EventLog.migrations + RetentionSweep.migrations + DeliveryService.migrations + AccessService.migrations + WebhookService.migrations
    + ConversationService.migrations + ScanService.migrations + ChannelService.migrations

/// The composition root, used by `sessiond serve` and by every test: configuration in, a ready
/// Application out. It opens the database (SQLite opens its file here; PostgreSQL's pool connects
/// when the server runs) and builds the graph; migrations and the admin key's set-up run before
/// the server listens.
public func buildApplication(
    _ configuration: ServerConfiguration, clock: WallClock = .system, logger: Logger? = nil
) throws -> some ApplicationProtocol {
    let logger = logger ?? {
        var logger = Logger(label: "sessiond")
        logger.logLevel = configuration.logLevel
        return logger
    }()
    SessiondMetrics.bootstrap
    let storage = try Storage.open(configuration.database, logger: logger, maximumConnections: configuration.databasePoolSize)
    let ids = IDGenerator(clock: clock)
    let migrator = Migrator(migrations: allMigrations, logger: logger)
    let routes = RouteRegistry()

    // The event log's reader in this process: stores wake it after committing events; it evicts
    // cached sessions other servers changed and feeds the live streams.
    let feed = EventFeed(storage: storage, configuration: configuration.events, logger: logger)
    let access = AccessService(
        storage: storage, clock: clock, ids: ids, configuration: configuration.access, logger: logger, didCommitEvents: feed.wake)
    let delivery = DeliveryService(
        store: DeliveryService.makeStore(storage, readStaleness: configuration.readStaleness, didCommitEvents: feed.wake), clock: clock, ids: ids)
    feed.onEvents { events in delivery.invalidate(by: events) }
    let events = EventReader(
        storage: storage, feed: feed, streamsPerCredential: configuration.streamsPerCredential,
        credentialHolds: { caller in await access.credentialHolds(caller) })
    let (wakeUps, wakeUp) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    let conversations = ConversationService(
        storage: storage, clock: clock, ttlSeconds: configuration.conversationTTLSeconds, readStaleness: configuration.readStaleness, didCommitEvents: feed.wake,
        contactErasure: { userID, contact in ChannelService.contactErasure(userID: userID, contact: contact) })
    feed.onEvents { events in
        for event in events where event.type.hasPrefix("conversation.") {
            if let id = event.sessionID, let version = event.version { conversations.store.invalidate(id, below: version) }
        }
    }
    let scanning = ScanService(
        storage: storage,
        pipeline: ScanPipeline(
            decoder: ImageDecoder(maxPixels: configuration.scanning.maxPixels), ocr: DigitsOCR.shared(dataPath: configuration.scanning.tessdata),
            timeBudget: configuration.scanning.timeBudget),
        targets: DeliveryScanTargets(delivery: delivery), clock: clock, ids: ids, didCommitEvents: feed.wake)
    let submissions = SubmissionService(
        storage: storage, access: access,
        automations: [
            PackageImport(delivery: delivery), SessionReport(delivery: delivery),
            BarcodeScan(scanning: scanning, maxImageBytes: configuration.scanning.maxImageBytes),
        ],
        clock: clock, ids: ids, wakeUp: wakeUp)
    let eventTypes = DeliveryEvents.types + ScanService.eventTypes + AccessService.eventTypes + WebhookEvents.types + ConversationEvents.types
        + ChannelEvents.types
    let webhooks = try WebhookService(
        storage: storage, clock: clock, ids: ids, configuration: configuration.webhooks, knownTypes: eventTypes.map(\.type), logger: logger,
        didCommitEvents: feed.wake)
    let webhookDelivery = WebhookDelivery(service: webhooks, name: "webhooks-" + ids.make())
    feed.onEvents { _ in webhookDelivery.dispatcher.wake() }

    // Bot channels: the delivery bot in chat, over the delivery, scanning and conversations services.
    let channels = ChannelService(
        storage: storage, clock: clock, ids: ids, access: access, configuration: configuration.channels,
        connector: TelegramConnector(base: configuration.channels.telegramAPIURL, box: configuration.channels.secretBox), didCommitEvents: feed.wake)
    let bot = DeliveryBot(channels: channels, delivery: delivery, scanning: scanning, dialogs: conversations.dialogs)
    let channelRuntime = ChannelRuntime(service: channels, handler: bot, node: "node-" + ids.make(), logger: logger)
    let notifier = SessionNotifier(channels: channels, delivery: delivery, logger: logger, onMessages: channelRuntime.wake)
    feed.onEvents { events in
        if events.contains(where: { $0.type == "delivery.session.started" || $0.type == "delivery.session.completed" }) { notifier.wake() }
    }

    let router = Router(context: SessiondRequestContext.self)
    // Outermost first: id and log line, request metrics, errors to problem+json, the route's policy (body limit,
    // authentication, CSRF, rate limit), then idempotent replay scoped to the authenticated principal.
    router.add(middleware: RequestLogMiddleware(ids: ids, trustedProxies: configuration.trustedProxies))
    router.add(middleware: RequestMetricsMiddleware())
    router.add(middleware: ProblemMiddleware(routes: routes))
    router.add(middleware: AccessMiddleware(access: access, routes: routes, clock: clock, defaultBodyLimit: configuration.maxBodyBytes))
    let idempotency = IdempotencyStore(storage: storage)
    router.add(middleware: IdempotencyMiddleware(store: idempotency, clock: clock, routes: routes))

    SystemRoutes(storage: storage, migrator: migrator, routes: routes, eventTypes: eventTypes).register(on: router)
    SessiondMetrics.register(on: router, routes: routes, delivery: delivery, key: configuration.metricsKey)
    AccessRoutes(access: access, submissions: submissions).register(on: router, routes: routes)
    DeliveryRoutes(service: delivery).register(on: router, routes: routes)
    EventRoutes(reader: events, catalog: eventTypes) { sessionID, caller in
        _ = try await delivery.session(sessionID, caller: caller)
    }.register(on: router, routes: routes)
    WebhookRoutes(service: webhooks).register(on: router, routes: routes)
    ConversationRoutes(service: conversations).register(on: router, routes: routes)
    ScanRoutes(service: scanning, maxImageBytes: configuration.scanning.maxImageBytes).register(on: router, routes: routes)
    ChannelRoutes(service: channels).register(on: router, routes: routes)
    // The owner's dashboard in the browser: pages over the access and delivery services; a live
    // page follows the session's event stream above.
    try WebRoutes(access: access, delivery: delivery, clock: clock, liveEventTypes: DeliveryEvents.types.map(\.type))
        .register(on: router, routes: routes)

    // Retention: each module's rules over its own tables, one sweep on one server at a time.
    let eventLog = EventLog(dialect: storage.dialect)
    let retention = RetentionSweep(
        storage: storage, clock: clock,
        rules: [
            RetentionRule("events", keepSeconds: configuration.retention.eventSeconds) { cutoff, limit in
                var floor = try await webhooks.eventFloor()
                if let notifier = try await channels.eventFloor(), notifier < floor { floor = notifier }
                return eventLog.pruneBatch(cutoff: cutoff, before: floor, limit: limit)
            }
        ]
            + access.retentionRules(
                auditSeconds: configuration.retention.auditSeconds, loginSeconds: configuration.retention.loginSeconds,
                submissionSeconds: configuration.retention.submissionSeconds)
            + ScanService.retentionRules(keepSeconds: configuration.retention.scanAttemptSeconds)
            + ChannelService.retentionRules(keepSeconds: configuration.retention.channelUpdateSeconds),
        holder: "server-" + ids.make(), logger: logger)

    let idleNanoseconds = configuration.httpIdleTimeout.components.seconds * 1_000_000_000 + configuration.httpIdleTimeout.components.attoseconds / 1_000_000_000
    var app = Application(
        router: router,
        server: .http1(configuration: .init(idleTimeout: .nanoseconds(idleNanoseconds))),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sessiond"),
        services: [
            StorageService(storage: storage),
            feed,
            IdempotencyJanitor.service(store: idempotency, clock: clock, logger: logger),
            AccessHousekeeping.service(access: access, logger: logger),
            // Conversations idle past CONVERSATION_TTL leave the live set.
            PeriodicService("conversation expiry", every: configuration.conversationSweep, logger: logger) { try await conversations.archiveExpired() },
            SubmissionWorker(
                service: submissions, wakeUps: wakeUps, name: "worker-" + ids.make(), leaseSeconds: configuration.access.submissionLeaseSeconds,
                logger: logger),
            channelRuntime,
            notifier,
            PeriodicService("retention sweep", every: configuration.retention.interval, logger: logger) { try await retention.sweep() },
        ] + webhookDelivery.services,
        logger: logger)
    app.beforeServerStarts {
        try await migrator.migrate(storage, now: clock.now().milliseconds)
        for warning in WebhookService.startupWarnings(configuration.webhooks) { logger.warning("\(warning)") }
        if let generated = try await access.bootstrapAdminKey() {
            announceAdminKey(generated)
        }
        logger.info(
            "sessiond starting",
            metadata: ["database": .string(configuration.database.description), "address": .string("http://\(configuration.host):\(configuration.port)")])
    }
    return app
}

/// Shows a newly generated admin key once, on standard error (never in the log stream).
func announceAdminKey(_ key: String) {
    let banner = """

        ================================================================
         sessiond generated an ADMIN API KEY. It is shown this once and
         only its hash is stored. Keep it somewhere safe:

             \(key)

         Set ADMIN_API_KEY (32+ characters) to choose your own instead.
        ================================================================

        """
    FileHandle.standardError.write(Data(banner.utf8))
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

/// Runs `body` with the database open and migrated, outside the server (`sessiond migrate`, `sessiond keys`).
public func withDatabase<T: Sendable>(
    _ configuration: ServerConfiguration, logger: Logger, _ body: @Sendable (Storage) async throws -> T
) async throws -> T {
    let storage = try Storage.open(configuration.database, logger: logger)
    let migrator = Migrator(migrations: allMigrations, logger: logger)
    switch storage {
    case .sqlite(let db):
        defer { db.close() }
        try await migrator.migrate(storage, now: WallClock.system.now().milliseconds)
        return try await body(storage)
    case .postgres(let db):
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await db.run() }
            defer { group.cancelAll() }
            try await migrator.migrate(storage, now: WallClock.system.now().milliseconds)
            return try await body(storage)
        }
    }
}

/// `sessiond migrate`: opens the database, applies what is missing, closes it.
public func runMigrations(_ configuration: ServerConfiguration, logger: Logger) async throws {
    try await withDatabase(configuration, logger: logger) { _ in }
}

/// The access service on an open database, for the operator's `sessiond keys` commands.
public func accessService(_ storage: Storage, configuration: ServerConfiguration, logger: Logger) -> AccessService {
    AccessService(storage: storage, clock: .system, ids: IDGenerator(), configuration: configuration.access, logger: logger)
}
