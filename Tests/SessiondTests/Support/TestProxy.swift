import Foundation
import Synchronization

/// `scripts/test-proxy.py` running on 127.0.0.1: an HTTP CONNECT proxy (optionally asking for
/// Basic credentials) or a SOCKS5 proxy, which says every connection it forwards.
final class TestProxy: Sendable {
    let port: Int
    private let process: Process
    private final class Tunnels: Sendable { let list = Mutex<[String]>([]) }
    private let tunnels = Tunnels()

    /// Where the proxy forwarded connections to (`host:port`).
    var forwarded: [String] { tunnels.list.withLock { $0 } }

    init(kind: String, credentials: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", ScanCorpus.repository.appendingPathComponent("scripts/test-proxy.py").path, "--kind", kind]
            + (credentials.map { ["--credentials", $0] } ?? [])
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // The first line is `PORT n`; later lines are read on a thread of their own. Raw read(2),
        // retried on EINTR (FileHandle.availableData traps on an interrupted read).
        let descriptor = output.fileHandleForReading.fileDescriptor
        @Sendable func readChunk() -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(descriptor, &buffer, buffer.count)
                if count > 0 { return Array(buffer.prefix(count)) }
                if count < 0 && errno == EINTR { continue }
                return nil
            }
        }
        // At most 10 s for the first line (a read that never returns would hang the whole run).
        let deadline = ContinuousClock.now + .seconds(10)
        var pending: [UInt8] = []
        while !pending.contains(UInt8(ascii: "\n")), ContinuousClock.now < deadline {
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 200) > 0 else { continue }
            guard let chunk = readChunk() else { break }
            pending += chunk
        }
        guard let newline = pending.firstIndex(of: UInt8(ascii: "\n")),
            case let first = String(decoding: pending[..<newline], as: UTF8.self), first.hasPrefix("PORT "), let port = Int(first.dropFirst(5))
        else {
            kill(process.processIdentifier, SIGKILL)
            throw ScanCorpus.CorpusError(detail: "the test proxy did not start: \(String(decoding: pending, as: UTF8.self))")
        }
        self.port = port
        let leftover = Array(pending[(newline + 1)...])
        let tunnels = self.tunnels
        Thread.detachNewThread {
            var rest = leftover
            while true {
                while let end = rest.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: rest[..<end], as: UTF8.self)
                    rest = Array(rest[(end + 1)...])
                    if line.hasPrefix("TUNNEL ") { tunnels.list.withLock { $0.append(String(line.dropFirst(7))) } }
                }
                guard let chunk = readChunk() else { return }
                rest += chunk
            }
        }
    }

    /// Kills it (SIGKILL: the test process's children may inherit SIGTERM blocked, and Python then
    /// ignores it). Its port closes as it dies; nothing waits for Foundation to notice the exit
    /// (`waitUntilExit` blocks a thread of the test run for as long as that takes).
    func stop() {
        kill(process.processIdentifier, SIGKILL)
    }
}
