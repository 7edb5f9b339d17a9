import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

/// The channels contract over HTTP: channel rules and roles, the channel's own key, webhook mode,
/// failures and recovery, exactly-once updates and `retry_after`, against the fake Bot API.
/// One test at a time: each runs a server, a fake Bot API and sometimes proxies, and the whole
/// suite starts at once on 2 cores.
@Suite("Channels: channels, keys, webhook mode, failures", .serialized)
struct ChannelTests {
    typealias Flow = BotFlowTests

    static func key(_ client: any TestClientProtocol, role: String, user: String? = nil, deliverer: String? = nil) async throws -> String {
        var request: [String: JSONValue] = ["name": .string("k-\(role)"), "role": .string(role)]
        if let user { request["user_id"] = .string(user) }
        if let deliverer { request["deliverer_id"] = .string(deliverer) }
        return try #require(try await client.json(.post, "/api/keys", body(.object(request)), expect: .created)["key"]?.string)
    }

    @Test("channels: checked fields, one live channel per bot, roles, the channel's own key, secrets never shown")
    func rulesAndRoles() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7101, username: "rules_bot")
            try await withApp(configure: Flow.configure(fake)) { client, _ in
                func create(_ fields: [String: JSONValue], expect status: HTTPResponse.Status) async throws -> JSONValue {
                    var request: [String: JSONValue] = ["kind": "telegram", "name": "Loja", "user_id": "u1", "token": .string(token)]
                    for (key, value) in fields { request[key] = value }
                    return try await client.json(.post, "/api/channels", body(.object(request)), expect: status)
                }
                for (fields, field) in [
                    (["kind": JSONValue.string("whatsapp")], "kind"), (["name": .string("")], "name"), (["name": .string(String(repeating: "n", count: 201))], "name"),
                    (["user_id": .null], "user_id"), (["token": .string("123:short")], "token"), (["token": .string("abc:\(String(repeating: "x", count: 25))")], "token"),
                    (["mode": .string("push")], "mode"), (["proxy": ["type": "ftp", "host": "p", "port": 1]], "proxy.type"),
                    (["proxy": ["type": "http", "host": "", "port": 8080]], "proxy.host"), (["proxy": ["type": "socks5", "host": "proxy.local", "port": 0]], "proxy.port"),
                ] {
                    let problem = try await create(fields, expect: .unprocessableContent)
                    #expect(problem["field"]?.string == field, "\(fields)")
                }
                let created = try await create(
                    ["proxy": ["type": "http", "host": "127.0.0.1", "port": 1, "username": "u", "password": "proxy-secret-1"]], expect: .created)
                let id = try #require(created["channel_id"]?.string)
                let apiKey = try #require(created["api_key"]?.string)
                #expect(created["desired"]?.string == "disconnected" && created["status"]?.string == "disconnected")
                #expect(created["proxy"]?["has_password"]?.bool == true && created["proxy"]?["username"]?.string == "u")
                #expect(created["webhook_url"]?.isNull == true && created["bot"]?.isNull == true)
                let conflict = try await create([:], expect: .conflict)
                #expect(conflict["type"]?.string?.hasSuffix("/token-in-use") == true)
                // Another bot's token is fine.
                let other = try await create(["token": .string(fake.addBot(id: 7102, username: "other_bot")), "user_id": "u2"], expect: .created)
                let otherID = try #require(other["channel_id"]?.string)

                // The proxy test goes through the proxy (nothing listens on port 1: a failure, never a direct call).
                let test = try await client.json(.post, "/api/channels/\(id)/proxy/test")
                #expect(test["ok"]?.bool == false && test["error"]?.string != nil)
                #expect(!fake.calls.contains { $0.token == token })
                let noProxy = try await client.json(.post, "/api/channels/\(otherID)/proxy/test", expect: .conflict)
                #expect(noProxy["type"]?.string?.hasSuffix("/no-proxy") == true)
                // PATCH: proxy null removes it; name changes.
                let patched = try await client.json(.patch, "/api/channels/\(id)", body(["proxy": .null, "name": "Loja 2"]))
                #expect(patched["proxy"]?.isNull == true && patched["name"]?.string == "Loja 2")

                // Who sees what.
                let owner1 = try await Self.key(client, role: "owner", user: "u1")
                let viewer2 = try await Self.key(client, role: "viewer", user: "u2")
                let deliverer = try await Self.key(client, role: "deliverer", user: "u1", deliverer: "d1")
                let ownList = try await client.json(.get, "/api/channels", headers: TestAuth.bearer(owner1))["items"]!.array
                #expect(ownList.map { $0["channel_id"]?.string } == [id])
                try await client.json(.get, "/api/channels/\(id)", expect: .notFound, headers: TestAuth.bearer(viewer2))
                try await client.json(.get, "/api/channels/\(otherID)", headers: TestAuth.bearer(viewer2))
                try await client.json(.post, "/api/channels/\(otherID)/connect", expect: .forbidden, headers: TestAuth.bearer(viewer2))
                try await client.json(.get, "/api/channels", expect: .forbidden, headers: TestAuth.bearer(deliverer))
                try await client.json(.patch, "/api/channels/\(id)", body(["name": "x"]), expect: .forbidden, headers: TestAuth.bearer(owner1))
                try await client.json(.post, "/api/channels", body(["kind": "telegram"]), expect: .forbidden, headers: TestAuth.bearer(owner1))
                // The channel's own key: its channel only, like its owner; every other route 403.
                let channelKey = TestAuth.bearer(apiKey)
                #expect(try await client.json(.get, "/api/channels", headers: channelKey)["items"]!.array.map { $0["channel_id"]?.string } == [id])
                try await client.json(.get, "/api/channels/\(otherID)", expect: .notFound, headers: channelKey)
                try await client.json(.get, "/api/channels/\(id)/stats", headers: channelKey)
                try await client.json(.get, "/api/sessions/user/u1", expect: .forbidden, headers: channelKey)
                let keys = try await client.json(.get, "/api/keys?limit=200")
                #expect(keys.canonicalText().contains("\"channel_id\":\"\(id)\""))
                // Deleted: 404, its key revoked.
                try await client.send(.delete, "/api/channels/\(id)")
                try await client.json(.get, "/api/channels/\(id)", expect: .notFound)
                try await client.json(.get, "/api/channels", expect: .unauthorized, headers: channelKey)
                // Its bot may be used again by a new channel.
                try await create([:], expect: .created)

                // Secrets never in answers or events.
                let events = try await client.json(.get, "/api/events?limit=500").canonicalText()
                for secret in [token, "proxy-secret-1"] {
                    #expect(!events.contains(secret))
                    #expect(!(try await client.json(.get, "/api/channels?limit=200")).canonicalText().contains(secret))
                }
                #expect(events.contains("channel.created") && events.contains("channel.deleted"))
            }
        }
    }

    @Test("without CHANNELS_SECRET_KEY a channel cannot be created (503) and nothing is stored")
    func noSecretKey() async throws {
        try await withApp(configure: { $0.channels.secretBox = nil }) { client, _ in
            let problem = try await client.json(
                .post, "/api/channels", body(["kind": "telegram", "name": "x", "user_id": "u", "token": .string("1:" + String(repeating: "a", count: 30))]),
                expect: .serviceUnavailable)
            #expect(problem["type"]?.string?.hasSuffix("/no-secret-key") == true)
            #expect(try await client.json(.get, "/api/channels")["items"]!.array.isEmpty)
        }
    }

    @Test("webhook mode: setWebhook with a secret; a wrong or missing secret is 401 and handles nothing; a repeated update_id is handled once")
    func webhookMode() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7201, username: "hook_bot")
            try await withApp(configure: Flow.configure(fake)) { client, location in
                let channel = try await Flow.createChannel(client, token: token, user: "hook-owner", mode: "webhook")
                let id = try #require(channel["channel_id"]?.string)
                #expect(channel["webhook_url"]?.string == "http://sessiond.test/telegram/webhook/\(id)")
                try await Flow.connect(client, id)
                let hook = try #require(fake.webhook(token))
                #expect(hook.url == "http://sessiond.test/telegram/webhook/\(id)")
                #expect(hook.secret.count >= 32 && hook.secret.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
                let setCall = try #require(fake.calls.last { $0.method == "setWebhook" })
                #expect(setCall.json["allowed_updates"]?.array.contains("message") == true && setCall.json["allowed_updates"]?.array.contains("callback_query") == true)
                #expect(setCall.json["drop_pending_updates"]?.bool == false)
                let status = try await client.json(.get, "/api/channels/\(id)/status")
                #expect(status["webhook"]?["url"]?.string == hook.url)

                let invite = try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "owner"]), expect: .created)
                let owner = FakeTelegram.Person(id: 801, firstName: "Otto", username: nil)
                let update: JSONValue = [
                    "update_id": 5001,
                    "message": [
                        "message_id": 1, "from": FakeTelegram.user(owner), "chat": FakeTelegram.chat(owner), "date": 1,
                        "text": .string("/start " + (invite["token"]?.string ?? "")),
                    ],
                ]
                let secretHeader = HTTPField.Name("X-Telegram-Bot-Api-Secret-Token")!
                func post(_ json: JSONValue, secret: String?) async throws -> TestResponse {
                    var headers: HTTPFields = [TestAuth.noKey: "1", .contentType: "application/json"]
                    if let secret { headers[secretHeader] = secret }
                    return try await client.send(.post, "/telegram/webhook/\(id)", json: json.canonicalText(), headers: headers)
                }
                #expect(try await post(update, secret: nil).status == .unauthorized)
                #expect(try await post(update, secret: "wrong-secret-wrong-secret-wrong-secret").status == .unauthorized)
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await client.json(.get, "/api/channels/\(id)/stats")["updates_in"]?.int == 0)
                #expect(try await post(["no": "update"], secret: hook.secret).status == .badRequest)
                #expect(try await client.send(.post, "/telegram/webhook/nope", json: "{}", headers: [TestAuth.noKey: "1", secretHeader: hook.secret]).status == .notFound)
                // Delivered three times (a retry, a concurrent repeat): one update, one answer.
                async let first = post(update, secret: hook.secret)
                async let second = post(update, secret: hook.secret)
                let (one, two) = try await (first, second)
                #expect(one.status == .ok && two.status == .ok)
                let third = try await post(update, secret: hook.secret)
                #expect(third.status == .ok && third.body.readableBytes == 0)
                _ = try await fake.message(to: owner.id, containing: "administra")
                try await Task.sleep(for: .milliseconds(500))
                #expect(fake.sent.filter { $0.chatID == owner.id }.count == 1)
                #expect(try await client.json(.get, "/api/channels/\(id)/stats")["updates_in"]?.int == 1)
                #expect(!fake.calls.contains { $0.method == "getUpdates" })
                // Erasing the contact (its chat id) within another tenant touches nothing; within
                // the channel's owner it removes the chat's stored updates and the texts sent to it.
                func stored() async throws -> (updates: Int64, texts: Int64) {
                    let updates = try await queryRaw("SELECT COUNT(*) FROM channel_updates WHERE chat_id = \(owner.id)", on: location)[0].int(0)
                    let texts = try await queryRaw("SELECT COUNT(*) FROM channel_outbox WHERE chat_id = \(owner.id) AND payload <> '{\"erased\":true}'", on: location)[0].int(0)
                    return (updates, texts)
                }
                #expect(try await stored() == (1, 1))
                try await client.json(.delete, "/api/conversations/contact/\(owner.id)?user_id=someone-else")
                #expect(try await stored() == (1, 1))
                try await client.json(.delete, "/api/conversations/contact/\(owner.id)?user_id=hook-owner")
                #expect(try await stored() == (0, 0))
                #expect(try await client.json(.get, "/api/channels/\(id)/stats")["messages_out"]?.int == 1)
                // Disconnect deletes the webhook at Telegram.
                let disconnected = try await client.json(.post, "/api/channels/\(id)/disconnect")
                #expect(disconnected["desired"]?.string == "disconnected" && disconnected["status"]?.string == "disconnected")
                #expect(fake.webhook(token) == nil)
            }
        }
    }

    @Test("a failing Bot API puts the channel in error and it comes back by itself; a refused token waits for connect")
    func failureAndRecovery() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7301, username: "flaky_bot")
            try await withApp(configure: Flow.configure(fake)) { client, _ in
                let channel = try await Flow.createChannel(client, token: token, user: "flaky")
                let id = try #require(channel["channel_id"]?.string)
                try await Flow.connect(client, id)
                // Two failures, then two of another kind: the error's text changes while the channel stays in error.
                fake.fail(token, method: "getUpdates", status: 502, description: "Bad Gateway", count: 2)
                fake.fail(token, method: "getUpdates", status: 503, description: "Service Unavailable", count: 2)
                let failed = try await Flow.eventually("error", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "error" })
                #expect(["Bad Gateway", "Service Unavailable"].contains(failed["last_error"]?.string ?? "") && failed["last_error_at"]?.string != nil)
                try await Flow.eventually("connected again", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "connected" })
                // Refused connections: error, then back when Telegram is back.
                await fake.stop()
                try await Flow.eventually("error while refused", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "error" })
                await fake.start()
                try await Flow.eventually("connected after refusals", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "connected" })
                // One event each time the status became a value: connected, error, connected, error, connected.
                let events = try await client.json(.get, "/api/events?types=channel.connected,channel.error&limit=100")["items"]!.array
                    .filter { $0["data"]?["channel_id"]?.string == id }.compactMap { $0["type"]?.string }
                #expect(events == ["channel.connected", "channel.error", "channel.connected", "channel.error", "channel.connected"])
                #expect((try await client.json(.get, "/api/channels/\(id)/stats")["errors"]?.int ?? 0) >= 2)

                // A token Telegram refuses: error with its description, and no retries until connect.
                let refused = try await Flow.createChannel(client, token: "7399:AAE\(String(repeating: "z", count: 24))", user: "flaky")
                let refusedID = try #require(refused["channel_id"]?.string)
                try await client.json(.post, "/api/channels/\(refusedID)/connect")
                let status = try await Flow.eventually("refused", { try await client.json(.get, "/api/channels/\(refusedID)/status") }, until: { $0["status"]?.string == "error" })
                #expect(status["last_error"]?.string == "Unauthorized")
                let calls = fake.calls.filter { $0.token.hasPrefix("7399:") }.count
                try await Task.sleep(for: .seconds(2.5))
                #expect(fake.calls.filter { $0.token.hasPrefix("7399:") }.count == calls)
                // The other channel was never touched.
                #expect(try await client.json(.get, "/api/channels/\(id)/status")["status"]?.string == "connected")
            }
        }
    }

    @Test("polling: a repeated update_id is handled once; a 429 is honoured for its retry_after")
    func exactlyOnceAndRetryAfter() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7401, username: "once_bot")
            try await withApp(configure: Flow.configure(fake)) { client, _ in
                let channel = try await Flow.createChannel(client, token: token, user: "once")
                let id = try #require(channel["channel_id"]?.string)
                try await Flow.connect(client, id)
                let stranger = FakeTelegram.Person(id: 901, firstName: "Zé", username: nil)
                let update: JSONValue = [
                    "update_id": 88, "message": ["message_id": 1, "from": FakeTelegram.user(stranger), "chat": FakeTelegram.chat(stranger), "date": 1, "text": "oi"],
                ]
                // The same update twice in one getUpdates answer.
                fake.enqueueRaw(token, id: 88, json: update)
                fake.enqueueRaw(token, id: 88, json: update)
                _ = try await fake.message(to: stranger.id, containing: "privado")
                try await Task.sleep(for: .milliseconds(700))
                #expect(fake.sent.filter { $0.chatID == stranger.id }.count == 1)
                #expect(try await client.json(.get, "/api/channels/\(id)/stats")["updates_in"]?.int == 1)
                // The next poll carries the offset after it.
                try await fake.waitForCalls("a poll with offset 89") { $0.contains { $0.method == "getUpdates" && $0.json["offset"]?.int == 89 } }

                // 429 with retry_after 2: nothing more to that chat before 2 s have passed.
                fake.fail(token, method: "sendMessage", status: 429, description: "Too Many Requests: retry after 2", retryAfter: 2)
                fake.text(token, from: stranger, "de novo")
                try await fake.waitForCalls("the refused send") { calls in calls.filter { $0.method == "sendMessage" }.count >= 2 }
                let refusedAt = try #require(fake.calls.last { $0.method == "sendMessage" }?.at)
                let sent = try await fake.waitForSent("the retried message") { $0.filter { $0.chatID == stranger.id }.count == 2 }
                let retriedAt = sent.last { $0.chatID == stranger.id }!.at
                #expect(retriedAt.timeIntervalSince(refusedAt) >= 1.95)
            }
        }
    }

    @Test("through a proxy: HTTP CONNECT with credentials and SOCKS5 carry every call; a proxy that fails is an error, never a direct call")
    func proxies() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7601, username: "proxy_bot")
            let http = try TestProxy(kind: "http", credentials: "ana:s3gredo-proxy")
            defer { http.stop() }
            let socks = try TestProxy(kind: "socks5")
            defer { socks.stop() }
            try await withApp(configure: Flow.configure(fake)) { client, _ in
                let created = try await client.json(
                    .post, "/api/channels",
                    body([
                        "kind": "telegram", "name": "Via proxy", "user_id": "px", "token": .string(token),
                        "proxy": ["type": "http", "host": "127.0.0.1", "port": .int(Int64(http.port)), "username": "ana", "password": "s3gredo-proxy"],
                    ]), expect: .created)
                let id = try #require(created["channel_id"]?.string)
                try await Flow.connect(client, id)
                #expect(http.forwarded.contains("127.0.0.1:\(fake.port)"))
                let test = try await client.json(.post, "/api/channels/\(id)/proxy/test")
                #expect(test["ok"]?.bool == true && test["error"]?.isNull == true && (test["latency_ms"]?.int ?? -1) >= 0)

                // A wrong password: the proxy refuses, the channel is in error, Telegram never hears from it directly.
                try await client.json(
                    .patch, "/api/channels/\(id)",
                    body(["proxy": ["type": "http", "host": "127.0.0.1", "port": .int(Int64(http.port)), "username": "ana", "password": "errado"]]))
                let wrong = try await Flow.eventually("error behind a refusing proxy", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "error" })
                #expect(wrong["last_error"]?.string != nil)
                let callsBefore = fake.calls.filter { $0.token == token }.count
                try await Task.sleep(for: .seconds(1.5))
                #expect(fake.calls.filter { $0.token == token }.count == callsBefore)

                // SOCKS5.
                try await client.json(.patch, "/api/channels/\(id)", body(["proxy": ["type": "socks5", "host": "127.0.0.1", "port": .int(Int64(socks.port))]]))
                try await Flow.eventually("connected through SOCKS5", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "connected" })
                #expect(socks.forwarded.contains("127.0.0.1:\(fake.port)"))
                // The proxy goes away: error, and no call reaches Telegram around it.
                socks.stop()
                try await Flow.eventually("error without the proxy", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "error" })
                let callsAfter = fake.calls.filter { $0.token == token }.count
                try await Task.sleep(for: .seconds(1.5))
                #expect(fake.calls.filter { $0.token == token }.count == callsAfter)
                #expect(!(try await client.json(.get, "/api/events?limit=500")).canonicalText().contains("s3gredo-proxy"))
            }
        }
    }

    @Test("invites: checked fields, tokens shown once, a QR code until used or expired; links listed and removable")
    func invitesAndLinks() async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7701, username: "convite_bot")
            try await withApp(configure: Flow.configure(fake)) { client, _ in
                let channel = try await Flow.createChannel(client, token: token, user: "inv-owner")
                let id = try #require(channel["channel_id"]?.string)
                try await Flow.connect(client, id)
                for (request, field) in [
                    (["role": JSONValue.string("boss")], "role"), (["role": "owner", "user_id": "someone-else"], "user_id"),
                    (["role": "deliverer", "expires_in": 0], "expires_in"), (["role": "deliverer", "expires_in": 2_592_001], "expires_in"),
                ] {
                    let problem = try await client.json(.post, "/api/channels/\(id)/invites", body(.object(request)), expect: .unprocessableContent)
                    #expect(problem["field"]?.string == field)
                }
                let invite = try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "deliverer", "name": "Caio"]), expect: .created)
                let inviteID = try #require(invite["invite_id"]?.string)
                let inviteToken = try #require(invite["token"]?.string)
                #expect(inviteToken.count >= 8 && inviteToken.count <= 64)
                #expect(invite["url"]?.string == "https://t.me/convite_bot?start=\(inviteToken)")
                #expect(invite["qr_url"]?.string == "/api/channels/\(id)/invites/\(inviteID)/qr.png")
                let listed = try await client.json(.get, "/api/channels/\(id)/invites")
                #expect(listed["items"]?.array.count == 1 && !listed.canonicalText().contains(inviteToken))
                let qr = try await client.send(.get, "/api/channels/\(id)/invites/\(inviteID)/qr.png")
                #expect(qr.status == .ok && qr.headers[.contentType] == "image/png")
                #expect(Array(qr.body.readableBytesView.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])

                let caio = FakeTelegram.Person(id: 701, firstName: "Caio", username: "caio")
                fake.text(token, from: caio, "/start \(inviteToken)")
                _ = try await fake.message(to: caio.id, containing: "entregador")
                #expect(try await client.send(.get, "/api/channels/\(id)/invites/\(inviteID)/qr.png").status == .gone)
                let used = try await client.json(.get, "/api/channels/\(id)/invites")["items"]?[0]
                #expect(used?["used_by_telegram_user_id"]?.int == 701 && used?["used_at"]?.string != nil)
                let links = try await client.json(.get, "/api/channels/\(id)/links")["items"]!.array
                let link = try #require(links.first)
                #expect(link["role"]?.string == "deliverer" && link["name"]?.string == "Caio" && link["telegram_username"]?.string == "caio")
                #expect(link["deliverer_id"]?.string?.isEmpty == false)

                // An expired invite links nobody.
                let short = try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "deliverer", "expires_in": 1]), expect: .created)
                try await Task.sleep(for: .seconds(1.2))
                #expect(try await client.send(.get, "/api/channels/\(id)/invites/\(short["invite_id"]?.string ?? "")/qr.png").status == .gone)
                let late = FakeTelegram.Person(id: 702, firstName: "Lia", username: nil)
                fake.text(token, from: late, "/start \(short["token"]?.string ?? "")")
                _ = try await fake.message(to: late.id, containing: "não vale mais")

                // Revoked: its QR code is gone and it links nobody; only the owner or an admin revokes it or sees its QR code.
                let viewer = try await Self.key(client, role: "viewer", user: "inv-owner")
                let owner = try await Self.key(client, role: "owner", user: "inv-owner")
                let otherOwner = try await Self.key(client, role: "owner", user: "someone-else")
                let ownerInvite = try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "owner"]), expect: .created, headers: TestAuth.bearer(owner))
                let ownerInviteID = try #require(ownerInvite["invite_id"]?.string)
                let qrPath = "/api/channels/\(id)/invites/\(ownerInviteID)/qr.png"
                #expect(try await client.send(.get, qrPath, headers: TestAuth.bearer(viewer)).status == .forbidden)
                #expect(try await client.send(.get, qrPath, headers: TestAuth.bearer(otherOwner)).status == .notFound)
                #expect(try await client.send(.get, qrPath, headers: TestAuth.bearer(owner)).status == .ok)
                try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "owner"]), expect: .forbidden, headers: TestAuth.bearer(viewer))
                try await client.json(.post, "/api/channels/\(id)/invites/\(ownerInviteID)/revoke", expect: .forbidden, headers: TestAuth.bearer(viewer))
                try await client.json(.post, "/api/channels/\(id)/invites/\(ownerInviteID)/revoke", expect: .notFound, headers: TestAuth.bearer(otherOwner))
                try await client.json(.post, "/api/channels/\(id)/invites/nope/revoke", expect: .notFound, headers: TestAuth.bearer(owner))
                let revoked = try await client.json(.post, "/api/channels/\(id)/invites/\(ownerInviteID)/revoke", headers: TestAuth.bearer(owner))
                #expect(revoked["revoked_at"]?.string != nil && revoked["used_at"]?.isNull == true)
                #expect(try await client.send(.get, qrPath, headers: TestAuth.bearer(owner)).status == .gone)
                let sneaky = FakeTelegram.Person(id: 703, firstName: "Vera", username: nil)
                fake.text(token, from: sneaky, "/start \(ownerInvite["token"]?.string ?? "")")
                _ = try await fake.message(to: sneaky.id, containing: "não vale mais")
                #expect(try await client.json(.get, "/api/channels/\(id)/links")["items"]!.array.count == 1)

                // Unlinked: a stranger again.
                try await client.send(.delete, "/api/channels/\(id)/links/\(link["link_id"]?.string ?? "")")
                #expect(try await client.send(.delete, "/api/channels/\(id)/links/\(link["link_id"]?.string ?? "")").status == .notFound)
                fake.text(token, from: caio, "oi")
                _ = try await fake.message(to: caio.id, containing: "privado")
                let events = try await client.json(.get, "/api/events?limit=500").canonicalText()
                #expect(events.contains("channel.invite.created") && events.contains("channel.invite.revoked") && events.contains("channel.link.created") && events.contains("channel.link.removed"))
                #expect(!events.contains(inviteToken))
            }
        }
    }
}
