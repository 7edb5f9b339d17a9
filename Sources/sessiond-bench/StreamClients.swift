import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Many Server-Sent Events clients on one thread (`poll` over plain sockets to 127.0.0.1), for
/// the live-stream workload. Each client follows one URL; every event that arrives is timed
/// against its `created_at` (the change's time, taken before its commit), so the figure is the
/// whole way from a change to a screen.
final class StreamClients: @unchecked Sendable {
    private var sockets: [Int32] = []
    private var carry: [[UInt8]] = []
    private let lock = NSLock()
    private var latencies: [Int] = []
    private var events = 0
    private var running = true
    private var thread: Thread?

    init(port: Int, paths: [String], key: String) throws {
        for path in paths {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw BenchError("socket: \(errno)") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw BenchError("connect: \(errno)") }
            let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nAccept: text/event-stream\r\n\r\n"
            _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            sockets.append(fd)
            carry.append([])
        }
        let thread = Thread { [self] in loop() }
        thread.name = "bench-sse"
        self.thread = thread
        thread.start()
    }

    /// Forgets what arrived so far (the seeding's events).
    func reset() {
        lock.withLock {
            latencies.removeAll()
            events = 0
        }
    }

    func stop() {
        lock.withLock { running = false }
        for fd in sockets { close(fd) }
    }

    /// Events received and their latencies in milliseconds, sorted.
    var results: (events: Int, latencies: [Int]) { lock.withLock { (events, latencies.sorted()) } }

    private static let marker = Array(#""created_at":""#.utf8)

    private func loop() {
        var fds = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while lock.withLock({ running }) {
            let ready = poll(&fds, nfds_t(fds.count), 100)
            if ready <= 0 { continue }
            let now = Int(Date().timeIntervalSince1970 * 1000)
            var found: [Int] = []
            for index in fds.indices where fds[index].revents & Int16(POLLIN) != 0 {
                while true {
                    let count = buffer.withUnsafeMutableBytes { recv(fds[index].fd, $0.baseAddress, $0.count, 0) }
                    if count <= 0 { break }
                    carry[index] += buffer[0..<count]
                }
                found += Self.scan(&carry[index], now: now)
            }
            if !found.isEmpty {
                lock.withLock {
                    events += found.count
                    latencies += found
                }
            }
        }
    }

    /// Finds each `"created_at":"…Z"` in the bytes received (one per event), and keeps what could
    /// be the start of one not yet complete.
    static func scan(_ bytes: inout [UInt8], now: Int) -> [Int] {
        var results: [Int] = []
        var index = 0
        var consumed = 0
        while index + marker.count + 24 <= bytes.count {
            if bytes[index] == marker[0], Array(bytes[index..<(index + marker.count)]) == marker {
                let start = index + marker.count
                if let millis = Self.millis(bytes[start..<(start + 24)]) { results.append(now - millis) }
                index = start + 24
                consumed = index
            } else {
                index += 1
            }
        }
        // Keep the tail that might hold a marker cut in two.
        let keep = max(consumed, bytes.count - (marker.count + 24))
        if keep > 0 { bytes.removeFirst(min(keep, bytes.count)) }
        return results
    }

    /// `2026-11-26T03:41:40.446Z` → Unix milliseconds.
    static func millis(_ text: ArraySlice<UInt8>) -> Int? {
        let digits = Array(text)
        func number(_ from: Int, _ count: Int) -> Int {
            var value = 0
            for offset in 0..<count { value = value * 10 + Int(digits[from + offset]) - 48 }
            return value
        }
        guard digits.count == 24, digits[23] == UInt8(ascii: "Z") else { return nil }
        // Days since the epoch by the civil-from-days algorithm (no Calendar on the hot path).
        let y = number(0, 4) - (number(5, 2) <= 2 ? 1 : 0)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = number(5, 2)
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + number(8, 2) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return ((days * 24 + number(11, 2)) * 60 + number(14, 2)) * 60_000 + number(17, 2) * 1000 + number(20, 3)
    }
}
