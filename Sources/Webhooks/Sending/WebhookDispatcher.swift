import Kernel
import Logging
import ServiceLifecycle
import Synchronization

/// The fan-out: reads the event log after the dispatch cursor and writes one message per
/// (endpoint, event) the endpoint receives, moving the cursor in the same transaction, so an
/// event committed is an event queued, across crashes. Servers on one PostgreSQL race for the
/// cursor's move (a guarded update); the loser reads again from where the winner left it. Woken
/// by this server's commits (the event feed), and every `pollInterval` for other servers' ones.
/// It also prunes the delivery log past its retention, once an hour.
public final class WebhookDispatcher: Service, Sendable {
    let service: WebhookService
    let bell = Doorbell()
    let workers: Doorbell

    init(service: WebhookService, workers: Doorbell) {
        self.service = service
        self.workers = workers
    }

    /// The enabled endpoints as of `version`, read again only when it changed.
    private let cache = Mutex<(version: Int64, endpoints: [WebhookEndpoint])?>(nil)

    func enabledEndpoints(version: Int64) async throws -> [WebhookEndpoint] {
        if let cached = cache.withLock({ $0 }), cached.version == version { return cached.endpoints }
        let endpoints = try await service.store.enabledEndpoints()
        cache.withLock { $0 = (version, endpoints) }
        return endpoints
    }

    /// Something was committed: read the log now.
    public func wake() { bell.ring() }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            try await self.service.waitForTables()
            var lastPurge = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled {
                do {
                    if try await self.dispatchOnce() > 0 { continue }
                    if ContinuousClock.now - lastPurge >= .seconds(3600) {
                        lastPurge = ContinuousClock.now
                        let now = self.service.clock.now()
                        try await self.service.store.purge(before: Timestamp(milliseconds: now.milliseconds - self.service.configuration.logRetentionSeconds * 1000))
                    }
                } catch is CancellationError {
                    return
                } catch {
                    self.service.logger.error("webhook fan-out failed; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
                await self.bell.wait(for: self.service.configuration.pollInterval)
            }
        }
    }

    /// Queues the messages of up to 1,000 events; returns how many events it read (0: caught up).
    func dispatchOnce() async throws -> Int {
        let store = service.store
        let (cursor, version) = try await store.dispatchState()
        let endpoints = try await enabledEndpoints(version: version)
        // No endpoint, no work: the log is not read and nothing is written. Events made before
        // every enabled endpoint existed are skipped without being read.
        guard let floor = endpoints.map(\.startAfter).min() else { return 0 }
        let events = try await store.events.read(store.storage, after: max(cursor, floor), limit: 1000)
        guard let last = events.last else { return 0 }
        var messages: [(endpointID: String, event: Event)] = []
        for event in events {
            let subject = WebhookService.subject(event)
            for endpoint in endpoints where endpoint.wants(event, about: subject) {
                messages.append((endpoint.id, event))
            }
        }
        do {
            try await store.fanOut(messages, from: cursor, to: last.id, endpointsVersion: version, now: service.clock.now())
        } catch StorageError.conflict {
            return events.count  // another server moved the cursor, or an endpoint changed: read again
        }
        if !messages.isEmpty { workers.ring() }
        return events.count
    }
}

/// The sending side of one server: the fan-out, `WEBHOOK_WORKERS` workers, and the HTTP client
/// they share (shut down after the workers stop).
public struct WebhookDelivery: Sendable {
    public let dispatcher: WebhookDispatcher
    public let services: [any Service]

    public init(service: WebhookService, name: String) {
        let bell = service.workers
        let sender = WebhookSender(guardrail: service.guardrail, timeoutSeconds: service.configuration.timeoutSeconds, bodyLimit: service.configuration.responseBodyLimit)
        dispatcher = WebhookDispatcher(service: service, workers: bell)
        let workers: [any Service] = (0..<max(service.configuration.workers, 1)).map { index in
            WebhookWorker(service: service, sender: sender, bell: bell, name: "\(name)-\(index)", watchesSchedule: index == 0)
        }
        // A service group stops its services in reverse order: the workers first, then the
        // fan-out, and the HTTP clients last, once nothing sends.
        services = [SenderShutdown(sender: sender), dispatcher] + workers
    }
}

/// Closes the receivers' connections when the server stops (listed before the workers, so it
/// stops after them).
struct SenderShutdown: Service {
    let sender: WebhookSender

    func run() async throws {
        try? await gracefulShutdown()
        await sender.shutdown()
    }
}
