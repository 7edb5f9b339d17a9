import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP receiver of webhooks on 127.0.0.1: records every delivery and answers as the test
/// says. It can be stopped (connections refused) and started again on the same port.
final class WebhookReceiver: Sendable {
    struct Delivery: Sendable {
        var id: String
        var timestamp: String
        var signature: String
        var body: String
        var path: String
        var receivedAt: Date
        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
        var type: String? { json?["type"] as? String }
    }

    struct Reply: Sendable {
        var status: HTTPResponse.Status = .ok
        var headers: HTTPFields = [:]
        var body: String = "ok"
        var delay: Duration = .zero
    }

    /// Decides the answer to a delivery; `attempt` counts deliveries of this webhook-id (1 = first).
    typealias Responder = @Sendable (_ delivery: Delivery, _ attempt: Int) -> Reply

    private struct State {
        var deliveries: [Delivery] = []
        var responder: Responder
        var port = 0
        var server: Task<Void, any Error>?
        var running: CheckedContinuation<Void, Never>?
    }
    private let state: Mutex<State>

    init(_ responder: @escaping Responder = { _, _ in Reply() }) {
        state = Mutex(State(responder: responder))
    }

    var port: Int { state.withLock { $0.port } }
    var url: String { "http://127.0.0.1:\(port)/hook" }
    var deliveries: [Delivery] { state.withLock { $0.deliveries } }

    func respond(_ responder: @escaping Responder) { state.withLock { $0.responder = responder } }

    /// Starts listening (on the port it had before, if it ran before).
    func start() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let port = state.withLock { state in
                state.running = continuation
                return state.port
            }
            let router = Router()
            router.post("**") { request, context -> Response in
                var request = request
                let body = try await request.collectBody(upTo: 1 << 20)
                let delivery = Delivery(
                    id: request.headers[HTTPField.Name("webhook-id")!] ?? "", timestamp: request.headers[HTTPField.Name("webhook-timestamp")!] ?? "",
                    signature: request.headers[HTTPField.Name("webhook-signature")!] ?? "", body: String(buffer: body), path: request.uri.path,
                    receivedAt: Date())
                let (responder, attempt) = self.state.withLock { state in
                    state.deliveries.append(delivery)
                    return (state.responder, state.deliveries.filter { $0.id == delivery.id }.count)
                }
                let reply = responder(delivery, attempt)
                if reply.delay > .zero { try await Task.sleep(for: reply.delay) }
                return Response(status: reply.status, headers: reply.headers, body: .init(byteBuffer: ByteBuffer(string: reply.body)))
            }
            var logger = Logger(label: "receiver")
            logger.logLevel = .critical
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "receiver"),
                onServerRunning: { channel in
                    let waiting = self.state.withLock { state in
                        state.port = channel.localAddress?.port ?? state.port
                        defer { state.running = nil }
                        return state.running
                    }
                    waiting?.resume()
                }, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
            let task = Task { try await group.run() }
            state.withLock { $0.server = task }
        }
    }

    /// Stops listening: deliveries now find the port closed.
    func stop() async {
        let task = state.withLock { state in
            defer { state.server = nil }
            return state.server
        }
        task?.cancel()
        _ = await task?.result
    }

    /// Waits until `condition` holds of the deliveries (polling), or fails after `seconds`.
    @discardableResult
    func wait(seconds: Double = 15, until condition: ([Delivery]) -> Bool) async throws -> [Delivery] {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let deliveries = self.deliveries
            if condition(deliveries) { return deliveries }
            if Date() > deadline { throw ReceiverTimeout(count: deliveries.count) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    struct ReceiverTimeout: Error, CustomStringConvertible {
        var count: Int
        var description: String { "the receiver did not see what the test waited for (it has \(count) deliveries)" }
    }
}

/// Runs `body` with a receiver listening; stops it after.
func withReceiver<T>(_ responder: @escaping WebhookReceiver.Responder = { _, _ in .init() }, _ body: (WebhookReceiver) async throws -> T) async throws -> T {
    let receiver = WebhookReceiver(responder)
    await receiver.start()
    do {
        let result = try await body(receiver)
        await receiver.stop()
        return result
    } catch {
        await receiver.stop()
        throw error
    }
}
