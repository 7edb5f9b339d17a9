import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// What a failed Bot API call was: Telegram's own answer, or no answer at all.
public enum TelegramFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Telegram answered `ok: false` (or a non-JSON error page) with this HTTP status.
    case api(status: Int, description: String, retryAfter: Int?)
    /// No answer: refused or reset connections, timeouts, a failing proxy.
    case transport(String)

    public var description: String {
        switch self {
        case .api(_, let description, _): description
        case .transport(let text): text
        }
    }

    /// Telegram refused the token (401/404): retried only on `connect` or a new token.
    public var refusesToken: Bool {
        if case .api(let status, _, _) = self { return status == 401 || status == 404 }
        return false
    }

    /// Worth trying again later: 5xx, 409, 429 and transport errors. Other 4xx are final.
    public var isTransient: Bool {
        switch self {
        case .transport: true
        case .api(let status, _, _): status >= 500 || status == 429 || status == 409
        }
    }

    public var retryAfter: Int? {
        if case .api(429, _, let seconds) = self { return seconds ?? 1 }
        return nil
    }

    /// An edit that changes nothing or a callback query answered already: done, not failed.
    public var countsAsDone: Bool {
        guard case .api(400, let description, _) = self else { return false }
        let text = description.lowercased()
        return text.contains("message is not modified") || text.contains("query is too old") || text.contains("query id is invalid")
    }
}

/// One bot's Bot API: `{base}/bot<token>/<method>` with a JSON body, files from
/// `{base}/file/bot<token>/<path>`. The token is only ever in the URL; failures never repeat it.
public struct TelegramClient: Sendable {
    let http: HTTPClient
    let base: String
    let token: String

    public init(http: HTTPClient, base: String, token: String) {
        self.http = http
        self.base = Channel.trimmedBase(base)
        self.token = token
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }()

    public func call<Result: Decodable & Sendable>(
        _ method: String, _ parameters: some Encodable, as type: Result.Type, timeout: TimeAmount = .seconds(15)
    ) async throws(TelegramFailure) -> Result {
        let body: Data
        do { body = try Self.encoder.encode(parameters) } catch { throw .transport("could not encode \(method): \(error)") }
        var request = HTTPClientRequest(url: "\(base)/bot\(token)/\(method)")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: body))
        return try await execute(request, method: method, timeout: timeout)
    }

    /// `sendPhoto` with the picture uploaded as `multipart/form-data`.
    public func sendPhoto(chatID: Int64, png: [UInt8], caption: String) async throws(TelegramFailure) {
        let boundary = "sessiond-" + UUID().uuidString
        var body = ByteBuffer()
        func field(_ name: String, _ value: String) {
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n")
        }
        field("chat_id", String(chatID))
        field("caption", caption)
        body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"convite.png\"\r\nContent-Type: image/png\r\n\r\n")
        body.writeBytes(png)
        body.writeString("\r\n--\(boundary)--\r\n")
        var request = HTTPClientRequest(url: "\(base)/bot\(token)/sendPhoto")
        request.method = .POST
        request.headers.add(name: "content-type", value: "multipart/form-data; boundary=\(boundary)")
        request.body = .bytes(body)
        _ = try await execute(request, method: "sendPhoto", timeout: .seconds(30), as: BotAPI.Ignored.self)
    }

    /// A file's bytes (`getFile` first gives its path), at most `limit` bytes.
    public func download(fileID: String, limit: Int) async throws(TelegramFailure) -> ByteBuffer {
        let file = try await call("getFile", BotAPI.GetFile(fileID: fileID), as: BotAPI.File.self)
        guard let path = file.filePath else { throw .api(status: 400, description: "Bad Request: file has no path", retryAfter: nil) }
        let request = HTTPClientRequest(url: "\(base)/file/bot\(token)/\(path)")
        do {
            let response = try await http.execute(request, timeout: .seconds(30))
            guard response.status == .ok else { throw TelegramFailure.api(status: Int(response.status.code), description: "file download failed", retryAfter: nil) }
            return try await response.body.collect(upTo: limit)
        } catch let failure as TelegramFailure {
            throw failure
        } catch {
            throw .transport(clean("\(error)"))
        }
    }

    private func execute<Result: Decodable & Sendable>(
        _ request: HTTPClientRequest, method: String, timeout: TimeAmount, as type: Result.Type = Result.self
    ) async throws(TelegramFailure) -> Result {
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            bytes = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw .transport(clean("\(method): \(error)"))
        }
        let status = Int(response.status.code)
        guard let decoded = try? JSONDecoder().decode(BotAPI.Response<Result>.self, from: Data(bytes.readableBytesView)) else {
            if (200..<300).contains(status) { throw .transport("\(method): an answer that is not the Bot API's JSON") }
            throw .api(status: status, description: "HTTP \(status)", retryAfter: nil)
        }
        guard decoded.ok, let result = decoded.result else {
            let description = clean(decoded.description ?? "HTTP \(status)")
            throw .api(status: decoded.errorCode ?? status, description: description, retryAfter: decoded.parameters?.retryAfter)
        }
        return result
    }

    /// Error text never carries the token (an HTTP library may quote the URL).
    func clean(_ text: String) -> String {
        text.replacingOccurrences(of: token, with: "<token>")
    }
}
