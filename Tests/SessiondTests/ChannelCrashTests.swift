import AsyncHTTPClient
import Foundation
import Kernel
import NIOCore
import Testing

/// The real `sessiond` executable, two of them on one database, one killed with SIGKILL in the
/// middle of a dialog: one poller per bot at any moment, and nothing lost or done twice.
@Suite("Channels: two servers and a SIGKILL")
struct ChannelCrashTests {
    typealias Crash = WebhookCrashTests

    static func json(_ text: String) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:] }

    @Test("one poller per bot across servers; after a SIGKILL mid-dialog the other server takes over: every barcode added once, none lost")
    func killMidDialog() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: SessiondBinary.url.path), "build the executable first: swift build --build-tests")
        let location = try await TestDatabase.make()
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        defer { _ = client.shutdown() }
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7501, username: "crash_bot")
            let environment = [
                "TELEGRAM_API_URL": fake.url, "CHANNELS_SECRET_KEY": BotFlowTests.secretKey, "TELEGRAM_POLL_TIMEOUT": "1", "CHANNEL_LEASE_TTL": "3",
                "CHANNEL_MAX_BACKOFF": "2",
            ]
            let first = try Crash.Server(database: location, port: try Crash.freePort(), environment: environment)
            defer { first.stop() }
            try await Crash.waitReady(client, first)
            let created = try await Crash.call(
                client, .POST, first.base + "/api/channels",
                json: #"{"kind":"telegram","name":"Crash","user_id":"crash-owner","token":"\#(token)","default_package_value_cents":500}"#)
            #expect(created.status == 201)
            let id = try #require(Self.json(created.body)["channel_id"] as? String)
            _ = try await Crash.call(client, .POST, first.base + "/api/channels/\(id)/connect")
            let second = try Crash.Server(database: location, port: try Crash.freePort(), environment: environment)
            defer { second.stop() }
            try await Crash.waitReady(client, second)
            try await fake.waitForCalls("a poll") { $0.contains { $0.method == "getUpdates" } }

            let owner = FakeTelegram.Person(id: 521, firstName: "Olga", username: nil)
            let invite = try await Crash.call(client, .POST, second.base + "/api/channels/\(id)/invites", json: #"{"role":"owner"}"#)
            #expect(invite.status == 201, "\(invite.body)")
            fake.text(token, from: owner, "/start " + (Self.json(invite.body)["token"] as? String ?? ""))
            _ = try await fake.message(to: owner.id, containing: "administra")
            fake.press(token, from: owner, data: "menu:new")
            _ = try await fake.message(to: owner.id, containing: "aberta!")

            // Which server polls? The one holding the lease; kill it in the middle of a burst of barcodes.
            let holder = try #require(try await Self.leaseHolderPort(client, servers: [first, second], channel: id))
            let victim = holder == first.port ? first : second
            let survivor = holder == first.port ? second : first
            for index in 0..<12 {
                fake.text(token, from: owner, "PKG\(String(format: "%03d", index))")
                if index == 5 {
                    try await Task.sleep(for: .milliseconds(150))
                    victim.kill()
                }
            }
            // The survivor takes the lease over once it expires and handles what is left.
            let replies = try await fake.waitForSent(seconds: 40, "a reply to every barcode") { sent in
                let added = sent.filter { $0.chatID == owner.id && $0.text.contains("adicionado") }
                return Set(added.compactMap { Self.total(in: $0.text) }).count >= 12
            }
            let session = try await Crash.call(client, .GET, survivor.base + "/api/sessions/user/crash-owner")
            let sessions = Self.json(session.body)["sessions"] as? [[String: Any]] ?? Self.json(session.body)["items"] as? [[String: Any]] ?? []
            let sessionID = try #require(sessions.first?["session_id"] as? String)
            let full = Self.json(try await Crash.call(client, .GET, survivor.base + "/api/sessions/\(sessionID)").body)
            let barcodes = (full["packages"] as? [[String: Any]] ?? []).compactMap { $0["barcode"] as? String }
            #expect(barcodes.sorted() == (0..<12).map { "PKG" + String(format: "%03d", $0) })
            // Nothing handled twice: no barcode was ever answered as a duplicate; a reply may repeat only
            // for the one message in flight at the kill.
            let toOwner = replies.filter { $0.chatID == owner.id && $0.text.contains("adicionado") }
            #expect(!replies.contains { $0.chatID == owner.id && $0.text.contains("Duplicado") })
            #expect(toOwner.count <= 13)
            // Never two long polls of one bot at once, across both servers and the takeover.
            #expect(fake.conflicts == 0)
            // The survivor now polls from the persisted offset.
            let stats = Self.json(try await Crash.call(client, .GET, survivor.base + "/api/channels/\(id)/stats").body)
            #expect(stats["updates_in"] as? Int == 14)
        }
        await TestDatabase.drop(location)
    }

    /// The `N` of "(total: N)" in a reply.
    static func total(in text: String) -> Int? {
        guard let range = text.range(of: "total: ") else { return nil }
        return Int(String(text[range.upperBound...].prefix { $0.isNumber }))
    }

    /// The port of the server holding the channel's lease (its `/metrics` say it polls that channel).
    static func leaseHolderPort(_ client: HTTPClient, servers: [Crash.Server], channel: String) async throws -> Int? {
        for server in servers {
            let metrics = try await Crash.call(client, .GET, server.base + "/metrics")
            if metrics.body.contains("sessiond_channel_polling{channel_id=\"\(channel)\"} 1") { return server.port }
        }
        return nil
    }
}
