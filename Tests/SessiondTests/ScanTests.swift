import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import NIOCore
import Scanning
import Testing

/// `POST /api/sessions/{id}/scan-barcode` end to end on the real application (SQLite, or
/// PostgreSQL with SESSIOND_TEST_POSTGRES_URL): photos of the generated corpus, raw and multipart,
/// each intent, the access rules, the refusals, the scan log, events and metrics.
@Suite struct ScanTests {
    static func scan(
        _ client: any TestClientProtocol, _ sessionID: String, _ image: [UInt8], query: String = "", contentType: String = "image/jpeg",
        headers: HTTPFields = [:], expect status: HTTPResponse.Status = .ok, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> JSONValue {
        var headers = headers
        headers[.contentType] = contentType
        if headers[.authorization] == nil { headers[.authorization] = "Bearer \(TestAuth.adminKey)" }
        let response = try await client.execute(
            uri: "/api/sessions/\(sessionID)/scan-barcode\(query)", method: .post, headers: headers, body: ByteBuffer(bytes: image))
        let text = String(buffer: response.body)
        #expect(response.status == status, "scan → \(response.status.code): \(text.prefix(300))", sourceLocation: sourceLocation)
        return text.isEmpty ? .null : try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// A `multipart/form-data` body with the photo in `image` and the other fields as text.
    static func multipart(_ image: [UInt8], fields: [String: String], boundary: String = "sessiond-test-boundary") -> [UInt8] {
        var body: [UInt8] = []
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"label.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".utf8)
        body += image
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return body
    }

    @Test func addLookupAndDeliverByPhoto() async throws {
        let corpus = try await ScanCorpus.shared()
        // What is read, not how fast: the whole suite runs at once on 2 cores, and a covered label's
        // OCR once ran past the default 4 s budget there (the budget has a test of its own).
        try await withApp(configure: { $0.scanning.timeBudget = .seconds(60) }) { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            let clean = corpus.photos.filter { $0.degradation == "clean" && $0.format != "qr" }
            // add: the barcode read becomes a package; the same photo again is a duplicate.
            let first = try await Self.scan(client, session, try corpus.bytes(clean[0].file), query: "?intent=add")
            #expect(first["found"]?.bool == true && first["barcode"]?.string == clean[0].barcode && first["method"]?.string == "zbar")
            #expect(first["outcome"]?.string == "added" && first["package"]?["barcode"]?.string == clean[0].barcode)
            #expect(first["format"]?.string == clean[0].format || clean[0].format == "code128")
            #expect((first["confidence"]?.double ?? 0) >= 0.9 && first["attempt_id"]?.string != nil && first["elapsed_ms"]?.double != nil)
            let again = try await Self.scan(client, session, try corpus.bytes(clean[0].file), query: "?intent=add")
            #expect(again["outcome"]?.string == "duplicate" && again["package"]?["package_id"] == first["package"]?["package_id"])
            // The same photo sent as multipart/form-data, with the intent as a field.
            let form = Self.multipart(try corpus.bytes(clean[1].file), fields: ["intent": "add"])
            let second = try await Self.scan(client, session, form, contentType: "multipart/form-data; boundary=sessiond-test-boundary")
            #expect(second["outcome"]?.string == "added" && second["barcode"]?.string == clean[1].barcode)

            // lookup (the default) of a label whose bars are covered: read from the printed line,
            // matched to the right one among look-alike barcodes of the session.
            let pipeline = ScanPipeline(ocr: DigitsOCR.shared())
            var readable: ScanCorpus.Photo?
            for photo in corpus.photos where photo.degradation == "covered" {
                if try await pipeline.scan(try corpus.bytes(photo.file), known: photo.known).verdict.found {
                    readable = photo
                    break
                }
            }
            let covered = try #require(readable)
            try await flow.add(session, covered.known)
            let lookup = try await Self.scan(client, session, try corpus.bytes(covered.file))
            #expect(lookup["found"]?.bool == true && lookup["barcode"]?.string == covered.barcode, "\(lookup)")
            #expect(["ocr", "match"].contains(lookup["method"]?.string ?? "") && lookup["package"]?["barcode"]?.string == covered.barcode)
            #expect(lookup["outcome"]?.string == "none" && lookup["intent"]?.string == "lookup")
            // A photo with nothing to read: not found, no package, no barcode.
            let blank = try await Self.scan(client, session, try corpus.badBytes("blank.jpg"))
            #expect(blank["found"]?.bool == false && blank["barcode"] == .null && blank["package"] == .null)

            // deliver: the deliverer's own package, by photo, with the deliverer's own key.
            let packages = try await flow.session(session)["packages"]!.array
            let target = try #require(packages.first { $0["barcode"]?.string == covered.barcode })
            try await flow.start(session, deliverers: ["ana", "bia"], assignments: Dictionary(uniqueKeysWithValues: packages.map {
                ($0["package_id"]!.string!, $0["barcode"]?.string == covered.barcode ? "ana" : "bia")
            }))
            func key(_ deliverer: String) async throws -> HTTPFields {
                TestAuth.bearer(try await client.json(.post, "/api/keys", body(["name": "d", "role": "deliverer", "deliverer_id": .string(deliverer), "user_id": "maria"]), expect: .created)["key"]!.string!)
            }
            let (ana, bia) = (try await key("ana"), try await key("bia"))
            // Another deliverer's package: refused by the delivery rules (409), for itself; 403 naming someone else.
            _ = try await Self.scan(client, session, try corpus.bytes(covered.file), query: "?intent=deliver&deliverer_id=bia", headers: bia, expect: .conflict)
            _ = try await Self.scan(client, session, try corpus.bytes(covered.file), query: "?intent=deliver&deliverer_id=ana", headers: bia, expect: .forbidden)
            let delivered = try await Self.scan(
                client, session, Self.multipart(try corpus.bytes(covered.file), fields: ["intent": "deliver", "deliverer_id": "ana"]),
                contentType: "multipart/form-data; boundary=sessiond-test-boundary", headers: ana)
            #expect(delivered["outcome"]?.string == "delivered" && delivered["package"]?["delivery_status"]?.string == "delivered")
            let after = try await flow.session(session)
            #expect(after["packages"]!.array.first { $0["package_id"] == target["package_id"] }?["delivery_status"]?.string == "delivered")
            #expect(after["packages_delivered"]?.int == 1)
            // add while active: the session's state refuses it.
            _ = try await Self.scan(client, session, try corpus.bytes(clean[2].file), query: "?intent=add", expect: .conflict)

            // Every attempt is in the scan log (newest first) and the event log.
            let log = try await client.json(.get, "/api/sessions/\(session)/scans?limit=50")["items"]!.array
            // (Refusals before the photo is read — 403, the state — are not scans.)
            #expect(log.map { $0["outcome"]?.string ?? "" } == ["delivered", "rejected", "none", "none", "added", "duplicate", "added"])
            #expect(log[1]["error"]?.string == "wrong-deliverer")
            #expect(log.first?["steps"]?.array.isEmpty == false && log.first?["image"]?["width"]?.int == 1280)
            let events = try await client.json(.get, "/api/events?types=delivery.package.scanned&limit=100")["items"]!.array
            #expect(events.count == log.count)
            #expect(events.contains { $0["data"]?["outcome"]?.string == "delivered" && $0["data"]?["package_id"] == target["package_id"] })
            // The deliverer sees the scans of its own deliveries in its event stream.
            let anaEvents = try await client.json(.get, "/api/events?types=delivery.package.scanned", headers: ana)["items"]!.array
            #expect(anaEvents.contains { $0["data"]?["outcome"]?.string == "delivered" })
            let metrics = String(buffer: try await client.send(.get, "/metrics").body)
            #expect(metrics.contains("sessiond_scan_attempts_total"))
            #expect(metrics.contains("sessiond_scan_duration_seconds"))
        }
    }

    @Test func refusals() async throws {
        let corpus = try await ScanCorpus.shared()
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "maria")
            func problem(_ bytes: [UInt8], _ status: HTTPResponse.Status, _ type: String?, query: String = "", contentType: String = "image/jpeg", sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let answer = try await Self.scan(client, session, bytes, query: query, contentType: contentType, expect: status, sourceLocation: sourceLocation)
                #expect(answer["status"]?.int == Int64(status.code), sourceLocation: sourceLocation)
                if let type { #expect(answer["type"]?.string == Problem.typeBase + type, "\(answer)", sourceLocation: sourceLocation) }
            }
            try await problem(try corpus.badBytes("empty.jpg"), .unprocessableContent, "empty-image")
            try await problem(try corpus.badBytes("garbage.jpg"), .unprocessableContent, "unsupported-image")
            try await problem(try corpus.badBytes("truncated.jpg"), .unprocessableContent, "corrupt-image")
            try await problem(try corpus.badBytes("header-only.png"), .unprocessableContent, "corrupt-image", contentType: "image/png")
            try await problem(try corpus.badBytes("huge-40000.png"), .unprocessableContent, "image-too-large", contentType: "image/png")
            try await problem(try corpus.badBytes("image.gif"), .unprocessableContent, "unsupported-image", contentType: "image/gif")
            try await problem(try corpus.badBytes("cmyk.jpg"), .unprocessableContent, "unsupported-image")
            try await problem(try corpus.badBytes("eleven-mb.jpg"), .contentTooLarge, nil)
            // A progressive JPEG of 3,000 scans (a minute of decoding without a limit): refused past
            // 500 scans, and the answer never waits much past the time budget (4 s and half a second).
            let started = ContinuousClock.now
            try await problem(try corpus.badBytes("many-scans.jpg"), .unprocessableContent, nil)
            #expect(ContinuousClock.now - started < .seconds(10))
            let photo = try corpus.bytes(corpus.photos[0].file)
            try await problem(photo, .unprocessableContent, "validation", query: "?intent=steal")
            try await problem(photo, .unprocessableContent, "validation", query: "?intent=deliver")
            // multipart without a boundary is malformed (400); one without the image field names it (422).
            try await problem(Self.multipart(photo, fields: [:]), .badRequest, "malformed-body", contentType: "multipart/form-data")
            let noImage = Array("--b1\r\nContent-Disposition: form-data; name=\"intent\"\r\n\r\nadd\r\n--b1--\r\n".utf8)
            try await problem(noImage, .unprocessableContent, "validation", contentType: "multipart/form-data; boundary=b1")
            // Who may: a viewer looks up but does not add; another owner does not see the session at all.
            func key(_ role: String, _ user: String) async throws -> HTTPFields {
                TestAuth.bearer(try await client.json(.post, "/api/keys", body(["name": "k", "role": .string(role), "user_id": .string(user)]), expect: .created)["key"]!.string!)
            }
            let (viewer, joao) = (try await key("viewer", "maria"), try await key("owner", "joao"))
            _ = try await Self.scan(client, session, photo, headers: viewer)
            _ = try await Self.scan(client, session, photo, query: "?intent=add", headers: viewer, expect: .forbidden)
            _ = try await Self.scan(client, session, photo, headers: joao, expect: .notFound)
            _ = try await Self.scan(client, "no-such-session", photo, expect: .notFound)
            _ = try await Self.scan(client, session, photo, headers: [TestAuth.noKey: "1", .authorization: "Bearer nope"], expect: .unauthorized)
            // The refused images are attempts too (outcome error, the problem's type); the server still answers.
            let log = try await client.json(.get, "/api/sessions/\(session)/scans?limit=50")["items"]!.array
            #expect(log.filter { $0["outcome"]?.string == "error" }.count == 8, "\(log.map { $0["error"]?.string ?? "-" })")
            #expect(try await client.json(.get, "/api/sessions/\(session)")["packages_total"]?.int == 0)
        }
    }

    @Test func idempotentAdd() async throws {
        let corpus = try await ScanCorpus.shared()
        try await withApp { client, _ in
            let session = try await DeliveryFlow(client: client).create(user: "maria")
            let photo = try corpus.bytes(corpus.photos.first { $0.degradation == "clean" }!.file)
            let headers: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "scan-1"]
            let first = try await Self.scan(client, session, photo, query: "?intent=add", headers: headers)
            let second = try await Self.scan(client, session, photo, query: "?intent=add", headers: headers)
            #expect(first == second && first["outcome"]?.string == "added")
            #expect(try await client.json(.get, "/api/sessions/\(session)")["packages_total"]?.int == 1)
            #expect(try await client.json(.get, "/api/sessions/\(session)/scans")["items"]!.array.count == 1)
        }
    }
}

extension ScanTests {
    /// `barcode-scan`: many photos in one job, the same pipeline; a bad photo is an error in its
    /// place, the others still read; the submission is checked when submitted.
    @Test func barcodeScanSubmission() async throws {
        let corpus = try await ScanCorpus.shared()
        try await withApp { client, _ in
            let session = try await DeliveryFlow(client: client).create(user: "maria")
            let photos = corpus.photos.filter { $0.degradation == "clean" && $0.format != "qr" }.prefix(3)
            var images: [JSONValue] = try photos.map { .string(Data(try corpus.bytes($0.file)).base64EncodedString()) }
            images.append(.string(Data(try corpus.badBytes("image.gif")).base64EncodedString()))
            let submitted = try await client.json(
                .post, "/api/submissions",
                body(["automation_slug": "barcode-scan", "payload": ["session_id": .string(session), "intent": "add", "images": .array(images)]]),
                expect: .accepted)
            let job = try await SubmissionTests.finished(client, submitted["id"]!.string!)
            #expect(job["status"]?.string == "success", "\(job)")
            let results = job["result"]?["results"]?.array ?? []
            #expect(results.count == 4 && job["result"]?["found"]?.int == 3)
            #expect(results.prefix(3).map { $0["barcode"]?.string } == photos.map { Optional($0.barcode) })
            #expect(results.prefix(3).allSatisfy { $0["outcome"]?.string == "added" })
            #expect(results[3]["error"]?["type"]?.string == Problem.typeBase + "unsupported-image" && results[3]["index"]?.int == 3)
            #expect(try await client.json(.get, "/api/sessions/\(session)")["packages_total"]?.int == 3)
            // Checked when submitted: a missing session, a wrong intent.
            try await client.json(.post, "/api/submissions", body(["automation_slug": "barcode-scan", "payload": ["session_id": "nope", "images": ["eA=="]]]), expect: .notFound)
            try await client.json(
                .post, "/api/submissions", body(["automation_slug": "barcode-scan", "payload": ["session_id": .string(session), "images": ["eA=="], "intent": "deliver"]]),
                expect: .unprocessableContent)
        }
    }
}
