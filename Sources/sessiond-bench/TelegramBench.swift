import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The benchmark's Telegram Bot API on 127.0.0.1: enough of it for bots in webhook mode (`getMe`,
/// `setWebhook`, `sendMessage`, …); records when each reply left sessiond for which chat.
final class BenchTelegram: Sendable {
    private struct State {
        var secrets: [String: String] = [:]
        var replies: [Int64: [Double]] = [:]
        var port = 0
    }
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var url: String { "http://127.0.0.1:\(state.withLock { $0.port })" }
    /// The webhook secret each bot token was given.
    var secrets: [String: String] { state.withLock { $0.secrets } }
    /// Arrival times of the replies to each chat, in order.
    var replies: [Int64: [Double]] { state.withLock { $0.replies } }
    var replyCount: Int { state.withLock { $0.replies.values.reduce(0) { $0 + $1.count } } }

    func start() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let router = Router()
            router.post("/:bot/:method") { request, context -> Response in
                var request = request
                let body = try await request.collectBody(upTo: 1 << 20)
                let now = Date().timeIntervalSince1970
                let token = String(try context.parameters.require("bot").dropFirst(3))
                let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
                let result: Any
                switch try context.parameters.require("method") {
                case "getMe":
                    let id = Int(token.split(separator: ":").first ?? "0") ?? 0
                    result = ["id": id, "is_bot": true, "first_name": "Bench", "username": "bench\(id)_bot"]
                case "setWebhook":
                    self.state.withLock { $0.secrets[token] = json["secret_token"] as? String }
                    result = true
                case "sendMessage":
                    let chat = (json["chat_id"] as? NSNumber)?.int64Value ?? 0
                    self.state.withLock { $0.replies[chat, default: []].append(now) }
                    result = ["message_id": 1, "date": 0, "chat": ["id": chat, "type": "private"]]
                default:
                    result = true
                }
                let data = try JSONSerialization.data(withJSONObject: ["ok": true, "result": result])
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
            }
            var logger = Logger(label: "bench-telegram")
            logger.logLevel = .critical
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bench-telegram"),
                onServerRunning: { channel in
                    self.state.withLock { $0.port = channel.localAddress?.port ?? 0 }
                    continuation.resume()
                }, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
            task.withLock { $0 = Task { try await group.run() } }
        }
    }

    func stop() { task.withLock { $0?.cancel() } }
}

extension Bench {
    /// One owner chat of a bench bot: where updates go and who sends them.
    struct BenchChat {
        var path: String
        var secret: String
        var user: Int64
    }

    /// Bots in webhook mode, each with owners who each have an open session: every update is a
    /// barcode typed by an owner (a package added and a reply written, in one transaction).
    /// Measures the webhook route with wrk (stored durably), how fast the stored updates are
    /// handled, and, at a gentle rate, the time from an update to its reply leaving for Telegram.
    func telegramWorkload(base: String, admin: Client, server: Process, telegram: BenchTelegram, scratch: URL) async throws -> (Row, String) {
        let owners = 8
        var chats: [BenchChat] = []
        for bot in 0..<telegramBots {
            let token = "\(900_000 + bot):AAEbench\(String(repeating: "x", count: 24))"
            let channel = try await admin.json(
                "POST", "/api/channels", ["kind": "telegram", "name": "bench \(bot)", "user_id": "bench-bot-owner", "token": token, "mode": "webhook", "default_package_value_cents": 1000])
            let id = channel["channel_id"] as? String ?? ""
            _ = try await admin.json("POST", "/api/channels/\(id)/connect")
            for _ in 0..<100 where telegram.secrets[token] == nil { try await Task.sleep(for: .milliseconds(50)) }
            guard let secret = telegram.secrets[token] else { throw BenchError("bot \(bot) never set its webhook") }
            for owner in 0..<owners {
                let user = Int64(10_000 + bot * 100 + owner)
                let invite = try await admin.json("POST", "/api/channels/\(id)/invites", ["role": "owner"])
                let chat = BenchChat(path: "/telegram/webhook/\(id)", secret: secret, user: user)
                try await post(base, chat, id: Int64(bot * 1000 + owner * 10 + 1), text: "/start " + (invite["token"] as? String ?? ""))
                try await post(base, chat, id: Int64(bot * 1000 + owner * 10 + 2), callback: "menu:new")
                chats.append(chat)
            }
        }
        try await waitHandled(base, admin, atLeast: chats.count * 2)
        log("telegram: \(telegramBots) bots × \(owners) owners, each with an open session")

        // At a gentle rate (20 updates a second over every chat, far under Telegram's pace limits):
        // from posting the update to its reply arriving at the Bot API.
        try await Task.sleep(for: .seconds(2))
        let before = telegram.replies.mapValues(\.count)
        var posted: [Int64: [Double]] = [:]
        for index in 0..<200 {
            let chat = chats[index % chats.count]
            posted[chat.user, default: []].append(Date().timeIntervalSince1970)
            try await post(base, chat, id: Int64(1_000_000 + index), text: "LAT\(index)")
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .seconds(3))
        var latencies: [Double] = []
        let replies = telegram.replies
        for (user, times) in posted {
            let arrived = Array((replies[user] ?? []).dropFirst(before[user] ?? 0))
            for (sent, reply) in zip(times, arrived) { latencies.append((reply - sent) * 1000) }
        }
        latencies.sort()
        func percentile(_ p: Double) -> String { latencies.isEmpty ? "?" : String(format: "%.0f", latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) }

        // As fast as wrk sends them: barcodes over every chat, each update once.
        let handledBefore = try await handledCount(base, admin)
        let dataPath = scratch.appendingPathComponent("telegram.tsv").path
        try chats.map { "\($0.path)\t\($0.secret)\t\($0.user)" }.joined(separator: "\n").appending("\n").write(toFile: dataPath, atomically: true, encoding: .utf8)
        let scriptPath = scratch.appendingPathComponent("telegram.lua")
        try Self.telegramScript(dataPath: dataPath, threads: threads).write(to: scriptPath, atomically: true, encoding: .utf8)
        let started = Date()
        let row = try run(
            name: "POST /telegram/webhook/{id}: barcodes typed by \(chats.count) owners over \(telegramBots) bots (update stored durably)", url: base, script: scriptPath.path,
            server: server)
        let stored = Int(row.requestsPerSecond * Double(duration))
        let loadEnded = Date()
        let handledDuringLoad = try await handledCount(base, admin) - handledBefore
        var handledAt = Date()
        var handled = 0
        for _ in 0..<1200 {
            handled = try await handledCount(base, admin) - handledBefore
            handledAt = Date()
            if handled >= stored { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let seconds = handledAt.timeIntervalSince(started)
        let alone = Double(handled - handledDuringLoad) / max(handledAt.timeIntervalSince(loadEnded), 0.001)
        let line = "Telegram bots (\(telegramBots) in webhook mode, \(chats.count) owner chats, each update a typed barcode: the package added and the reply queued in one "
            + "transaction): \(handled) updates handled in \(String(format: "%.1f", seconds)) s from the first POST, \(String(format: "%.0f", Double(handled) / max(seconds, 0.001)))/s "
            + "(goal ≥ 1,000/s on SQLite): \(handledDuringLoad) while wrk was sending, then \(String(format: "%.0f", alone))/s with the CPU to itself; at 20 updates/s, update to its reply arriving at the Bot API p50 \(percentile(0.5)) ms, p99 \(percentile(0.99)) ms "
            + "(\(latencies.count) replies). Replies then leave at Telegram's pace (per chat 1/s with bursts of 3, per bot 30/s).\n"
        return (row, line)
    }

    func post(_ base: String, _ chat: BenchChat, id: Int64, text: String? = nil, callback: String? = nil) async throws {
        let from: [String: Any] = ["id": chat.user, "is_bot": false, "first_name": "Dona"]
        let place: [String: Any] = ["id": chat.user, "type": "private"]
        var update: [String: Any] = ["update_id": id]
        if let text { update["message"] = ["message_id": id, "from": from, "chat": place, "date": 0, "text": text] }
        if let callback { update["callback_query"] = ["id": "cq\(id)", "from": from, "data": callback, "message": ["message_id": 1, "chat": place, "date": 0]] }
        guard let url = URL(string: base + chat.path) else { return }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(chat.secret, forHTTPHeaderField: "X-Telegram-Bot-Api-Secret-Token")
        request.httpBody = try JSONSerialization.data(withJSONObject: update)
        let (_, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw BenchError("webhook POST refused: \(response)") }
    }

    func handledCount(_ base: String, _ admin: Client) async throws -> Int {
        let (_, data) = try await admin.request("GET", "/metrics")
        let text = String(decoding: data, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix("sessiond_channel_updates_total{result=\"handled\"}") }
        return Int(Double(line?.split(separator: " ").last ?? "0") ?? 0)
    }

    func waitHandled(_ base: String, _ admin: Client, atLeast count: Int) async throws {
        for _ in 0..<300 {
            if try await handledCount(base, admin) >= count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("updates were not handled")
    }

    /// wrk: each request a new update (its own update_id) from the next owner chat, with that bot's secret.
    static func telegramScript(dataPath: String, threads: Int) -> String {
        """
        local counter = 0
        function setup(thread)
          thread:set("id", counter)
          counter = counter + 1
        end
        function init(args)
          paths = {}
          secrets = {}
          users = {}
          for line in io.lines("\(dataPath)") do
            local a = string.find(line, "\\t")
            local b = string.find(line, "\\t", a + 1)
            table.insert(paths, string.sub(line, 1, a - 1))
            table.insert(secrets, string.sub(line, a + 1, b - 1))
            table.insert(users, string.sub(line, b + 1))
          end
          index = id % #paths + 1
          serial = 0
          wrk.method = "POST"
        end
        function request()
          serial = serial + 1
          local update = 10000000 + serial * \(threads) + id
          local i = index
          index = index + 1
          if index > #paths then index = 1 end
          local body = '{"update_id":' .. update .. ',"message":{"message_id":' .. update .. ',"from":{"id":' .. users[i] .. ',"is_bot":false,"first_name":"Dona"},"chat":{"id":' .. users[i] .. ',"type":"private"},"date":0,"text":"PKG' .. update .. '"}}'
          return wrk.format(nil, paths[i], {["Content-Type"] = "application/json", ["X-Telegram-Bot-Api-Secret-Token"] = secrets[i]}, body)
        end
        """
    }
}
