import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real Server-Sent Events client for tests: a TCP socket to 127.0.0.1, an HTTP/1.1 GET, and a
/// thread that reads the chunked body as it arrives and parses it as the EventSource standard does
/// (`id:`, `event:`, `data:` lines, a blank line ends a message, `:` lines are comments).
final class SSEClient: @unchecked Sendable {
    struct Message: Equatable, Sendable {
        var id: String?
        var event: String?
        var data: String
    }

    private let socket: Int32
    private let lock = NSLock()
    private var received: [Message] = []
    private var commentLines: [String] = []
    private var retryLines: [String] = []
    private var head: (status: Int, headers: [String: String])?
    private var ended = false
    /// Every message's arrival time, for latency figures.
    private var arrivals: [ContinuousClock.Instant] = []

    init(port: Int, path: String, headers: [String: String] = [:]) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(socket)
            throw POSIXError(.ECONNREFUSED)
        }
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, 0) }
        let thread = Thread { [self] in readLoop() }
        thread.start()
    }

    func close() {
        Glibc.shutdown(socket, Int32(SHUT_RDWR))
    }

    deinit { Glibc.close(socket) }

    var messages: [Message] { lock.withLock { received } }
    var comments: [String] { lock.withLock { commentLines } }
    var retries: [String] { lock.withLock { retryLines } }
    var status: Int? { lock.withLock { head?.status } }
    var hasEnded: Bool { lock.withLock { ended } }
    func header(_ name: String) -> String? { lock.withLock { head?.headers[name.lowercased()] } }
    func arrival(of index: Int) -> ContinuousClock.Instant? { lock.withLock { arrivals.indices.contains(index) ? arrivals[index] : nil } }

    /// Waits until `condition` holds for what was received, or fails after `timeout`.
    @discardableResult
    func wait(
        timeout: Duration = .seconds(10), until condition: @escaping ([Message]) -> Bool
    ) async throws -> [Message] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let now = messages
            if condition(now) { return now }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw SSETimeout(received: messages.count)
    }

    func waitForHead(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if status != nil { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw SSETimeout(received: 0)
    }

    struct SSETimeout: Error { var received: Int }

    // MARK: reading

    private func readLoop() {
        var raw: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headParsed = false
        var chunked = false
        var body: [UInt8] = []  // decoded body bytes not yet parsed as lines
        var message = Message(id: nil, event: nil, data: "")
        var hasData = false
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            raw += buffer[0..<count]
            if !headParsed {
                guard let end = Self.find([13, 10, 13, 10], in: raw) else { continue }
                let text = String(decoding: raw[0..<end], as: UTF8.self)
                var lines = text.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                var headers: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                chunked = headers["transfer-encoding"]?.lowercased() == "chunked"
                lock.withLock { head = (statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0, headers) }
                raw.removeFirst(end + 4)
                headParsed = true
            }
            if chunked {
                while let lineEnd = Self.find([13, 10], in: raw) {
                    let sizeText = String(decoding: raw[0..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                    guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { break }
                    if size == 0 {
                        // The last chunk: the response (the stream) has ended, whether or not the connection stays open.
                        raw.removeAll()
                        lock.withLock { ended = true }
                        break
                    }
                    guard raw.count >= lineEnd + 2 + size + 2 else { break }
                    body += raw[(lineEnd + 2)..<(lineEnd + 2 + size)]
                    raw.removeFirst(lineEnd + 2 + size + 2)
                }
            } else {
                body += raw
                raw.removeAll()
            }
            // SSE lines.
            while let newline = body.firstIndex(of: 10) {
                var line = String(decoding: body[0..<newline], as: UTF8.self)
                body.removeFirst(newline + 1)
                if line.hasSuffix("\r") { line.removeLast() }
                if line.isEmpty {
                    if hasData {
                        let done = message
                        lock.withLock {
                            received.append(done)
                            arrivals.append(.now)
                        }
                    }
                    message = Message(id: nil, event: nil, data: "")
                    hasData = false
                    continue
                }
                if line.hasPrefix(":") {
                    lock.withLock { commentLines.append(line) }
                    continue
                }
                let field: String
                var value: String
                if let colon = line.firstIndex(of: ":") {
                    field = String(line[..<colon])
                    value = String(line[line.index(after: colon)...])
                    if value.hasPrefix(" ") { value.removeFirst() }
                } else {
                    field = line
                    value = ""
                }
                switch field {
                case "id": message.id = value
                case "event": message.event = value
                case "data":
                    message.data += hasData ? "\n" + value : value
                    hasData = true
                case "retry": lock.withLock { retryLines.append(value) }
                default: break
                }
            }
        }
        lock.withLock { ended = true }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}
