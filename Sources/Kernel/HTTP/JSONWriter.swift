import HTTPTypes
import Hummingbird
import NIOCore

/// Writes JSON straight into a `ByteBuffer`. Foundation's `JSONEncoder` costs about a millisecond
/// for a 120 KB session document and tens of microseconds for a small answer; this costs a small
/// fraction of that, and keys come out in the order written (the contract's order).
///
/// Usage: `writer.beginObject(); writer.field("session_id", id); …; writer.endObject()`.
public struct JSONWriter {
    public private(set) var buffer: ByteBuffer
    private var needsComma = false

    public init(capacity: Int = 1024) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    public mutating func beginObject() {
        separate()
        buffer.writeInteger(UInt8(ascii: "{"))
        needsComma = false
    }

    public mutating func endObject() {
        buffer.writeInteger(UInt8(ascii: "}"))
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        buffer.writeInteger(UInt8(ascii: "["))
        needsComma = false
    }

    public mutating func endArray() {
        buffer.writeInteger(UInt8(ascii: "]"))
        needsComma = true
    }

    /// An object key. Keys are ASCII literals chosen by us, so they are written without escaping.
    public mutating func key(_ name: StaticString) {
        separate()
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeStaticString(name)
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeInteger(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func string(_ value: String) {
        separate()
        buffer.writeInteger(UInt8(ascii: "\""))
        var start = value.utf8.startIndex
        let utf8 = value.utf8
        var index = start
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                buffer.writeBytes(utf8[start..<index])
                writeEscape(byte)
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        buffer.writeBytes(utf8[start..<utf8.endIndex])
        buffer.writeInteger(UInt8(ascii: "\""))
        needsComma = true
    }

    public mutating func int(_ value: Int64) {
        separate()
        buffer.writeString(String(value))
        needsComma = true
    }

    public mutating func double(_ value: Double) {
        separate()
        if value.isFinite {
            buffer.writeString(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))
        } else {
            buffer.writeStaticString("null")
        }
        needsComma = true
    }

    public mutating func bool(_ value: Bool) {
        separate()
        buffer.writeStaticString(value ? "true" : "false")
        needsComma = true
    }

    public mutating func null() {
        separate()
        buffer.writeStaticString("null")
        needsComma = true
    }

    /// Text that is already valid JSON (for example canonical JSON kept in the database).
    public mutating func raw(json: String) {
        separate()
        buffer.writeString(json)
        needsComma = true
    }

    public mutating func value(_ value: some JSONWritable) {
        value.write(to: &self)
    }

    public mutating func array<S: Sequence>(_ values: S) where S.Element: JSONWritable {
        beginArray()
        for value in values { value.write(to: &self) }
        endArray()
    }

    // Fields: a key and its value; nil is written as null (every documented field is always present).
    public mutating func field(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { string(value) } else { null() }
    }

    public mutating func field(_ name: StaticString, _ value: Int64?) {
        key(name)
        if let value { int(value) } else { null() }
    }

    public mutating func field(_ name: StaticString, _ value: Int) {
        key(name)
        int(Int64(value))
    }

    public mutating func field(_ name: StaticString, _ value: Double?) {
        key(name)
        if let value { double(value) } else { null() }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        bool(value)
    }

    public mutating func field(_ name: StaticString, _ value: Timestamp?) {
        key(name)
        if let value { string(value.rfc3339) } else { null() }
    }

    public mutating func field(_ name: StaticString, _ value: (some JSONWritable)?) {
        key(name)
        if let value { value.write(to: &self) } else { null() }
    }

    public mutating func field<S: Sequence>(_ name: StaticString, array values: S) where S.Element: JSONWritable {
        key(name)
        array(values)
    }

    private mutating func separate() {
        if needsComma { buffer.writeInteger(UInt8(ascii: ",")) }
    }

    private mutating func writeEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
        case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
        case 0x0A: buffer.writeStaticString("\\n")
        case 0x0D: buffer.writeStaticString("\\r")
        case 0x09: buffer.writeStaticString("\\t")
        default:
            let digits: StaticString = "0123456789abcdef"
            buffer.writeStaticString("\\u00")
            digits.withUTF8Buffer { hex in
                buffer.writeInteger(hex[Int(byte >> 4)])
                buffer.writeInteger(hex[Int(byte & 0x0F)])
            }
        }
    }
}

/// A value that writes itself as JSON.
/// One page of a listing: `{items, next_cursor}` (null on the last page).
public struct Page<Item: JSONWritable>: JSONWritable {
    public var items: [Item]
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }

    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("items", array: items)
        writer.field("next_cursor", next)
        writer.endObject()
    }
}

public protocol JSONWritable {
    func write(to writer: inout JSONWriter)
}

extension String: JSONWritable {
    public func write(to writer: inout JSONWriter) { writer.string(self) }
}

extension JSONValue: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.null()
        case .bool(let value): writer.bool(value)
        case .int(let value): writer.int(value)
        case .double(let value): writer.double(value)
        case .string(let value): writer.string(value)
        case .array(let values): writer.array(values)
        case .object(let object):
            writer.beginObject()
            for key in object.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                writer.dynamicKey(key)
                object[key]?.write(to: &writer)
            }
            writer.endObject()
        }
    }
}

extension JSONWriter {
    /// A key known only at run time (escaped like any string).
    public mutating func dynamicKey(_ name: String) {
        string(name)
        buffer.writeInteger(UInt8(ascii: ":"))
        needsComma = false
    }
}

extension JSONResponse {
    /// A JSON response written by `JSONWriter`.
    public static func write(_ value: some JSONWritable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:], capacity: Int = 1024) -> Response {
        bytes(encode(value, capacity: capacity), status: status, headers: headers)
    }

    public static func encode(_ value: some JSONWritable, capacity: Int = 1024) -> ByteBuffer {
        var writer = JSONWriter(capacity: capacity)
        value.write(to: &writer)
        return writer.buffer
    }
}
