import Access
import Foundation
import Kernel
import Scanning

/// `barcode-scan`: many label photos in one job, each through the same pipeline and rules as
/// `POST /api/sessions/{id}/scan-barcode` (each one an attempt in the scan log). Payload
/// `{session_id, images: [base64 JPEG or PNG], intent?, deliverer_id?}`; result
/// `{results: [{index, …the scan's answer} | {index, error: problem}], found, scanned}`.
/// Adding and delivering are idempotent by the delivery rules (a duplicate is not added again, a
/// package delivered twice counts once), so a job run again after a crash changes nothing twice.
struct BarcodeScan: Automation {
    let scanning: ScanService
    let maxImageBytes: Int
    let slug = "barcode-scan"
    static let maxImages = 100

    struct Fields {
        var sessionID: String
        var images: [String]
        var intent: ScanIntent
        var delivererID: String?
    }

    func accept(_ payload: JSONValue, caller: Caller) async throws {
        let fields = try Self.fields(payload)
        // The same checks as one scan (the session, the caller's right for the intent, its state), before any photo is read.
        try await scanning.authorize(fields.sessionID, intent: fields.intent, delivererID: fields.delivererID, caller: caller)
    }

    static func fields(_ payload: JSONValue) throws -> Fields {
        guard case .string(let sessionID)? = payload["session_id"], !sessionID.isEmpty else {
            throw Problem.validation("payload.session_id", "payload.session_id is required.")
        }
        guard case .array(let list)? = payload["images"], !list.isEmpty, list.count <= maxImages else {
            throw Problem.validation("payload.images", "payload.images is a list of 1 to \(maxImages) photos in base64.")
        }
        var images: [String] = []
        for (index, item) in list.enumerated() {
            guard case .string(let text) = item, !text.isEmpty else {
                throw Problem.validation("payload.images[\(index)]", "Each image is a base64 string of a JPEG or PNG.")
            }
            images.append(text)
        }
        var intent = ScanIntent.lookup
        if case .string(let text)? = payload["intent"] {
            guard let parsed = ScanIntent(rawValue: text) else { throw Problem.validation("payload.intent", "payload.intent is lookup, add or deliver.") }
            intent = parsed
        }
        var delivererID: String?
        if case .string(let text)? = payload["deliverer_id"], !text.isEmpty { delivererID = text }
        if intent == .deliver, delivererID == nil {
            throw Problem.validation("payload.deliverer_id", "payload.deliverer_id is required with intent deliver.")
        }
        return Fields(sessionID: sessionID, images: images, intent: intent, delivererID: delivererID)
    }

    func run(_ job: SubmissionJob) async throws -> AutomationOutcome {
        let fields = try Self.fields(job.payload)
        var results: [JSONValue] = []
        var found = 0
        for (index, text) in fields.images.enumerated() {
            var entry: [String: JSONValue]
            do {
                guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                    throw ScanError.corruptImage("The image is not valid base64.")
                }
                guard data.count <= maxImageBytes else {
                    throw ScanError.invalid(field: "payload.images[\(index)]", detail: "The photo is \(data.count) bytes; at most \(maxImageBytes) are taken.")
                }
                let answer = try await scanning.scan(fields.sessionID, intent: fields.intent, delivererID: fields.delivererID, image: Array(data), caller: job.caller)
                if answer.found { found += 1 }
                guard case .object(let object) = answer.json else { continue }
                entry = object
            } catch let error as any ProblemConvertible {
                let problem = error.problem
                entry = ["error": ["type": .string(problem.type), "title": .string(problem.title), "status": .int(Int64(problem.status.code)), "detail": .string(problem.detail)]]
            }
            entry["index"] = .int(Int64(index))
            results.append(.object(entry))
        }
        return .succeeded(["results": .array(results), "found": .int(Int64(found)), "scanned": .int(Int64(fields.images.count))])
    }
}
