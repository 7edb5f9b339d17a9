import CoreMetrics
import Crypto
import Foundation
import Kernel
import Logging
import NIOCore
import ServiceLifecycle

/// One sending worker (`WEBHOOK_WORKERS` of them per server): leases due messages, sends them at
/// once, and records every attempt with what it means — the message's next attempt or its end,
/// the endpoint's circuit and health — in one transaction. A lease that runs out (a crash, a
/// kill) makes the message due again, so every event is sent at least once, under the same
/// `webhook-id`.
public final class WebhookWorker: Service, Sendable {
    let service: WebhookService
    let sender: WebhookSender
    let bell: Doorbell
    let name: String
    /// The worker that looks up when the next message is due while all are idle.
    let watchesSchedule: Bool

    static let attemptsSucceeded = Counter(label: "sessiond_webhook_attempts_total", dimensions: [("result", "succeeded")])
    static let attemptsFailed = Counter(label: "sessiond_webhook_attempts_total", dimensions: [("result", "failed")])
    static let latency = Recorder(label: "sessiond_webhook_attempt_duration_seconds", aggregate: true)

    init(service: WebhookService, sender: WebhookSender, bell: Doorbell, name: String, watchesSchedule: Bool) {
        self.service = service
        self.sender = sender
        self.bell = bell
        self.name = name
        self.watchesSchedule = watchesSchedule
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            try await self.service.waitForTables()
            while !Task.isCancelled {
                do {
                    let sent = try await self.workOnce()
                    if sent > 0 { continue }
                    // One worker keeps an eye on the next due time; the others wait to be rung.
                    await self.bell.wait(for: self.watchesSchedule ? try await self.idleWait() : .seconds(5))
                } catch is CancellationError {
                    return
                } catch {
                    self.service.logger.error("webhook worker failed; retrying", metadata: ["worker": .string(self.name), "error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// Until the next message is due (a retry, a lease that runs out), at most a second; 5 s when
    /// nothing is pending at all (new messages ring the bell; another server's are sent by its own
    /// workers, and these look again within 5 s).
    func idleWait() async throws -> Duration {
        guard let due = try await service.store.nextDue() else { return .seconds(5) }
        let wait = due.milliseconds - service.clock.now().milliseconds
        return .milliseconds(min(max(wait, 5), 1000))
    }

    /// Leases and sends one batch; returns how many messages it held.
    func workOnce() async throws -> Int {
        let configuration = service.configuration
        let policy = configuration.policy
        let now = service.clock.now()
        let lease = Timestamp(milliseconds: now.milliseconds + (configuration.timeoutSeconds + 5) * 1000)
        let claimed = try await service.store.claim(now: now, leaseUntil: lease, limit: configuration.batch)
        guard !claimed.isEmpty else { return 0 }
        // A full batch: there may be more; another worker takes the next one meanwhile.
        if claimed.count == configuration.batch { bell.ring() }

        let endpoints = Dictionary(uniqueKeysWithValues: try await service.store.endpoints(ids: Set(claimed.map(\.endpointID))).map { ($0.id, $0) })
        let events = Dictionary(
            try await service.store.events.events(service.store.storage, positions: claimed.map(\.eventPosition)).map { ($0.id.position, $0) },
            uniquingKeysWith: { first, _ in first })

        var sends: [(ClaimedMessage, WebhookEndpoint, Event)] = []
        var released: [ClaimedMessage] = []
        var lost: [AttemptRecord] = []
        var probing: Set<String> = []
        for message in claimed {
            guard let endpoint = endpoints[message.endpointID], endpoint.enabled else {
                released.append(message)
                continue
            }
            guard let event = events[message.eventPosition] else {
                lost.append(
                    AttemptRecord(
                        message: message, eventType: "", outcome: .failed(retryAfter: nil), responseStatus: nil, latencyMilliseconds: 0,
                        error: "the event is no longer in the log", responseBody: nil, status: "failed", nextAttemptAt: now))
                continue
            }
            // Half-open circuit: one probe; the rest wait for its answer.
            if endpoint.circuit(now: now, threshold: policy.circuitThreshold) != .closed {
                if probing.contains(endpoint.id) {
                    released.append(message)
                    continue
                }
                probing.insert(endpoint.id)
            }
            sends.append((message, endpoint, event))
        }

        var keys: [String: [SymmetricKeyBytes]] = [:]
        var unsigned: Set<String> = []
        for endpoint in Set(sends.map(\.1.id)).compactMap({ endpoints[$0] }) {
            do {
                keys[endpoint.id] = try await service.signingKeys(endpoint, now: now).map(SymmetricKeyBytes.init)
            } catch {
                // Never sent unsigned: a failed attempt the delivery log explains, retried on schedule.
                unsigned.insert(endpoint.id)
                service.logger.error("webhook secret does not open; check WEBHOOK_SECRET_KEY", metadata: ["endpoint_id": .string(endpoint.id)])
            }
        }
        for (message, endpoint, event) in sends where unsigned.contains(endpoint.id) {
            let next = policy.nextAttempt(after: message.attempts + 1, retryAfter: nil, now: now, random: Double.random(in: 0..<1))
            lost.append(
                AttemptRecord(
                    message: message, eventType: event.type, outcome: .failed(retryAfter: nil), responseStatus: nil, latencyMilliseconds: 0,
                    error: "not sent: the endpoint's secret does not open with this server's WEBHOOK_SECRET_KEY", responseBody: nil,
                    status: next == nil ? "failed" : "pending", nextAttemptAt: next ?? now))
        }
        sends.removeAll { unsigned.contains($0.1.id) }
        let answers = await withTaskGroup(of: (Int, WebhookSender.Answer).self) { group in
            for (index, (message, endpoint, event)) in sends.enumerated() {
                let signingKeys = keys[endpoint.id] ?? []
                group.addTask {
                    let body = event.json
                    let timestamp = Int64(Date().timeIntervalSince1970)
                    let signature = WebhookSignature.header(
                        id: message.eventID, timestamp: timestamp, body: Array(body.utf8), keys: signingKeys.map(\.key))
                    return (index, await self.sender.send(url: endpoint.url, id: message.eventID, body: ByteBuffer(string: body), signature: signature, timestamp: timestamp))
                }
            }
            var answers = [WebhookSender.Answer?](repeating: nil, count: sends.count)
            for await (index, answer) in group { answers[index] = answer }
            return answers
        }

        let finished = service.clock.now()
        var records: [AttemptRecord] = lost
        var outcomes: [String: [DeliveryPolicy.Outcome]] = [:]
        for ((message, endpoint, event), answer) in zip(sends, answers) {
            guard let answer else { continue }
            let outcome = DeliveryPolicy.outcome(status: answer.status, retryAfter: answer.retryAfter, deliveryHeader: answer.deliveryHeader)
            outcomes[endpoint.id, default: []].append(outcome)
            let status: String
            var next = finished
            switch outcome {
            case .succeeded: status = "succeeded"
            case .aborted: status = "aborted"
            case .failed(let retryAfter):
                if let at = policy.nextAttempt(after: message.attempts + 1, retryAfter: retryAfter, now: finished, random: Double.random(in: 0..<1)) {
                    (status, next) = ("pending", at)
                } else {
                    status = "failed"
                }
            case .gone:
                // Kept pending: the endpoint is disabled, and this stays in its backlog.
                if let at = policy.nextAttempt(after: message.attempts + 1, retryAfter: nil, now: finished, random: Double.random(in: 0..<1)) {
                    (status, next) = ("pending", at)
                } else {
                    status = "failed"
                }
            }
            (outcome == .succeeded ? Self.attemptsSucceeded : Self.attemptsFailed).increment()
            Self.latency.record(Double(answer.latencyMilliseconds) / 1000)
            records.append(
                AttemptRecord(
                    message: message, eventType: event.type, outcome: outcome, responseStatus: answer.status.map(Int64.init),
                    latencyMilliseconds: answer.latencyMilliseconds, error: answer.error, responseBody: answer.body, status: status, nextAttemptAt: next))
        }

        var changes: [SQLStatement] = []
        var newEvents: [NewEvent] = []
        var releasedUntil: [String: Timestamp] = [:]
        for (endpointID, results) in outcomes {
            guard let endpoint = endpoints[endpointID] else { continue }
            let failures = Int64(results.filter { if case .failed = $0 { true } else { false } }.count)
            if results.contains(.gone) {
                changes += [
                    SQLStatement("UPDATE webhook_endpoints SET enabled = ?, disabled_reason = 'gone' WHERE endpoint_id = ?", [.bool(false), .text(endpointID)]),
                    WebhookStore.endpointsChanged,
                ]
                var disabled = endpoint
                disabled.enabled = false
                newEvents.append(service.event("webhook.endpoint.disabled", disabled, at: finished, reason: "gone"))
            } else if results.contains(.succeeded) {
                if endpoint.consecutiveFailures != 0 || endpoint.failingSince != nil || endpoint.circuitOpenUntil != nil || endpoint.circuitOpens != 0 {
                    changes.append(
                        SQLStatement(
                            """
                            UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, circuit_open_until = NULL, circuit_opens = 0
                            WHERE endpoint_id = ?
                            """,
                            [.text(endpointID)]))
                }
            } else if failures > 0 {
                let circuit = policy.circuit(
                    afterFailures: failures, consecutive: endpoint.consecutiveFailures, openUntil: endpoint.circuitOpenUntil, opens: endpoint.circuitOpens,
                    now: finished)
                if let openUntil = circuit.openUntil { releasedUntil[endpointID] = openUntil }
                changes.append(
                    SQLStatement(
                        """
                        UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + ?, failing_since = COALESCE(failing_since, ?),
                        circuit_open_until = ?, circuit_opens = ? WHERE endpoint_id = ?
                        """, [.int(failures), .int(finished.milliseconds), SQLValue(circuit.openUntil?.milliseconds), .int(circuit.opens), .text(endpointID)]))
                if let since = endpoint.failingSince, finished.milliseconds - since.milliseconds >= policy.disableAfter * 1000 {
                    changes.append(
                        SQLStatement(
                            "UPDATE webhook_endpoints SET enabled = ?, disabled_reason = 'failing' WHERE endpoint_id = ? AND enabled = ?",
                            [.bool(false), .text(endpointID), .bool(true)]))
                    changes.append(WebhookStore.endpointsChanged)
                    var disabled = endpoint
                    disabled.enabled = false
                    newEvents.append(service.event("webhook.endpoint.disabled", disabled, at: finished, reason: "failing"))
                }
            }
        }
        try await service.store.record(records, lease: lease, released: released, releasedUntil: releasedUntil, endpointChanges: changes, events: newEvents, now: finished)
        if !newEvents.isEmpty { service.didCommitEvents() }
        return claimed.count
    }
}

/// Key bytes that cross task boundaries (swift-crypto's `SymmetricKey` is not `Sendable`).
struct SymmetricKeyBytes: Sendable {
    var bytes: [UInt8]
    init(_ key: SymmetricKey) { bytes = key.withUnsafeBytes { Array($0) } }
    var key: SymmetricKey { SymmetricKey(data: bytes) }
}
