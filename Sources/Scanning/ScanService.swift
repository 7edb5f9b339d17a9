import CoreMetrics
import Foundation
import Kernel
import Logging

/// The answer of `POST /api/sessions/{id}/scan-barcode`.
public struct ScanAnswer: Sendable, Equatable {
    public struct Candidate: Sendable, Encodable, Equatable {
        public var barcode: String
        public var confidence: Double
        public var packageID: String?
        enum CodingKeys: String, CodingKey { case barcode, confidence, packageID = "package_id" }
    }

    public var found: Bool
    public var barcode: String?
    public var format: String?
    public var method: String?
    public var confidence: Double
    public var package: JSONValue?
    public var candidates: [Candidate]
    public var attemptID: String
    public var elapsedMS: Double
    public var intent: String
    /// What the scan changed: `none`, `added`, `duplicate` (already in the session), `delivered`.
    public var outcome: String

    /// The contract's fields, always present (null when there is nothing to say).
    public var json: JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return .object([
            "found": .bool(found), "barcode": text(barcode), "format": text(format), "method": text(method), "confidence": .double(confidence),
            "package": package ?? .null,
            "candidates": .array(candidates.map { ["barcode": .string($0.barcode), "confidence": .double($0.confidence), "package_id": text($0.packageID)] }),
            "attempt_id": .string(attemptID), "elapsed_ms": .double(elapsedMS), "intent": .string(intent), "outcome": .string(outcome),
        ])
    }
}

/// Scans label photos for a delivery session: the pipeline, then what the intent asks (add the
/// barcode, deliver its package) through `ScanTargets`, and every attempt recorded with a
/// `delivery.package.scanned` event — in the change's own transaction when there is a change.
public struct ScanService: Sendable {
    /// Retention of scan attempts (`SCAN_ATTEMPT_RETENTION`).
    public static func retentionRules(keepSeconds: Int64) -> [RetentionRule] {
        [RetentionRule("scan_attempts", keepSeconds: keepSeconds) { cutoff, limit in ScanSQL.pruneBatch(cutoff: cutoff, limit: limit) }]
    }

    public static let eventType = "delivery.package.scanned"
    public static let eventTypes: [(type: String, summary: String)] = [
        (eventType, "A label photo was scanned for the session: what was read (or not), how, how sure, and what it changed."),
    ]
    public static var migrations: [Migration] { ScanSQL.migrations }

    let storage: Storage
    public let pipeline: ScanPipeline
    let targets: any ScanTargets
    let clock: WallClock
    let ids: IDGenerator
    let events: EventLog
    let didCommitEvents: @Sendable () -> Void

    public init(
        storage: Storage, pipeline: ScanPipeline, targets: any ScanTargets, clock: WallClock, ids: IDGenerator,
        didCommitEvents: @escaping @Sendable () -> Void = {}
    ) {
        self.storage = storage
        self.pipeline = pipeline
        self.targets = targets
        self.clock = clock
        self.ids = ids
        self.events = EventLog(dialect: storage.dialect)
        self.didCommitEvents = didCommitEvents
    }

    /// Whether `caller` may scan for `intent` in the session now (its 404, 403, 409 and 422 otherwise).
    public func authorize(_ sessionID: String, intent: ScanIntent, delivererID: String?, caller: Caller) async throws {
        _ = try await session(sessionID, intent: intent, delivererID: delivererID, caller: caller)
    }

    func session(_ sessionID: String, intent: ScanIntent, delivererID: String?, caller: Caller) async throws -> ScanSession {
        if intent == .deliver, delivererID == nil {
            throw ScanError.invalid(field: "deliverer_id", detail: "deliverer_id is required to scan with intent deliver.")
        }
        return try await targets.session(sessionID, intent: intent, delivererID: delivererID, caller: caller)
    }

    /// Reads a photo and acts on it as `intent` says; an added package is worth `valueCents` (the
    /// delivery rules' default when nil).
    public func scan(
        _ sessionID: String, intent: ScanIntent, delivererID: String?, image: [UInt8], caller: Caller, valueCents: Int64? = nil
    ) async throws -> ScanAnswer {
        let delivererID = delivererID.flatMap { $0.isEmpty ? nil : $0 }
        let session = try await session(sessionID, intent: intent, delivererID: delivererID, caller: caller)
        let slot = IdempotencySlot.current
        let attemptID = ids.make()
        var attempt = ScanAttempt(
            id: attemptID, sessionID: sessionID, userID: session.userID, actorID: caller.id, intent: intent, found: false, barcode: nil, format: nil,
            method: nil, confidence: 0, packageID: nil, outcome: "none", candidatesJSON: "[]", stepsJSON: "[]", imageBytes: image.count,
            imageWidth: nil, imageHeight: nil, elapsedMS: 0, error: nil, createdAt: clock.now())

        let report: ScanReport
        do {
            report = try await pipeline.scan(image, known: session.packages.map(\.barcode))
        } catch let error as ScanError {
            if error != .busy {
                ScanMetrics.refused()
                attempt.outcome = "error"
                attempt.error = error.problem.slug
                try? await record(attempt, caller: caller)
            }
            throw error
        }
        ScanMetrics.record(report)
        let verdict = report.verdict
        let byBarcode = Dictionary(session.packages.map { ($0.barcode, $0) }, uniquingKeysWith: { first, _ in first })
        let candidates = verdict.candidates.map { ScanAnswer.Candidate(barcode: $0.barcode, confidence: Self.round($0.confidence), packageID: byBarcode[$0.barcode]?.id) }
        attempt.found = verdict.found
        attempt.barcode = verdict.found ? verdict.barcode : nil
        attempt.format = verdict.found ? verdict.symbology?.rawValue : nil
        attempt.method = verdict.found ? verdict.method : nil
        attempt.confidence = Self.round(verdict.confidence)
        attempt.candidatesJSON = Self.json(candidates)
        attempt.stepsJSON = Self.json(report.steps)
        attempt.imageWidth = report.width
        attempt.imageHeight = report.height
        attempt.elapsedMS = report.elapsedMS
        let matched = attempt.barcode.flatMap { byBarcode[$0] }
        attempt.packageID = matched?.id
        let base = attempt
        @Sendable func answer(_ attempt: ScanAttempt, package: ScanPackage?) -> ScanAnswer {
            ScanAnswer(
                found: attempt.found, barcode: attempt.barcode, format: attempt.format, method: attempt.method, confidence: attempt.confidence,
                package: package?.json, candidates: candidates, attemptID: attempt.id, elapsedMS: attempt.elapsedMS, intent: intent.rawValue,
                outcome: attempt.outcome)
        }
        // What the intent asks, in one transaction with the attempt, its event and the stored answer.
        let events = events
        @Sendable func statements(_ attempt: ScanAttempt, _ answer: ScanAnswer) -> [SQLStatement] {
            var statements = [ScanSQL.insert(attempt)] + events.append([Self.event(attempt, caller: caller)])
            if let stored = slot?.answer(for: answer) { statements.append(stored.statement) }
            return statements
        }
        do {
            switch (intent, attempt.barcode, matched) {
            case (.add, let barcode?, _):
                let result = try await targets.add(barcode, valueCents: valueCents, to: sessionID, existing: matched, caller: caller) { package, duplicate in
                    var attempt = base
                    attempt.packageID = package.id
                    attempt.outcome = duplicate ? "duplicate" : "added"
                    return statements(attempt, answer(attempt, package: package))
                }
                attempt.packageID = result.package.id
                attempt.outcome = result.duplicate ? "duplicate" : "added"
                return finish(answer(attempt, package: result.package), slot: slot)
            case (.deliver, _, let matched?):
                let package = try await targets.deliver(matched.id, in: sessionID, delivererID: delivererID ?? "", caller: caller) { package in
                    var attempt = base
                    attempt.outcome = "delivered"
                    return statements(attempt, answer(attempt, package: package))
                }
                attempt.outcome = "delivered"
                return finish(answer(attempt, package: package), slot: slot)
            default:
                let result = answer(attempt, package: matched)
                try await storage.write(statements(attempt, result))
                return finish(result, slot: slot)
            }
        } catch let error where !(error is CancellationError) {
            // The change was refused (a package of another deliverer, one already delivered…): the attempt still counts.
            if attempt.outcome == "none", intent != .lookup, attempt.found {
                attempt.outcome = "rejected"
                attempt.error = (error as? any ProblemConvertible)?.problem.slug ?? String(describing: type(of: error))
                try? await record(attempt, caller: caller)
            }
            throw error
        }
    }

    /// After the commit: the stored answer is known to the middleware, the feed is woken.
    func finish(_ answer: ScanAnswer, slot: IdempotencySlot?) -> ScanAnswer {
        if let slot, let stored = slot.answer(for: answer) { slot.stored(stored.answer) }
        didCommitEvents()
        return answer
    }

    func record(_ attempt: ScanAttempt, caller: Caller) async throws {
        try await storage.write([ScanSQL.insert(attempt)] + events.append([Self.event(attempt, caller: caller)]))
        didCommitEvents()
    }

    /// The session's scan attempts, newest first.
    public func attempts(_ sessionID: String, after cursor: String?, limit: Int, caller: Caller) async throws -> (items: [ScanAttempt], next: String?) {
        _ = try await targets.session(sessionID, intent: .lookup, delivererID: nil, caller: caller)
        let (sql, binds) = ScanSQL.page(sessionID: sessionID, after: cursor, limit: limit + 1)
        let rows = try await storage.query(sql, binds).map(ScanSQL.attempt)
        let items = Array(rows.prefix(limit))
        return (items, rows.count > limit ? items.last?.id : nil)
    }

    static func event(_ attempt: ScanAttempt, caller: Caller) -> NewEvent {
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("attempt_id", attempt.id)
        writer.field("session_id", attempt.sessionID)
        writer.field("intent", attempt.intent.rawValue)
        writer.field("found", attempt.found)
        writer.field("barcode", attempt.barcode)
        writer.field("format", attempt.format)
        writer.field("method", attempt.method)
        writer.field("confidence", attempt.confidence)
        writer.field("package_id", attempt.packageID)
        writer.field("outcome", attempt.outcome)
        writer.field("error", attempt.error)
        writer.field("elapsed_ms", attempt.elapsedMS)
        writer.endObject()
        // A deliverer's scan is visible to that deliverer too.
        let audience = caller.role == "deliverer" ? caller.scope("deliverer_id").map { [AudienceTag.tag("deliverer_id", $0)] } ?? [] : []
        return NewEvent(
            type: eventType, sessionID: attempt.sessionID, userID: attempt.userID, audience: audience, createdAt: attempt.createdAt,
            data: String(buffer: writer.buffer))
    }

    static func round(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }
}

/// The scanning figures `/metrics` shows.
enum ScanMetrics {
    /// An image refused (empty, corrupt, unsupported, too many pixels).
    static func refused() {
        Counter(label: "sessiond_scan_attempts_total", dimensions: [("method", "none"), ("result", "image_refused")]).increment()
    }

    static func record(_ report: ScanReport) {
        let result = report.verdict.found ? "found" : (report.timedOut ? "timed_out" : "not_found")
        Counter(label: "sessiond_scan_attempts_total", dimensions: [("method", report.verdict.found ? report.verdict.method ?? "none" : "none"), ("result", result)])
            .increment()
        Timer(label: "sessiond_scan_duration_seconds").recordNanoseconds(Int64(report.elapsedMS * 1_000_000))
        for step in report.steps where step.step != "decode" {
            Counter(label: "sessiond_scan_steps_total", dimensions: [("step", step.step), ("read", step.result.isEmpty ? "false" : "true")]).increment()
        }
    }
}
