import Access
import Delivery
@testable import Channels
@testable import Webhooks
import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Logging
import SessiondApp
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The server under bad input and bad luck: slow clients, strangers posting to webhook paths, a
/// database that fails in the middle of a logout.
@Suite("Hardening: slow clients, strangers, failures that must not pass for success")
struct HardeningTests {
    @Test("a connection that sends half a request and stops is closed after HTTP_IDLE_TIMEOUT")
    func idleTimeout() async throws {
        try await withApp(.live, configure: { $0.httpIdleTimeout = .seconds(1) }) { client, _ in
            let port = try #require(client.port)
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { Glibc.close(socket) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            #expect(connected == 0)
            let partial = Array("GET /health HTTP/1.1\r\nHost: x\r\n".utf8)
            _ = partial.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, 0) }
            // The server closes it: recv returns 0 (end of stream) well before 10 s.
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let started = ContinuousClock.now
            var buffer = [UInt8](repeating: 0, count: 256)
            let read = buffer.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress, $0.count, 0) }
            #expect(read == 0)
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("a logout the server could not record is a failure page, and the cookie is kept (the session is still live)")
    func logoutFailureIsNotSuccess() async throws {
        try await withApp(configure: WebTests.configure) { client, location in
            let key = try await client.json(.post, "/api/keys", body(["name": "ana", "role": "owner", "user_id": "ana"]), expect: .created)["key"]!.string!
            let cookie = try await WebTests.logIn(client, key: key)
            // The login sessions' table cannot be written for a moment.
            try await executeRaw("ALTER TABLE login_sessions RENAME TO login_sessions_away", on: location)
            try await executeRaw("ALTER TABLE access_epoch RENAME TO access_epoch_away", on: location)
            let failed = try await client.send(.post, "/auth/logout", headers: [.cookie: cookie, .origin: WebTests.origin])
            try await executeRaw("ALTER TABLE access_epoch_away RENAME TO access_epoch", on: location)
            try await executeRaw("ALTER TABLE login_sessions_away RENAME TO login_sessions", on: location)
            #expect(failed.status.code >= 500)
            #expect(failed.headers[.setCookie] == nil)
            // The session is live, as the page said; a logout that works ends it.
            #expect(try await client.send(.get, "/api/auth/whoami", headers: [.cookie: cookie]).status == .ok)
            let done = try await client.send(.post, "/auth/logout", headers: [.cookie: cookie, .origin: WebTests.origin])
            #expect(done.status == .seeOther && done.headers[.setCookie] != nil)
            #expect(try await client.send(.get, "/api/auth/whoami", headers: [.cookie: cookie]).status == .unauthorized)
        }
    }

    @Test("POST /telegram/webhook/{id} for unknown ids keeps a bounded memory of them, and ids not of our shape are refused unread")
    func webhookMissesBounded() async throws {
        let location = try await TestDatabase.make()
        let configuration = ServerConfiguration(database: location, logLevel: .error)
        try await runMigrations(configuration, logger: TestDatabase.logger)
        try await withDatabase(configuration, logger: TestDatabase.logger) { storage in
            let ids = IDGenerator()
            let access = AccessService(storage: storage, clock: .system, ids: ids, configuration: AccessConfiguration(), logger: TestDatabase.logger)
            let connector = TelegramConnector(base: "http://127.0.0.1:9", box: nil)
            let channels = ChannelService(
                storage: storage, clock: .system, ids: ids, access: access, configuration: ChannelsConfiguration(publicBaseURL: nil), connector: connector)
            for _ in 0..<3_000 {
                await #expect(throws: ChannelError.self) { try await channels.receiveWebhook(ids.make(), secret: "x", body: Array("{}".utf8)) }
            }
            #expect(channels.webhookSecretsHeld <= ChannelService.webhookSecretsKept)
            await #expect(throws: ChannelError.self) { try await channels.receiveWebhook("../../etc", secret: "x", body: []) }
            await connector.shutdown()
        }
        await TestDatabase.drop(location)
    }

    @Test("an owner has at most WEBHOOK_MAX_ENDPOINTS_PER_OWNER endpoints (409 beyond); another owner is not counted with it")
    func endpointsPerOwner() async throws {
        try await withApp(configure: {
            $0.webhooks.allowPrivate = true
            $0.webhooks.maxEndpointsPerOwner = 3
        }) { client, _ in
            let ana = TestAuth.bearer(try await client.json(.post, "/api/keys", body(["name": "ana", "role": "owner", "user_id": "ana"]), expect: .created)["key"]!.string!)
            let bia = TestAuth.bearer(try await client.json(.post, "/api/keys", body(["name": "bia", "role": "owner", "user_id": "bia"]), expect: .created)["key"]!.string!)
            let hook = body(["url": "http://127.0.0.1:9/hooks", "events": ["delivery.*"]])
            var made: [String] = []
            for _ in 0..<3 { made.append(try await client.json(.post, "/api/webhooks", hook, expect: .created, headers: ana)["endpoint_id"]!.string!) }
            let refused = try await client.json(.post, "/api/webhooks", hook, expect: .conflict, headers: ana)
            #expect(refused["type"]?.string == Problem.typeBase + "too-many-endpoints")
            try await client.json(.post, "/api/webhooks", hook, expect: .created, headers: bia)
            try await client.send(.delete, "/api/webhooks/\(made[0])", headers: ana)
            try await client.json(.post, "/api/webhooks", hook, expect: .created, headers: ana)
        }
    }

    @Test("the webhook sender keeps a bounded number of HTTP clients, however many receiver hosts it has sent to")
    func senderClientsBounded() async throws {
        let sender = WebhookSender(guardrail: try ReceiverGuard(allowPrivate: true), timeoutSeconds: 5, bodyLimit: 1024)
        for index in 0..<300 {
            let host = "receiver-\(index).example"
            let address = try #require(IPAddress("127.0.0.\(index % 250 + 1)"))
            _ = sender.client(host: host, address: address)
            sender.finished(host: host, address: address)
        }
        #expect(sender.clientCount <= WebhookSender.clientsKept)
        await sender.shutdown()
    }

    @Test("the bot's session notifier retries a session it failed to read; it never moves past it")
    func notifierRetriesFailedReads() async throws {
        let location = try await TestDatabase.make()
        let configuration = ServerConfiguration(database: location, logLevel: .error)
        try await runMigrations(configuration, logger: TestDatabase.logger)
        try await withDatabase(configuration, logger: TestDatabase.logger) { storage in
            let ids = IDGenerator()
            let access = AccessService(storage: storage, clock: .system, ids: ids, configuration: AccessConfiguration(), logger: TestDatabase.logger)
            let connector = TelegramConnector(base: "http://127.0.0.1:9", box: nil)
            let channels = ChannelService(
                storage: storage, clock: .system, ids: ids, access: access, configuration: ChannelsConfiguration(publicBaseURL: nil), connector: connector)
            let writer = DeliveryService(store: DeliveryService.makeStore(storage), clock: .system, ids: ids)
            // The notifier reads sessions through a service of its own (another server's, say): nothing cached.
            let reader = DeliveryService(store: DeliveryService.makeStore(storage), clock: .system, ids: ids)
            let notifier = SessionNotifier(channels: channels, delivery: reader, logger: TestDatabase.logger, onMessages: {})
            // A channel of ana's with her deliverer "d1" linked in chat 4242.
            try await storage.write([
                SQLStatement(
                    """
                    INSERT INTO channels (channel_id, kind, name, user_id, mode, bot_key, token_sealed, webhook_secret_sealed, default_package_value_cents,
                        desired, status, since, generation, api_key_id, created_at, updated_at)
                    VALUES ('ch-1', 'telegram', 'Entregas', 'ana', 'polling', 'bot-1', 'x', 'x', 0, 'disconnected', 'disconnected', 0, 0, 'k', 0, 0)
                    """),
                ChannelSQL.insertLink(
                    ChannelLink(
                        id: "link-1", channelID: "ch-1", role: .deliverer, userID: nil, delivererID: "d1", name: "Davi", baseSalaryCents: 0,
                        commissionPerDeliveryCents: 0, telegramUserID: 4242, chatID: 4242, telegramUsername: nil, createdAt: Timestamp(milliseconds: 0))),
            ])
            _ = try await notifier.round()  // its cursor starts at the log's present
            let session = try await writer.create(userID: "ana", name: "Lote", caller: .system)
            _ = try await writer.addPackages(session.id, [NewPackage(barcode: "N1", valueCents: 100)], caller: .system)
            _ = try await writer.start(session.id, deliverers: [NewDeliverer(delivererID: "d1", name: nil, baseSalaryCents: 0, commissionPerDeliveryCents: 0)], assignments: [:], caller: .system)
            func queued() async throws -> Int64 { try await storage.query("SELECT COUNT(*) FROM channel_outbox WHERE chat_id = 4242")[0].int(0) }

            // The session cannot be read for a moment: the round fails, the cursor stays, nothing is queued.
            try await storage.write([SQLStatement("ALTER TABLE delivery_packages RENAME TO delivery_packages_away")])
            await #expect(throws: (any Error).self) { while try await notifier.round() {} }
            #expect(try await queued() == 0)
            try await storage.write([SQLStatement("ALTER TABLE delivery_packages_away RENAME TO delivery_packages")])
            // Readable again: the next round sends the deliverer its packages.
            while try await notifier.round() {}
            #expect(try await queued() == 2)
            await connector.shutdown()
        }
        await TestDatabase.drop(location)
    }
}
