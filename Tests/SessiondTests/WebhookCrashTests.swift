import AsyncHTTPClient
import Foundation
import Kernel
import NIOCore
import NIOHTTP1
import Testing

/// The real `sessiond` executable, killed with SIGKILL in the middle of a burst of deliveries.
@Suite("Webhooks: crashes")
struct WebhookCrashTests {
    /// A running `sessiond serve` on a free port.
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int

        init(database: DatabaseLocation, port: Int, environment extra: [String: String] = [:]) throws {
            self.port = port
            process.executableURL = SessiondBinary.url
            process.arguments = ["serve", "--port", String(port), "--database", SessiondBinary.databaseArgument(database)]
            var environment = ProcessInfo.processInfo.environment
            environment["ADMIN_API_KEY"] = TestAuth.adminKey
            environment["WEBHOOK_ALLOW_PRIVATE"] = "true"
            environment["WEBHOOK_TIMEOUT"] = "2"
            environment["WEBHOOK_RETRY_SCHEDULE"] = "1,1,1,1,1,1,1,1,1,1"
            environment["LOG_LEVEL"] = "critical"
            environment["RATE_LIMIT_PER_SECOND"] = "0"
            environment["DATABASE_POOL_SIZE"] = "4"
            environment.merge(extra) { _, new in new }
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        var base: String { "http://127.0.0.1:\(port)" }

        func kill() {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
    }

    static func freePort() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                guard bind(socket, raw, length) == 0, getsockname(socket, raw, &length) == 0 else { throw POSIXError(.EADDRINUSE) }
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func call(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, json: String? = nil) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(TestAuth.adminKey)")
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 24)
        return (Int(response.status.code), String(buffer: body))
    }

    static func waitReady(_ client: HTTPClient, _ server: Server) async throws {
        for _ in 0..<300 {
            if let (status, _) = try? await call(client, .GET, server.base + "/ready"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw POSIXError(.ETIMEDOUT)
    }

    @Test("SIGKILL in the middle of a burst loses no event: after a restart each arrives at least once, repeats only under the same webhook-id")
    func killMidBurst() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: SessiondBinary.url.path), "build the executable first: swift build --build-tests")
        let location = try await TestDatabase.make()
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        defer { _ = client.shutdown() }
        try await withReceiver({ _, _ in .init(delay: .milliseconds(10)) }) { receiver in
            let port = try Self.freePort()
            var server = try Server(database: location, port: port)
            defer { server.stop() }
            try await Self.waitReady(client, server)
            let created = try await Self.call(
                client, .POST, server.base + "/api/webhooks", json: #"{"url":"\#(receiver.url)","events":["delivery.session.created"]}"#)
            #expect(created.status == 201)

            // The burst: 300 sessions, 8 at a time; killed once deliveries are under way.
            let acknowledged = Acknowledged()
            let base = server.base
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        for index in stride(from: lane, to: 300, by: 8) {
                            guard let (status, body) = try? await Self.call(client, .POST, base + "/api/sessions/create", json: #"{"user_id":"u\#(index % 5)"}"#) else { return }
                            if status == 201, let id = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["session_id"] as? String {
                                acknowledged.add(id)
                            }
                        }
                    }
                }
                _ = try? await receiver.wait(seconds: 30) { $0.count >= 40 }
                server.kill()
                try await group.waitForAll()
            }
            let before = receiver.deliveries.count
            // Killed mid-burst: deliveries under way and creates cut off.
            #expect(before >= 40 && acknowledged.count > 0 && acknowledged.count < 300)

            server = try Server(database: location, port: port)
            try await Self.waitReady(client, server)
            var events: [[String: Any]] = []
            var cursor = ""
            while true {
                let page = try await Self.call(client, .GET, server.base + "/api/events?types=delivery.session.created&limit=1000" + (cursor.isEmpty ? "" : "&after=\(cursor)"))
                let object = try #require(try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any])
                let items = object["items"] as? [[String: Any]] ?? []
                events += items
                cursor = object["next_cursor"] as? String ?? cursor
                if items.count < 1000 { break }
            }
            let sessions = Set(events.compactMap { $0["session_id"] as? String })
            #expect(acknowledged.ids.isSubset(of: sessions), "an acknowledged session has no event")
            let eventIDs = Set(events.compactMap { $0["event_id"] as? String })
            let deliveries = try await receiver.wait(seconds: 60) { Set($0.map(\.id)).isSuperset(of: eventIDs) }
            // Every delivery is of a committed event; a repeat carries the same webhook-id and body.
            #expect(Set(deliveries.map(\.id)) == eventIDs)
            let bodies = Dictionary(grouping: deliveries, by: \.id).mapValues { Set($0.map(\.body)) }
            #expect(bodies.values.allSatisfy { $0.count == 1 })
        }
        await TestDatabase.drop(location)
    }

    final class Acknowledged: @unchecked Sendable {
        private let lock = NSLock()
        private var set: Set<String> = []
        func add(_ id: String) { lock.lock(); set.insert(id); lock.unlock() }
        var ids: Set<String> { lock.lock(); defer { lock.unlock() }; return set }
        var count: Int { ids.count }
    }
}
