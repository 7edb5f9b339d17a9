import AsyncHTTPClient
import Foundation
import Kernel
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// POSTs one signed event to a receiver, through the SSRF guard, and says what came back.
///
/// The host is resolved here and every address checked; the connection then goes to the checked
/// address (AsyncHTTPClient's `dnsOverride`, with TLS still verifying the host name), so a second
/// lookup can never swap in an inside address. One client per (host, address) pools its
/// connections; redirects are never followed (a 3xx is a failure).
final class WebhookSender: Sendable {
    struct Answer: Sendable {
        var status: Int?
        var retryAfter: String?
        var deliveryHeader: String?
        var body: String?
        var error: String?
        var latencyMilliseconds: Int64
    }

    let guardrail: ReceiverGuard
    let timeoutSeconds: Int64
    let bodyLimit: Int
    private let state = Mutex(State())

    struct State {
        /// A client per (host, checked address), with the requests it is sending now and when it
        /// was last used: at most `clientsKept`, those idle longest shut down first.
        var clients: [String: (client: HTTPClient, inFlight: Int, used: ContinuousClock.Instant)] = [:]
        /// Resolved and checked addresses, kept 10 s (at most `resolvedKept`).
        var resolved: [String: (address: IPAddress, until: ContinuousClock.Instant)] = [:]
        var closed = false
    }

    /// The most HTTP clients kept (one per receiver host), and resolved hosts remembered.
    static let clientsKept = 64
    static let resolvedKept = 1_024

    init(guardrail: ReceiverGuard, timeoutSeconds: Int64, bodyLimit: Int) {
        self.guardrail = guardrail
        self.timeoutSeconds = timeoutSeconds
        self.bodyLimit = bodyLimit
    }

    func send(url: String, id: String, body: ByteBuffer, signature: String, timestamp: Int64) async -> Answer {
        let started = ContinuousClock.now
        func elapsed() -> Int64 {
            let duration = ContinuousClock.now - started
            return duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        }
        guard let parsed = URL(string: url), let host = parsed.host else {
            return Answer(error: "not a URL: \(url)", latencyMilliseconds: 0)
        }
        let address: IPAddress
        do {
            address = try await checkedAddress(host)
        } catch {
            return Answer(error: error.description, latencyMilliseconds: elapsed())
        }
        guard let client = client(host: host, address: address) else { return Answer(error: "the server is shutting down", latencyMilliseconds: 0) }
        defer { finished(host: host, address: address) }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "sessiond-webhooks/1")
        request.headers.add(name: "webhook-id", value: id)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: signature)
        request.body = .bytes(body)
        do {
            let response = try await client.execute(request, timeout: .seconds(timeoutSeconds))
            var collected = ByteBuffer()
            for try await chunk in response.body {
                var chunk = chunk
                if collected.readableBytes < bodyLimit {
                    let take = min(chunk.readableBytes, bodyLimit - collected.readableBytes)
                    collected.writeImmutableBuffer(chunk.readSlice(length: take)!)
                }
            }
            let text = collected.readableBytes == 0 ? nil : String(decoding: collected.readableBytesView, as: UTF8.self)
            return Answer(
                status: Int(response.status.code), retryAfter: response.headers.first(name: "retry-after"),
                deliveryHeader: response.headers.first(name: "webhook-delivery"), body: text, latencyMilliseconds: elapsed())
        } catch {
            return Answer(error: Self.describe(error), latencyMilliseconds: elapsed())
        }
    }

    func checkedAddress(_ host: String) async throws(ReceiverGuard.Refusal) -> IPAddress {
        let now = ContinuousClock.now
        if let cached = state.withLock({ $0.resolved[host] }), cached.until > now { return cached.address }
        let address = try await guardrail.check(host: host)
        state.withLock { state in
            if state.resolved.count >= Self.resolvedKept {
                state.resolved = state.resolved.filter { $0.value.until > now }
                if state.resolved.count >= Self.resolvedKept { state.resolved.removeAll() }
            }
            state.resolved[host] = (address, now + .seconds(10))
        }
        return address
    }

    /// The client for `host` at `address`, counted as sending one request more until `finished`.
    func client(host: String, address: IPAddress) -> HTTPClient? {
        let key = host + "|" + address.description
        var retired: [HTTPClient] = []
        defer {
            // Clients no request uses, beyond the ones kept: shut down off the caller's path.
            if !retired.isEmpty { Task { [retired] in for client in retired { try? await client.shutdown() } } }
        }
        return state.withLock { state -> HTTPClient? in
            if state.closed { return nil }
            if let kept = state.clients[key] {
                state.clients[key] = (kept.client, kept.inFlight + 1, .now)
                return kept.client
            }
            if state.clients.count >= Self.clientsKept {
                let idle = state.clients.filter { $0.value.inFlight == 0 }.sorted { $0.value.used < $1.value.used }
                for (name, entry) in idle.prefix(state.clients.count - Self.clientsKept + 1) {
                    state.clients[name] = nil
                    retired.append(entry.client)
                }
            }
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(min(timeoutSeconds, 10)), read: .seconds(timeoutSeconds)),
                connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64),
                decompression: .disabled)
            configuration.dnsOverride = [host: address.description]
            // A refused connection is this attempt's failure at once (the client would otherwise
            // retry connecting until the attempt's deadline, holding the worker for `timeout`).
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            state.clients[key] = (client, 1, .now)
            return client
        }
    }

    func finished(host: String, address: IPAddress) {
        let key = host + "|" + address.description
        state.withLock { state in
            if let kept = state.clients[key] { state.clients[key] = (kept.client, max(kept.inFlight - 1, 0), .now) }
        }
    }

    /// How many clients are kept now.
    var clientCount: Int { state.withLock { $0.clients.count } }

    func shutdown() async {
        let clients = state.withLock { state in
            state.closed = true
            defer { state.clients = [:] }
            return state.clients.values.map(\.client)
        }
        for client in clients { try? await client.shutdown() }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "timed out"
            default: return "\(error)"
            }
        }
        let text = "\(error)"
        if text.lowercased().contains("connection refused") || text.contains("ECONNREFUSED") { return "connection refused" }
        return text
    }
}
