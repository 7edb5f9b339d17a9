import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

/// The delivery bot end to end: the real server, a local fake of the Telegram Bot API on
/// 127.0.0.1, an owner and two deliverers scripted in chat; then the HTTP API must show exactly
/// the session they ran.
@Suite("Channels: the delivery bot in chat", .serialized)
struct BotFlowTests {
    static let secretKey = SecretBox.generateKey()

    /// The channels module pointed at the fake, with short polls, leases and backoff.
    static func configure(_ fake: FakeTelegram) -> @Sendable (inout ServerConfiguration) -> Void {
        let url = fake.url
        return { configuration in
            configuration.channels.telegramAPIURL = url
            configuration.channels.secretBox = try? SecretBox(base64: secretKey)
            configuration.channels.pollTimeoutSeconds = 1
            configuration.channels.leaseTTLSeconds = 3
            configuration.channels.maxBackoffSeconds = 2
            configuration.access.publicBaseURL = "http://sessiond.test"
            configuration.channels.publicBaseURL = "http://sessiond.test"
            // Photos are read however loaded the machine is (the budget has a test of its own).
            configuration.scanning.timeBudget = .seconds(60)
        }
    }

    static func eventually<T>(seconds: Double = 20, _ what: String, _ probe: () async throws -> T, until done: (T) -> Bool) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let value = try await probe()
            if done(value) { return value }
            if Date() > deadline { throw FakeTelegram.Timeout(detail: "waited for \(what); last: \(value)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func createChannel(_ client: any TestClientProtocol, token: String, user: String, mode: String = "polling", value: Int64 = 1000) async throws -> JSONValue {
        try await client.json(
            .post, "/api/channels",
            body(["kind": "telegram", "name": "Entregas", "user_id": .string(user), "token": .string(token), "mode": .string(mode), "default_package_value_cents": .int(value)]),
            expect: .created)
    }

    static func connect(_ client: any TestClientProtocol, _ id: String) async throws {
        try await client.json(.post, "/api/channels/\(id)/connect")
        try await eventually("the channel to connect", { try await client.json(.get, "/api/channels/\(id)/status") }, until: { $0["status"]?.string == "connected" })
    }

    /// The token in a `https://t.me/<bot>?start=<token>` link inside `text`.
    static func startToken(in text: String) -> String? {
        guard let range = text.range(of: "?start=") else { return nil }
        return String(text[range.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
    }

    @Test(
        "an owner and two deliverers run a whole session in chat, and the API shows exactly that session (long polling, and webhook with its secret)",
        arguments: ["polling", "webhook"])
    func wholeSession(mode: String) async throws {
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: mode == "polling" ? 7001 : 7003, username: "entregas_bot")
            try await withApp(configure: Self.configure(fake)) { client, _ in
                // Webhook mode: the fake POSTs each update to the URL it was given, with the secret
                // header, through the test's client (the server under test), as Telegram would.
                let pusher = Task {
                    await fake.pushWebhooks(token) { url, secret, update in
                        let path = String(url.dropFirst("http://sessiond.test".count))
                        // A wrong secret is refused and handles nothing.
                        let wrong = try await client.send(
                            .post, path, json: update.canonicalText(), headers: [TestAuth.noKey: "1", HTTPField.Name("X-Telegram-Bot-Api-Secret-Token")!: "x" + secret])
                        guard wrong.status == .unauthorized else { return false }
                        let answer = try await client.send(
                            .post, path, json: update.canonicalText(), headers: [TestAuth.noKey: "1", HTTPField.Name("X-Telegram-Bot-Api-Secret-Token")!: secret])
                        return answer.status == .ok
                    }
                }
                defer { pusher.cancel() }
                let owner = FakeTelegram.Person(id: 501, firstName: "Olga", username: "olga")
                let ana = FakeTelegram.Person(id: 601, firstName: "Ana", username: "ana")
                let bruno = FakeTelegram.Person(id: 602, firstName: "Bruno", username: nil)
                let stranger = FakeTelegram.Person(id: 999, firstName: "Zé", username: nil)

                let channel = try await Self.createChannel(client, token: token, user: "owner-tg", mode: mode)
                let id = try #require(channel["channel_id"]?.string)
                #expect(channel["api_key"]?.string?.hasPrefix("sdk_") == true)
                #expect(!channel.canonicalText().contains(token))
                // The bot's username is known only once Telegram was reached.
                try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "owner"]), expect: .conflict)
                try await Self.connect(client, id)
                #expect(try await client.json(.get, "/api/channels/\(id)")["bot"]?["username"]?.string == "entregas_bot")

                // The owner links through an invite made over the API; Ana through /convidar in chat; Bruno over the API.
                let ownerInvite = try await client.json(.post, "/api/channels/\(id)/invites", body(["role": "owner"]), expect: .created)
                #expect(ownerInvite["url"]?.string?.hasPrefix("https://t.me/entregas_bot?start=") == true)
                fake.text(token, from: owner, "/start " + (ownerInvite["token"]?.string ?? ""))
                _ = try await fake.message(to: owner.id, containing: "administra")
                fake.text(token, from: stranger, "oi")
                _ = try await fake.message(to: stranger.id, containing: "privado")

                fake.text(token, from: owner, "/convidar Ana 80 2,50")
                let invitePhoto = try await fake.waitForSent("the invite's QR photo") { $0.contains { $0.method == "sendPhoto" } }.first { $0.method == "sendPhoto" }!
                #expect(invitePhoto.photo?.prefix(4) == [0x89, 0x50, 0x4E, 0x47])
                let anaToken = try #require(Self.startToken(in: invitePhoto.text))
                fake.text(token, from: ana, "/start \(anaToken)")
                _ = try await fake.message(to: ana.id, containing: "entregador")
                // A used invite links nobody.
                fake.text(token, from: stranger, "/start \(anaToken)")
                _ = try await fake.message(to: stranger.id, containing: "não vale mais")

                let brunoInvite = try await client.json(
                    .post, "/api/channels/\(id)/invites",
                    body(["role": "deliverer", "deliverer_id": "d-bruno", "name": "Bruno", "base_salary_cents": 5000, "commission_per_delivery_cents": 300]),
                    expect: .created)
                fake.text(token, from: bruno, "/start " + (brunoInvite["token"]?.string ?? ""))
                _ = try await fake.message(to: bruno.id, containing: "entregador")
                let links = try await client.json(.get, "/api/channels/\(id)/links")["items"]!.array
                #expect(links.count == 3)
                #expect(links.contains { $0["deliverer_id"]?.string == "d-bruno" && $0["telegram_user_id"]?.int == 602 && $0["chat_id"]?.int == 602 })

                // The menu, exactly.
                fake.text(token, from: owner, "/sessions")
                let menu = try await fake.message(to: owner.id, containing: "O que você quer fazer")
                #expect(Set(menu.buttons.map(\.text)) == ["➕ Nova Sessão", "📂 Minhas Sessões", "🔄 Reutilizar", "📊 Dashboard"])
                fake.press(token, from: owner, data: menu.buttons.first { $0.text == "➕ Nova Sessão" }!.data, on: menu.messageID)
                _ = try await fake.message(to: owner.id, containing: "aberta")

                // Barcodes, one per line, with and without values; duplicates named, not added.
                fake.text(token, from: owner, "BR001\nBR002 12,50\n\nBR003 R$ 1250,00\nBR001")
                let added = try await fake.message(to: owner.id, containing: "adicionados")
                #expect(added.text.contains("3 pacotes adicionados"))
                #expect(added.text.contains("BR001"))
                fake.text(token, from: owner, "BR002\nBR004 8\nBR005 7.5")
                let second = try await fake.message(to: owner.id, containing: "2 pacotes adicionados")
                #expect(second.text.contains("Duplicado") && second.text.contains("BR002"))

                // Start: nobody picked → nothing starts; then both.
                fake.text(token, from: owner, "/start_session")
                let picker = try await fake.message(to: owner.id, containing: "Quem vai entregar")
                #expect(picker.buttons.contains { $0.text == "▶️ Iniciar" })
                let anaButton = try #require(picker.buttons.first { $0.text.contains("Ana") })
                let brunoButton = try #require(picker.buttons.first { $0.text.contains("Bruno") })
                fake.press(token, from: owner, data: "go", on: picker.messageID)
                _ = try await fake.message(to: owner.id, containing: "Selecione ao menos um")
                fake.press(token, from: owner, data: anaButton.data, on: picker.messageID)
                fake.press(token, from: owner, data: brunoButton.data, on: picker.messageID)
                fake.press(token, from: owner, data: "go", on: picker.messageID)
                _ = try await fake.message(to: owner.id, containing: "iniciada com 2 entregadores")

                // Each deliverer gets one message per package assigned, with the two buttons.
                let sessions = try await client.json(.get, "/api/sessions/user/owner-tg")
                let sessionID = try #require(sessions["sessions"]?[0]?["session_id"]?.string ?? sessions["items"]?[0]?["session_id"]?.string)
                let packageMessages = try await fake.waitForSent("5 package messages") { sent in
                    sent.filter { $0.buttons.contains { $0.text == "✅ Entregue" } && $0.buttons.contains { $0.text == "❌ Falhou" } }.count == 5
                }.filter { $0.buttons.contains { $0.text == "✅ Entregue" } }
                let forAna = packageMessages.filter { $0.chatID == ana.id }
                let forBruno = packageMessages.filter { $0.chatID == bruno.id }
                #expect(forAna.count + forBruno.count == 5 && !forAna.isEmpty && !forBruno.isEmpty)

                // Ana delivers hers (one pressed twice); Bruno fails one with a reason and delivers the rest.
                for message in forAna {
                    fake.press(token, from: ana, data: message.buttons.first { $0.text == "✅ Entregue" }!.data, on: message.messageID)
                }
                fake.press(token, from: ana, data: forAna[0].buttons.first { $0.text == "✅ Entregue" }!.data, on: forAna[0].messageID)
                let failing = forBruno[0]
                fake.press(token, from: bruno, data: failing.buttons.first { $0.text == "❌ Falhou" }!.data, on: failing.messageID)
                _ = try await fake.message(to: bruno.id, containing: "motivo")
                fake.text(token, from: bruno, "  Cliente ausente  ")
                _ = try await fake.message(to: bruno.id, containing: "Anotado")
                for message in forBruno.dropFirst() {
                    fake.press(token, from: bruno, data: message.buttons.first { $0.text == "✅ Entregue" }!.data, on: message.messageID)
                }

                // The session completes by itself; the owner gets the money summary.
                let summary = try await fake.message(to: owner.id, containing: "concluída")
                let session = try await client.json(.get, "/api/sessions/\(sessionID)")
                #expect(session["status"]?.string == "completed")
                #expect(session["packages_total"]?.int == 5)
                #expect(session["packages_delivered"]?.int == 4)
                #expect(session["packages_failed"]?.int == 1)
                let packages = session["packages"]!.array
                let failedBarcode = failing.text.replacingOccurrences(of: "📦 ", with: "").components(separatedBy: "\n")[0]
                let failed = packages.first { $0["delivery_status"]?.string == "failed" }
                #expect(failed?["barcode"]?.string == failedBarcode, "\(failing.text)")
                #expect(failed?["failure_reason"]?.string == "Cliente ausente")
                let values = Dictionary(uniqueKeysWithValues: packages.map { ($0["barcode"]?.string ?? "", $0["value_cents"]?.int ?? -1) })
                #expect(values == ["BR001": 1000, "BR002": 1250, "BR003": 125_000, "BR004": 800, "BR005": 750])
                let revenue = session["total_revenue_cents"]?.int ?? 0
                #expect(summary.text.contains("Receita: " + Self.reais(revenue)))
                #expect(summary.text.contains("Lucro: " + Self.reais(session["total_profit_cents"]?.int ?? 0)))
                let delivererIDs = session["deliverers"]!.array.compactMap { $0["deliverer_id"]?.string }
                #expect(delivererIDs.contains("d-bruno"))

                // Every button press was answered once.
                // Owner: new session, go, two picks, go; Ana: each of hers and one again; Bruno: ❌ once and ✅ for the rest.
                let presses = 5 + (forAna.count + 1) + forBruno.count
                try await fake.waitForCalls("every press answered") { $0.filter { $0.method == "answerCallbackQuery" }.count == presses }
                // Every message Telegram accepted is counted (the count is written just after Telegram answers).
                let stats = try await Self.eventually("messages_out to match what Telegram accepted", {
                    try await client.json(.get, "/api/channels/\(id)/stats")
                }, until: { $0["messages_out"]?.int == Int64(fake.sent.count) })
                #expect((stats["updates_in"]?.int ?? 0) >= 20)
                #expect(fake.calls.contains { $0.method == "getUpdates" } == (mode == "polling"))
                // No secret ever went out: not in responses, events, or messages.
                let events = try await client.json(.get, "/api/events?limit=500")
                #expect(!events.canonicalText().contains(token))
                #expect(!fake.sent.contains { $0.text.contains(token) })
            }
        }
    }

    /// Links a person through an API invite and waits for the welcome.
    static func link(_ client: any TestClientProtocol, _ fake: FakeTelegram, token: String, channel: String, _ person: FakeTelegram.Person, _ invite: JSONValue) async throws {
        let created = try await client.json(.post, "/api/channels/\(channel)/invites", body(invite), expect: .created)
        fake.text(token, from: person, "/start " + (created["token"]?.string ?? ""))
        _ = try await fake.message(to: person.id, containing: "Olá")
    }

    @Test("menus, label photos and a restart in the middle of a dialog: the bot continues where it was")
    func photosMenusAndRestart() async throws {
        let corpus = try await ScanCorpus.shared()
        let clean = corpus.photos.filter { $0.degradation == "clean" && $0.format != "qr" }
        try await withFakeTelegram { fake in
            let token = fake.addBot(id: 7002, username: "fotos_bot")
            let location = try await TestDatabase.make()
            let owner = FakeTelegram.Person(id: 511, firstName: "Olga", username: nil)
            let ana = FakeTelegram.Person(id: 611, firstName: "Ana", username: nil)
            let configure = Self.configure(fake)
            let (channelID, sessionID) = try await testApplication(on: location, configure: configure).test(.router) { client in
                let channel = try await Self.createChannel(client, token: token, user: "owner-photo", value: 990)
                let id = try #require(channel["channel_id"]?.string)
                try await Self.connect(client, id)
                try await Self.link(client, fake, token: token, channel: id, owner, ["role": "owner"])
                try await Self.link(client, fake, token: token, channel: id, ana, ["role": "deliverer", "deliverer_id": "d-ana", "name": "Ana"])
                // Text before any session: the bot says how to start.
                fake.text(token, from: owner, "XYZ123")
                _ = try await fake.message(to: owner.id, containing: "Nenhuma sessão aberta")
                fake.press(token, from: owner, data: "menu:new")
                _ = try await fake.message(to: owner.id, containing: "aberta!")
                // A label photo adds its package; the same photo again is named a duplicate; a blank photo reads nothing.
                fake.photo(token, from: owner, try corpus.bytes(clean[0].file))
                _ = try await fake.message(to: owner.id, containing: "Li o código \(clean[0].barcode) e adicionei")
                fake.photo(token, from: owner, try corpus.bytes(clean[0].file))
                _ = try await fake.message(to: owner.id, containing: "já está na sessão")
                fake.photo(token, from: owner, try corpus.badBytes("blank.jpg"))
                _ = try await fake.message(to: owner.id, containing: "Não consegui ler")
                fake.text(token, from: owner, "\(clean[1].barcode)")
                _ = try await fake.message(to: owner.id, containing: "1 pacote adicionado (total: 2)")
                // The dashboard and the listing.
                fake.text(token, from: owner, "/session_dashboard")
                let dashboard = try await fake.message(to: owner.id, containing: "Pendentes: 2")
                #expect(dashboard.text.contains("R$\u{00A0}0,00"))
                fake.press(token, from: owner, data: "menu:list")
                _ = try await fake.message(to: owner.id, containing: "Suas sessões")
                let sessions = try await client.json(.get, "/api/sessions/user/owner-photo")
                let sessionID = try #require(sessions["sessions"]?[0]?["session_id"]?.string ?? sessions["items"]?[0]?["session_id"]?.string)
                // Started over the HTTP API: Ana still gets her packages in chat.
                try await client.json(
                    .post, "/api/sessions/\(sessionID)/start",
                    body(["deliverers": [["deliverer_id": "d-ana", "name": "Ana", "base_salary_cents": 1000, "commission_per_delivery_cents": 100]]]))
                let packages = try await fake.waitForSent("Ana's two packages") { $0.filter { $0.chatID == ana.id && $0.buttons.count == 2 }.count == 2 }
                    .filter { $0.chatID == ana.id && $0.buttons.count == 2 }
                // Ana presses ❌ Falhou: the bot now waits for her reason …
                let second = try #require(packages.first { $0.text.contains(clean[1].barcode) })
                fake.press(token, from: ana, data: second.buttons.first { $0.text == "❌ Falhou" }!.data, on: second.messageID)
                _ = try await fake.message(to: ana.id, containing: "motivo")
                return (id, sessionID)
            }
            // … and the server stops and starts again before she answers.
            try await testApplication(on: location, configure: configure).test(.router) { client in
                fake.text(token, from: ana, "Endereço não encontrado")
                _ = try await fake.message(to: ana.id, containing: "Anotado")
                // Her photo of the first label delivers it (scanning intent deliver); the session completes.
                fake.photo(token, from: ana, try corpus.bytes(clean[0].file))
                _ = try await fake.message(to: ana.id, containing: "marcado como entregue")
                let summary = try await fake.message(to: owner.id, containing: "concluída")
                #expect(summary.text.contains("Receita: R$\u{00A0}9,90"))
                let session = try await client.json(.get, "/api/sessions/\(sessionID)")
                #expect(session["status"]?.string == "completed")
                let failed = session["packages"]!.array.first { $0["delivery_status"]?.string == "failed" }
                #expect(failed?["failure_reason"]?.string == "Endereço não encontrado" && failed?["barcode"]?.string == clean[1].barcode)
                // 🔄 Reutilizar offers open sessions only: none now.
                fake.press(token, from: owner, data: "menu:reuse")
                _ = try await fake.message(to: owner.id, containing: "Nenhuma sessão aberta para reutilizar")
                #expect(try await client.json(.get, "/api/channels/\(channelID)/status")["status"]?.string == "connected")
            }
            await TestDatabase.drop(location)
        }
    }

    static func reais(_ cents: Int64) -> String {
        let sign = cents < 0 ? "-" : ""
        let whole = String(abs(cents) / 100)
        var grouped = ""
        for (index, digit) in whole.enumerated() {
            if index > 0 && (whole.count - index) % 3 == 0 { grouped.append(".") }
            grouped.append(digit)
        }
        return "\(sign)R$\u{00A0}\(grouped),\(String(format: "%02d", abs(cents) % 100))"
    }
}
