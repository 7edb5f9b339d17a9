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
        // The first line is `PORT n`; later lines are read on a thread of their own.
        let handle = output.fileHandleForReading
        var buffer = Data()
        while !buffer.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer += chunk
        }
        let lines = String(decoding: buffer, as: UTF8.self).split(separator: "\n")
        guard let first = lines.first, first.hasPrefix("PORT "), let port = Int(first.dropFirst(5)) else {
            process.terminate()
            throw ScanCorpus.CorpusError(detail: "the test proxy did not start: \(String(decoding: buffer, as: UTF8.self))")
        }
        self.port = port
        let tunnels = self.tunnels
        tunnels.list.withLock { $0 += lines.dropFirst().filter { $0.hasPrefix("TUNNEL ") }.map { String($0.dropFirst(7)) } }
        Thread.detachNewThread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                pending += chunk
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending = Data(pending[pending.index(after: newline)...])
                    if line.hasPrefix("TUNNEL ") { tunnels.list.withLock { $0.append(String(line.dropFirst(7))) } }
                }
            }
        }
    }

    /// Kills it (SIGKILL: the test process's children may inherit SIGTERM blocked, and Python then ignores it).
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
