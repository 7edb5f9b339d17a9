import Foundation
import HTTPTypes
import Hummingbird
import Kernel
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A local Telegram Bot API on 127.0.0.1 speaking its real JSON: `getMe`, long-polling
/// `getUpdates` with offsets, `setWebhook`/`deleteWebhook`/`getWebhookInfo`, `sendMessage`,
/// `sendPhoto` (multipart), `editMessageReplyMarkup`, `answerCallbackQuery`, `getFile` and file
/// downloads. Tests script people (texts, button presses, photos), inject failures (5xx, 429 with
/// `retry_after`, a stopped server) and read what the bot sent.
final class FakeTelegram: Sendable {
    struct Person: Sendable {
        var id: Int64
        var firstName: String
        var username: String?
    }

    struct Call: Sendable {
        var token: String
        var method: String
        var json: JSONValue
        var at: Date
    }

    struct Sent: Sendable {
        var token: String
        var method: String
        var chatID: Int64
        var messageID: Int64
        var text: String
        var buttons: [(text: String, data: String)]
        var photo: [UInt8]?
        var at: Date
    }

    struct Failure: Sendable {
        var method: String?
        var status: Int
        var description: String
        var retryAfter: Int?
        var remaining: Int
    }

    private struct State {
        var bots: [String: Person] = [:]
        var updates: [String: [(id: Int64, json: JSONValue)]] = [:]
        var nextUpdateID: Int64 = 1000
        var nextMessageID: Int64 = 1
        var calls: [Call] = []
        var sent: [Sent] = []
        var files: [String: [UInt8]] = [:]
        var webhooks: [String: (url: String, secret: String)] = [:]
        var failures: [String: [Failure]] = [:]
        /// `getUpdates` calls in flight per token, and how often two overlapped (Telegram's 409).
        var polling: [String: Int] = [:]
        var conflicts = 0
        var port = 0
        var server: (task: Task<Void, Never>, group: ServiceGroup)?
        var running: CheckedContinuation<Void, Never>?
        var stopping = false
    }
    private let state = Mutex(State())

    var port: Int { state.withLock { $0.port } }
    var url: String { "http://127.0.0.1:\(port)" }
    var calls: [Call] { state.withLock { $0.calls } }
    var sent: [Sent] { state.withLock { $0.sent } }
    /// How many `getUpdates` calls met another one of the same bot still in flight.
    var conflicts: Int { state.withLock { $0.conflicts } }

    /// A bot Telegram knows; its token.
    func addBot(id: Int64, username: String) -> String {
        let token = "\(id):AAE\(String(repeating: "x", count: 20))\(id)"
        state.withLock { $0.bots[token] = Person(id: id, firstName: username, username: username) }
        return token
    }

    func webhook(_ token: String) -> (url: String, secret: String)? { state.withLock { $0.webhooks[token] } }

    /// The next `count` calls (of `method`, or any) answer this failure.
    func fail(_ token: String, method: String? = nil, status: Int, description: String, retryAfter: Int? = nil, count: Int = 1) {
        state.withLock { $0.failures[token, default: []].append(Failure(method: method, status: status, description: description, retryAfter: retryAfter, remaining: count)) }
    }

    func clearFailures(_ token: String) { state.withLock { $0.failures[token] = nil } }

    // MARK: people

    @discardableResult
    func enqueue(_ token: String, _ make: (Int64, Int64) -> JSONValue) -> Int64 {
        state.withLock { state in
            state.nextUpdateID += 1
            state.nextMessageID += 1
            let id = state.nextUpdateID
            state.updates[token, default: []].append((id, make(id, state.nextMessageID)))
            return id
        }
    }

    /// Puts an update as it is (a repeated `update_id` included) in the queue.
    func enqueueRaw(_ token: String, id: Int64, json: JSONValue) {
        state.withLock { $0.updates[token, default: []].append((id, json)) }
    }

    static func user(_ person: Person) -> JSONValue {
        var user: [String: JSONValue] = ["id": .int(person.id), "is_bot": false, "first_name": .string(person.firstName)]
        if let username = person.username { user["username"] = .string(username) }
        return .object(user)
    }

    static func chat(_ person: Person) -> JSONValue { ["id": .int(person.id), "type": "private", "first_name": .string(person.firstName)] }

    @discardableResult
    func text(_ token: String, from person: Person, _ text: String) -> Int64 {
        enqueue(token) { id, messageID in
            [
                "update_id": .int(id),
                "message": ["message_id": .int(messageID), "from": Self.user(person), "chat": Self.chat(person), "date": .int(Int64(Date().timeIntervalSince1970)), "text": .string(text)],
            ]
        }
    }

    @discardableResult
    func press(_ token: String, from person: Person, data: String, on message: Int64 = 1) -> Int64 {
        enqueue(token) { id, _ in
            [
                "update_id": .int(id),
                "callback_query": [
                    "id": .string("cq\(id)"), "from": Self.user(person), "chat_instance": "1", "data": .string(data),
                    "message": ["message_id": .int(message), "chat": Self.chat(person), "date": .int(Int64(Date().timeIntervalSince1970)), "text": "…"],
                ],
            ]
        }
    }

    @discardableResult
    func photo(_ token: String, from person: Person, _ bytes: [UInt8], width: Int = 1280, height: Int = 960) -> Int64 {
        let fileID = "photo-\(UUID().uuidString)"
        state.withLock { $0.files[fileID] = bytes }
        return enqueue(token) { id, messageID in
            [
                "update_id": .int(id),
                "message": [
                    "message_id": .int(messageID), "from": Self.user(person), "chat": Self.chat(person), "date": .int(Int64(Date().timeIntervalSince1970)),
                    "photo": [
                        ["file_id": .string("thumb-\(fileID)"), "file_unique_id": "t", "width": 90, "height": 67, "file_size": 1000],
                        ["file_id": .string(fileID), "file_unique_id": "u", "width": .int(Int64(width)), "height": .int(Int64(height)), "file_size": .int(Int64(bytes.count))],
                    ],
                ],
            ]
        }
    }

    /// What delivers a webhook POST for the fake (the test's client, which reaches the server under
    /// test): the URL set by `setWebhook`, the secret header's value, the update; true for a 200.
    typealias WebhookPoster = @Sendable (_ url: String, _ secret: String, _ update: JSONValue) async throws -> Bool

    /// Webhook mode as Telegram does it: while a bot has a webhook set, its queued updates are
    /// POSTed one at a time, in order, each until it is answered 200 (then it is gone). Runs until
    /// the task it is called from is cancelled.
    func pushWebhooks(_ token: String, with post: WebhookPoster) async {
        while !Task.isCancelled {
            let next = state.withLock { state -> (String, String, Int64, JSONValue)? in
                guard let hook = state.webhooks[token], let first = state.updates[token]?.first else { return nil }
                return (hook.url, hook.secret, first.id, first.json)
            }
            guard let (url, secret, id, json) = next else {
                try? await Task.sleep(for: .milliseconds(10))
                continue
            }
            if (try? await post(url, secret, json)) == true {
                state.withLock { state in
                    if let index = state.updates[token]?.firstIndex(where: { $0.id == id }) { state.updates[token]?.remove(at: index) }
                }
            } else {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// The updates not yet confirmed by an offset (what Telegram still holds).
    func pendingUpdates(_ token: String) -> Int { state.withLock { $0.updates[token]?.count ?? 0 } }

    // MARK: waiting

    @discardableResult
    func waitForSent(seconds: Double = 20, _ what: String = "a message", until condition: ([Sent]) -> Bool) async throws -> [Sent] {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let sent = self.sent
            if condition(sent) { return sent }
            if Date() > deadline { throw Timeout(detail: "waited for \(what); the bot sent: " + sent.map { "[\($0.chatID)] \($0.text)" }.joined(separator: " | ")) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the message to `chat` containing `text` and returns it.
    func message(to chat: Int64, containing text: String, seconds: Double = 20) async throws -> Sent {
        let sent = try await waitForSent(seconds: seconds, "\"\(text)\" to \(chat)") { $0.contains { $0.chatID == chat && $0.text.contains(text) } }
        return sent.last { $0.chatID == chat && $0.text.contains(text) }!
    }

    func waitForCalls(seconds: Double = 20, _ what: String, until condition: ([Call]) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition(calls) {
            if Date() > deadline { throw Timeout(detail: "waited for \(what); calls: " + calls.suffix(20).map(\.method).joined(separator: ", ")) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    struct Timeout: Error, CustomStringConvertible {
        var detail: String
        var description: String { detail }
    }

    // MARK: the server

    func start() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let port = state.withLock { state in
                state.running = continuation
                state.stopping = false
                return state.port
            }
            let router = Router()
            router.post("/:bot/:method") { request, context -> Response in
                var request = request
                let body = try await request.collectBody(upTo: 20 << 20)
                let bot = try context.parameters.require("bot")
                let method = try context.parameters.require("method")
                guard bot.hasPrefix("bot") else { return Self.answer(status: 404, ["ok": false, "error_code": 404, "description": "Not Found"]) }
                let contentType = request.headers[.contentType] ?? ""
                return await self.call(String(bot.dropFirst(3)), method, body: Array(body.readableBytesView), contentType: contentType)
            }
            router.get("/file/:bot/**") { request, context -> Response in
                let path = context.parameters.getCatchAll().joined(separator: "/")
                let fileID = path.replacingOccurrences(of: "photos/", with: "")
                guard let bytes = self.state.withLock({ $0.files[fileID] }) else { return Response(status: .notFound) }
                return Response(status: .ok, headers: [.contentType: "image/jpeg"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            var logger = Logger(label: "fake-telegram")
            logger.logLevel = .critical
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "fake-telegram"),
                onServerRunning: { channel in
                    let waiting = self.state.withLock { state in
                        state.port = channel.localAddress?.port ?? state.port
                        defer { state.running = nil }
                        return state.running
                    }
                    waiting?.resume()
                }, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
            let task = Task {
                do { try await group.run() } catch {}
                // A server that could not start (its port not free again yet) must not leave start() waiting.
                self.state.withLock { state in
                    defer { state.running = nil }
                    return state.running
                }?.resume()
            }
            state.withLock { $0.server = (task, group) }
        }
    }

    /// Stops listening: calls now find the port closed (refused connections). A graceful stop
    /// (long polls end at once): cancelling the server's task while a connection was being
    /// accepted tripped a NIO assertion (an async writer deinitialised without `finish()`).
    func stop() async {
        let server = state.withLock { state in
            defer { state.server = nil }
            state.stopping = true
            return state.server
        }
        await server?.group.triggerGracefulShutdown()
        // Never wait for ever: after 5 s the server task is cancelled.
        guard let task = server?.task else { return }
        let timer = Task {
            try? await Task.sleep(for: .seconds(5))
            task.cancel()
        }
        _ = await task.result
        timer.cancel()
    }

    static func answer(status: Int = 200, _ json: JSONValue) -> Response {
        Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: json.canonicalText())))
    }

    static func ok(_ result: JSONValue) -> Response { answer(["ok": true, "result": result]) }

    func call(_ token: String, _ method: String, body: [UInt8], contentType: String) async -> Response {
        let json: JSONValue
        if contentType.hasPrefix("multipart/form-data") {
            json = Self.form(body, contentType: contentType)
        } else {
            json = (try? JSONDecoder().decode(JSONValue.self, from: Data(body))) ?? [:]
        }
        let (bot, failure) = state.withLock { state -> (Person?, Failure?) in
            state.calls.append(Call(token: token, method: method, json: json, at: Date()))
            guard var list = state.failures[token], let index = list.firstIndex(where: { $0.method == nil || $0.method == method }) else {
                return (state.bots[token], nil)
            }
            let failure = list[index]
            list[index].remaining -= 1
            if list[index].remaining <= 0 { list.remove(at: index) }
            state.failures[token] = list
            return (state.bots[token], failure)
        }
        if let failure {
            var answer: [String: JSONValue] = ["ok": false, "error_code": .int(Int64(failure.status)), "description": .string(failure.description)]
            if let retryAfter = failure.retryAfter { answer["parameters"] = ["retry_after": .int(Int64(retryAfter))] }
            return Self.answer(status: failure.status, .object(answer))
        }
        guard let bot else { return Self.answer(status: 401, ["ok": false, "error_code": 401, "description": "Unauthorized"]) }
        switch method {
        case "getMe":
            return Self.ok(["id": .int(bot.id), "is_bot": true, "first_name": .string(bot.firstName), "username": .string(bot.username ?? "")])
        case "getUpdates":
            if state.withLock({ $0.webhooks[token] != nil }) {
                return Self.answer(status: 409, ["ok": false, "error_code": 409, "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"])
            }
            // Telegram allows one long poll per bot: a second one at the same time ends with 409.
            let overlapping = state.withLock { state -> Bool in
                state.polling[token, default: 0] += 1
                if state.polling[token, default: 0] > 1 { state.conflicts += 1 }
                return state.polling[token, default: 0] > 1
            }
            defer { state.withLock { $0.polling[token, default: 1] -= 1 } }
            if overlapping {
                return Self.answer(status: 409, ["ok": false, "error_code": 409, "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"])
            }
            let offset = json["offset"]?.int ?? 0
            let timeout = Double(json["timeout"]?.int ?? 0)
            let deadline = Date().addingTimeInterval(min(timeout, 5))
            while true {
                let ready = state.withLock { state -> [JSONValue] in
                    state.updates[token] = (state.updates[token] ?? []).filter { $0.id >= offset }
                    return (state.updates[token] ?? []).map(\.json)
                }
                if !ready.isEmpty || Date() >= deadline || state.withLock({ $0.stopping }) { return Self.ok(.array(ready)) }
                try? await Task.sleep(for: .milliseconds(10))
                if Task.isCancelled { return Self.ok([]) }
            }
        case "setWebhook":
            state.withLock { $0.webhooks[token] = (json["url"]?.string ?? "", json["secret_token"]?.string ?? "") }
            return Self.ok(true)
        case "deleteWebhook":
            state.withLock { $0.webhooks[token] = nil }
            return Self.ok(true)
        case "getWebhookInfo":
            let hook = state.withLock { $0.webhooks[token] }
            return Self.ok(["url": .string(hook?.url ?? ""), "has_custom_certificate": false, "pending_update_count": 0])
        case "sendMessage", "sendPhoto":
            let chat = json["chat_id"]?.int ?? Int64(json["chat_id"]?.string ?? "") ?? 0
            let text = json["text"]?.string ?? json["caption"]?.string ?? ""
            var buttons: [(String, String)] = []
            for row in json["reply_markup"]?["inline_keyboard"]?.array ?? [] {
                for button in row.array { buttons.append((button["text"]?.string ?? "", button["callback_data"]?.string ?? "")) }
            }
            let photo = json["photo_bytes"]?.string.flatMap { Data(base64Encoded: $0) }.map { Array($0) }
            let messageID = state.withLock { state -> Int64 in
                state.nextMessageID += 1
                state.sent.append(Sent(token: token, method: method, chatID: chat, messageID: state.nextMessageID, text: text, buttons: buttons, photo: photo, at: Date()))
                return state.nextMessageID
            }
            return Self.ok(["message_id": .int(messageID), "chat": ["id": .int(chat), "type": "private"], "date": .int(Int64(Date().timeIntervalSince1970)), "text": .string(text)])
        case "editMessageReplyMarkup", "answerCallbackQuery":
            return Self.ok(true)
        case "getFile":
            let fileID = json["file_id"]?.string ?? ""
            guard state.withLock({ $0.files[fileID] != nil }) else { return Self.answer(status: 400, ["ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"]) }
            return Self.ok(["file_id": .string(fileID), "file_unique_id": "u", "file_path": .string("photos/\(fileID)")])
        default:
            return Self.answer(status: 404, ["ok": false, "error_code": 404, "description": "Not Found: method not found"])
        }
    }

    /// A `multipart/form-data` body's text fields, and a file field as `photo_bytes` (base64).
    static func form(_ body: [UInt8], contentType: String) -> JSONValue {
        guard let boundary = contentType.components(separatedBy: "boundary=").last else { return [:] }
        let data = Data(body)
        let separator = Data("--\(boundary)".utf8)
        var fields: [String: JSONValue] = [:]
        var ranges: [Range<Data.Index>] = []
        var search = data.startIndex..<data.endIndex
        while let found = data.range(of: separator, in: search) {
            ranges.append(found)
            search = found.upperBound..<data.endIndex
        }
        for (start, end) in zip(ranges, ranges.dropFirst()) {
            let part = data[start.upperBound..<end.lowerBound]
            guard let headerEnd = part.range(of: Data("\r\n\r\n".utf8)) else { continue }
            let headers = String(decoding: part[part.startIndex..<headerEnd.lowerBound], as: UTF8.self)
            var content = part[headerEnd.upperBound..<part.endIndex]
            if content.suffix(2) == Data("\r\n".utf8) { content = content.dropLast(2) }
            guard let nameStart = headers.range(of: "name=\"") else { continue }
            let name = String(headers[nameStart.upperBound...].prefix { $0 != "\"" })
            if headers.contains("filename=") {
                fields["photo_bytes"] = .string(Data(content).base64EncodedString())
            } else {
                let text = String(decoding: content, as: UTF8.self)
                fields[name] = Int64(text).map(JSONValue.int) ?? .string(text)
            }
        }
        return .object(fields)
    }
}

/// Runs `body` with a fake Telegram listening; stops it after.
func withFakeTelegram<T>(_ body: (FakeTelegram) async throws -> T) async throws -> T {
    let fake = FakeTelegram()
    await fake.start()
    do {
        let result = try await body(fake)
        await fake.stop()
        return result
    } catch {
        await fake.stop()
        throw error
    }
}
