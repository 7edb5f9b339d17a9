@testable import Channels
import Foundation
import Kernel
import Testing

/// The channels module's pure rules: money in reais, typed barcodes, tokens, callback data, pacing.
@Suite("Channels: rules")
struct ChannelRulesTests {
    @Test("R$ 1.234,56: thousands with dots, cents with a comma, a minus before R$")
    func formatReais() {
        let nbsp = "\u{00A0}"
        #expect(Reais.format(cents: 0) == "R$\(nbsp)0,00")
        #expect(Reais.format(cents: 5) == "R$\(nbsp)0,05")
        #expect(Reais.format(cents: 123_456) == "R$\(nbsp)1.234,56")
        #expect(Reais.format(cents: 100_000_000) == "R$\(nbsp)1.000.000,00")
        #expect(Reais.format(cents: -1234) == "-R$\(nbsp)12,34")
    }

    @Test("amounts typed in chat: 12,50 · 12.50 · R$ 1250,00 · 8; anything else is refused")
    func parseReais() {
        #expect(Reais.parse("12,50") == 1250)
        #expect(Reais.parse("12.50") == 1250)
        #expect(Reais.parse("R$ 1250,00") == 125_000)
        #expect(Reais.parse("R$1250,00") == 125_000)
        #expect(Reais.parse("8") == 800)
        #expect(Reais.parse("7,5") == 750)
        for bad in ["", "R$", "12,", "12,505", "1.234,56", "-3", "abc", "12 50", "1e3"] {
            #expect(Reais.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("barcodes one per line, with an optional value; blank lines skipped; a bad value named")
    func typedBarcodes() {
        let (packages, invalid) = DeliveryBot.parseBarcodes("BR1\n  BR2 12,50 \n\nBR3 R$ 3\nBR4 doze\r\nBR5", defaultValue: 990)
        #expect(packages.map(\.barcode) == ["BR1", "BR2", "BR3", "BR5"])
        #expect(packages.map(\.valueCents) == [990, 1250, 300, 990])
        #expect(invalid == ["BR4 doze"])
    }

    @Test("bot tokens: digits, a colon, 20 or more of A-Z a-z 0-9 _ -")
    func tokens() {
        #expect(Channel.botID(ofToken: "123456:ABCDEFGHIJ_klmnopqr-st") == "123456")
        for bad in ["123456:short", ":ABCDEFGHIJKLMNOPQRSTU", "12a:ABCDEFGHIJKLMNOPQRSTU", "123456ABCDEFGHIJKLMNOPQRSTU", "1:ABCDEFGHIJKLMNOPQRST!"] {
            #expect(Channel.botID(ofToken: bad) == nil, "\(bad)")
        }
    }

    @Test("ids fit two to a button's 64 bytes of callback data and come back whole")
    func compactIDs() {
        let ids = IDGenerator()
        for _ in 0..<50 {
            let (session, package) = (ids.make(), ids.make())
            let data = "fail:" + CompactID.encode(session) + ":" + CompactID.encode(package)
            #expect(data.utf8.count <= 64)
            #expect(CompactID.decode(CompactID.encode(session)) == session)
        }
        #expect(CompactID.decode("not-an-id") == nil)
    }

    @Test("pacing: per chat bursts of 3 then 1 a second; per bot 30 a second; a 429 blocks the chat until its retry_after")
    func pacing() {
        var pacing = Pacing()
        let start: Int64 = 1_000_000
        #expect(pacing.take(chat: 1, now: start) == nil)
        #expect(pacing.take(chat: 1, now: start) == nil)
        #expect(pacing.take(chat: 1, now: start) == nil)
        let wait = pacing.take(chat: 1, now: start)
        #expect(wait != nil && wait! > 900 && wait! <= 1001)
        #expect(pacing.take(chat: 1, now: start + 1000) == nil)
        #expect(pacing.take(chat: 1, now: start + 1000) != nil)
        // Other chats are not held up by chat 1, up to the bot's 30 a second.
        var sent = 0
        for chat in Int64(2)...40 where pacing.take(chat: chat, now: start + 1000) == nil { sent += 1 }
        #expect(sent == 29)  // the bot's bucket holds 30 (refilled in that second), one spent on chat 1 at start + 1000
        // 429: nothing to that chat before retry_after, whatever its bucket says.
        var blocked = Pacing()
        blocked.block(chat: 9, until: start + 2000)
        #expect(blocked.take(chat: 9, now: start + 1999) == 1)
        #expect(blocked.take(chat: 9, now: start + 2000) == nil)
        // Callback answers (no chat) only spend the bot's budget.
        var answers = Pacing()
        #expect((0..<30).allSatisfy { _ in answers.take(chat: nil, now: start) == nil })
        #expect(answers.take(chat: nil, now: start) != nil)
    }

    @Test("a QR code PNG of a link")
    func qrCode() throws {
        let png = try QRCode.png("https://t.me/entregas_bot?start=abcDEF123_-")
        #expect(png.prefix(8) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(png.count > 200)
    }

    @Test("a shutdown's bounded wait really ends at its limit, even on work that ignores cancellation")
    func boundedWait() async throws {
        // Awaiting another task's value cannot be cancelled: a task group around it (the first
        // version) waited the whole 30 s, so a stuck bot connection could hang a server's shutdown.
        let stuck = Task { try? await Task.sleep(for: .seconds(30)) }
        defer { stuck.cancel() }
        let started = ContinuousClock.now
        await ChannelRuntime.within(.milliseconds(200)) { await stuck.value }
        #expect(ContinuousClock.now - started < .seconds(10))
        // And work that ends sooner is not held to the limit.
        let quick = ContinuousClock.now
        await ChannelRuntime.within(.seconds(30)) {}
        #expect(ContinuousClock.now - quick < .seconds(10))
    }
}
