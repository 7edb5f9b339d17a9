import Foundation
import Logging
import Synchronization

/// Structured logs: one JSON object per line on standard output,
/// `{"ts":"2026-11-25T08:04:51.558Z","level":"info","msg":"request","label":"sessiond","source":"Kernel",…metadata}`.
///
/// Lines are buffered and written by a background thread every 50 ms (errors and above at once),
/// so a request pays for formatting its line, not for a write and flush of its own. Call
/// `LogSink.shared.flush()` before the process exits.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let sink: LogSink
    let clock: WallClock

    public init(label: String, level: Logger.Level = .info, sink: LogSink = .shared, clock: WallClock = .system) {
        self.label = label
        self.logLevel = level
        self.sink = sink
        self.clock = clock
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("ts", clock.now())
        writer.field("level", event.level.rawValue)
        writer.field("msg", event.message.description)
        writer.field("label", label)
        writer.field("source", event.source)
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let given = event.metadata { merged.merge(given) { _, new in new } }
        for key in merged.keys.sorted() where !["ts", "level", "msg", "label", "source"].contains(key) {
            writer.dynamicKey(key)
            Self.write(merged[key]!, to: &writer)
        }
        writer.endObject()
        var line = writer.buffer
        line.writeInteger(UInt8(ascii: "\n"))
        sink.append(Array(line.readableBytesView), urgent: event.level >= .error)
    }

    static func write(_ value: Logger.Metadata.Value, to writer: inout JSONWriter) {
        switch value {
        case .string(let text): writer.string(text)
        case .stringConvertible(let convertible):
            // Numbers and booleans stay numbers and booleans, so log queries can compare them.
            switch convertible {
            case let number as Int: writer.int(Int64(number))
            case let number as Int64: writer.int(number)
            case let number as UInt16: writer.int(Int64(number))
            case let number as Double: writer.double(number)
            case let flag as Bool: writer.bool(flag)
            default: writer.string(convertible.description)
            }
        case .array(let values):
            writer.beginArray()
            for item in values { write(item, to: &writer) }
            writer.endArray()
        case .dictionary(let dictionary):
            writer.beginObject()
            for key in dictionary.keys.sorted() {
                writer.dynamicKey(key)
                write(dictionary[key]!, to: &writer)
            }
            writer.endObject()
        }
    }
}

/// Where log lines go: a buffer that a background thread writes out every 50 ms.
public final class LogSink: Sendable {
    public static let shared = LogSink(write: { bytes in
        bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    })

    private struct State {
        var pending: [UInt8] = []
        var threadStarted = false
    }

    private let state = Mutex(State())
    private let output: @Sendable ([UInt8]) -> Void
    /// Serialises writers, so lines from a flush and from the thread never interleave.
    private let writing = Mutex(())

    /// `write` receives whole lines, in order.
    public init(write: @escaping @Sendable ([UInt8]) -> Void) {
        self.output = write
    }

    func append(_ line: [UInt8], urgent: Bool) {
        let startThread = state.withLock { state -> Bool in
            state.pending.append(contentsOf: line)
            let start = !state.threadStarted
            state.threadStarted = true
            return start
        }
        if startThread {
            let thread = Thread { [self] in
                while true {
                    Thread.sleep(forTimeInterval: 0.05)
                    flush()
                }
            }
            thread.name = "sessiond-log-writer"
            thread.start()
        }
        if urgent { flush() }
    }

    /// Writes out everything buffered so far.
    public func flush() {
        writing.withLock { _ in
            let bytes = state.withLock { state -> [UInt8] in
                let bytes = state.pending
                state.pending.removeAll(keepingCapacity: true)
                return bytes
            }
            if !bytes.isEmpty { output(bytes) }
        }
    }
}
