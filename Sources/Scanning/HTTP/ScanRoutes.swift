import Foundation
import Hummingbird
import Kernel
import MultipartKit
import NIOCore

/// `POST /api/sessions/{id}/scan-barcode` and the session's scan log: decode the photo out of
/// the request (raw body or `multipart/form-data`), call `ScanService`, encode.
public struct ScanRoutes: Sendable {
    let service: ScanService
    /// The largest photo taken, in bytes (SCAN_MAX_BYTES).
    let maxImageBytes: Int

    public init(service: ScanService, maxImageBytes: Int) {
        self.service = service
        self.maxImageBytes = maxImageBytes
    }

    /// What a multipart body may add around the photo (boundaries, headers, the other fields).
    static let multipartOverhead = 64 * 1024

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let (service, maxImageBytes) = (service, maxImageBytes)
        var scan = RouteDescription(
            .post, "/api/sessions/{id}/scan-barcode", summary: "Read a barcode from a label photo (and add or deliver its package)", tag: "scanning",
            request: "ScanImage", response: "ScanResult", errors: [400, 403, 404, 409, 413, 422, 503],
            query: [
                QueryParameter("intent", schema: ["type": "string", "enum": .array(ScanIntent.allCases.map { .string($0.rawValue) })]),
                QueryParameter("deliverer_id", schema: ["type": "string"]),
            ],
            maxBodyBytes: maxImageBytes + Self.multipartOverhead, requestMediaType: "image/jpeg")
        scan.alternativeRequests = ["image/png": "ScanImage", "multipart/form-data": "ScanForm"]
        routes.add(scan, to: router) { request, context in
            let sessionID = try context.parameters.require("id")
            let upload = try await ScanUpload.read(request, context: context, maxImageBytes: maxImageBytes)
            guard let intent = ScanIntent(rawValue: upload.intent ?? "lookup") else {
                throw ScanError.invalid(field: "intent", detail: "intent must be one of lookup, add, deliver.")
            }
            return try await IdempotencySlot.respond {
                try await service.scan(sessionID, intent: intent, delivererID: upload.delivererID, image: upload.image, caller: context.caller)
            } render: { answer in .json(answer.json) }
        }
        routes.add(.init(
            .get, "/api/sessions/{id}/scans", summary: "The session's scan attempts, newest first", tag: "scanning", response: "ScanAttemptPage",
            errors: [404, 422], query: [.limit(maximum: 200), .cursor()]
        ), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.attempts(try context.parameters.require("id"), after: request.queryString("cursor"), limit: limit, caller: context.caller)
            let items: [JSONValue] = page.items.map(\.json)
            return JSONResponse.write(JSONValue.object(["items": .array(items), "next_cursor": page.next.map(JSONValue.string) ?? .null]))
        }
    }
}

/// The photo and the fields of a scan request.
struct ScanUpload {
    var image: [UInt8]
    var intent: String?
    var delivererID: String?

    static func read(_ request: Request, context: SessiondRequestContext, maxImageBytes: Int) async throws -> ScanUpload {
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        var upload = ScanUpload(image: [], intent: request.queryString("intent"), delivererID: request.queryString("deliverer_id"))
        let contentType = request.headers[.contentType] ?? ""
        if contentType.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = Self.boundary(contentType) else {
                throw Problem.malformedBody("multipart/form-data needs a boundary parameter.")
            }
            let parts = try Self.parts(body, boundary: boundary)
            guard let image = parts["image"] else {
                throw ScanError.invalid(field: "image", detail: "The multipart body has no field named image.")
            }
            upload.image = image
            if let intent = parts["intent"] { upload.intent = String(decoding: intent, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
            if let deliverer = parts["deliverer_id"] { upload.delivererID = String(decoding: deliverer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        } else {
            upload.image = Array(body.readableBytesView)
        }
        guard upload.image.count <= maxImageBytes else {
            throw Problem(
                status: .contentTooLarge, slug: "payload-too-large", title: "Payload too large",
                detail: "The photo is \(upload.image.count) bytes; at most \(maxImageBytes) are taken.")
        }
        return upload
    }

    static func boundary(_ contentType: String) -> String? { parameter("boundary", in: contentType) }

    /// A `name=value` parameter of a header value (`multipart/form-data; boundary=…`), unquoted.
    static func parameter(_ name: String, in header: String) -> String? {
        for part in header.split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == name {
                let value = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return value.isEmpty ? nil : value
            }
        }
        return nil
    }

    /// The parts of a multipart body by field name (the first of each name).
    static func parts(_ body: ByteBuffer, boundary: String) throws -> [String: [UInt8]] {
        let parser = MultipartParser(boundary: boundary)
        var parts: [String: [UInt8]] = [:]
        var name: String?
        var data: [UInt8] = []
        parser.onHeader = { field, value in
            if field.lowercased() == "content-disposition" { name = Self.parameter("name", in: value) }
        }
        parser.onBody = { buffer in data += buffer.readableBytesView }
        parser.onPartComplete = {
            if let name, parts[name] == nil { parts[name] = data }
            name = nil
            data = []
        }
        do {
            try parser.execute(body)
        } catch {
            throw Problem.malformedBody("The multipart/form-data body cannot be read.")
        }
        return parts
    }
}

extension ScanAttempt {
    /// As the scan log shows it.
    var json: JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return .object([
            "attempt_id": .string(id), "session_id": .string(sessionID), "actor_id": text(actorID), "intent": .string(intent.rawValue),
            "found": .bool(found), "barcode": text(barcode), "format": text(format), "method": text(method), "confidence": .double(confidence),
            "package_id": text(packageID), "outcome": .string(outcome), "candidates": JSONValue.parse(candidatesJSON),
            "steps": JSONValue.parse(stepsJSON), "image": ["bytes": .int(Int64(imageBytes)), "width": imageWidth.map { .int(Int64($0)) } ?? .null,
                "height": imageHeight.map { .int(Int64($0)) } ?? .null],
            "elapsed_ms": .double(elapsedMS), "error": text(error), "created_at": .string(createdAt.rfc3339),
        ])
    }
}
