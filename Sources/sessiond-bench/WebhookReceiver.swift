import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The benchmark's webhook receiver on 127.0.0.1: answers 204 at once and records, per delivery,
/// when it arrived and how long after the event's `created_at` (stamped before the commit).
final class BenchReceiver: Sendable {
    private struct State {
        var arrivals: [Double] = []
        var latencies: [Double] = []
        var port = 0
    }
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var url: String { "http://127.0.0.1:\(state.withLock { $0.port })/hook" }

    func start() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let router = Router()
            router.post("/hook") { request, _ -> Response in
                var request = request
                let body = try await request.collectBody(upTo: 1 << 20)
                let now = Date().timeIntervalSince1970
                let created = Self.createdAt(String(buffer: body))
                self.state.withLock { state in
                    state.arrivals.append(now)
                    if let created { state.latencies.append((now - created) * 1000) }
                }
                return Response(status: .noContent)
            }
            var logger = Logger(label: "bench-receiver")
            logger.logLevel = .critical
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bench-receiver"),
                onServerRunning: { channel in
                    self.state.withLock { $0.port = channel.localAddress?.port ?? 0 }
                    continuation.resume()
                }, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
            task.withLock { $0 = Task { try await group.run() } }
        }
    }

    func stop() {
        task.withLock { $0?.cancel() }
    }

    func reset() { state.withLock { $0.arrivals = []; $0.latencies = [] } }

    var results: (arrivals: [Double], latencies: [Double]) { state.withLock { ($0.arrivals, $0.latencies.sorted()) } }

    /// `created_at` of the event JSON (`…"created_at":"2026-11-26T05:22:23.994Z"…`) as Unix seconds.
    static func createdAt(_ body: String) -> Double? {
        guard let range = body.range(of: "\"created_at\":\"") else { return nil }
        let text = body[range.upperBound...].prefix(24)
        let digits = text.unicodeScalars.filter { CharacterSet.decimalDigits.contains($0) }.map { Int($0.value) - 48 }
        guard digits.count == 17 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int { digits[from..<(from + count)].reduce(0) { $0 * 10 + $1 } }
        var components = DateComponents()
        components.year = number(0, 4)
        components.month = number(4, 2)
        components.day = number(6, 2)
        components.hour = number(8, 2)
        components.minute = number(10, 2)
        components.second = number(12, 2)
        components.timeZone = TimeZone(identifier: "UTC")
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { return nil }
        return date.timeIntervalSince1970 + Double(number(14, 3)) / 1000
    }
}
