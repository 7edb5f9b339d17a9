import Foundation
import Kernel
import Logging
import Synchronization
import Testing

@Suite("Structured logs")
struct LoggingTests {
    final class Captured: Sendable {
        let bytes = Mutex<[UInt8]>([])
        var lines: [JSONValue] {
            String(decoding: bytes.withLock { $0 }, as: UTF8.self).split(separator: "\n").compactMap {
                try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8))
            }
        }
    }

    @Test("one JSON object per line, with level, message, metadata and a request id")
    func jsonLines() throws {
        let captured = Captured()
        let sink = LogSink { line in captured.bytes.withLock { $0 += line } }
        var logger = Logger(label: "sessiond") { label in JSONLogHandler(label: label, level: .info, sink: sink) }
        logger[metadataKey: "request_id"] = "req-1"
        logger.info("request", metadata: ["status": .stringConvertible(201), "path": "/api/sessions/create", "tags": ["a", "b"]])
        logger.debug("not at this level")
        sink.flush()
        let lines = captured.lines
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        #expect(line["level"]?.string == "info")
        #expect(line["msg"]?.string == "request")
        #expect(line["request_id"]?.string == "req-1")
        #expect(line["status"]?.int == 201)
        #expect(line["path"]?.string == "/api/sessions/create")
        #expect(line["tags"] == ["a", "b"])
        #expect(line["ts"]?.string.flatMap(Timestamp.init(rfc3339:)) != nil)
    }

    @Test("errors are written at once; other lines wait for the writer")
    func errorsAreUrgent() {
        let captured = Captured()
        let sink = LogSink { line in captured.bytes.withLock { $0 += line } }
        let logger = Logger(label: "sessiond") { label in JSONLogHandler(label: label, level: .info, sink: sink) }
        logger.error("database unreachable", metadata: ["error": "connection refused"])
        #expect(captured.lines.first?["msg"]?.string == "database unreachable")
    }
}
