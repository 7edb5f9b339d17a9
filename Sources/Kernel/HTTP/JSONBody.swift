import Foundation
import Hummingbird
import NIOCore

extension Request {
    /// Decodes the JSON body, turning every failure into a problem: 413 over the size limit,
    /// 400 for bytes that are not JSON, 422 naming the field for JSON of the wrong shape.
    public func decodeJSON<T: Decodable>(as type: T.Type, context: SessiondRequestContext) async throws -> T {
        var request = self
        let buffer = try await request.collectBody(upTo: context.maxUploadSize)
        return try JSONBody.decode(type, from: buffer)
    }
}

public enum JSONBody {
    public static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        guard buffer.readableBytes > 0 else {
            throw Problem.malformedBody("The request needs a JSON body.")
        }
        do {
            return try JSONDecoder().decode(type, from: buffer)
        } catch let error as DecodingError {
            throw problem(for: error)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem.malformedBody("The body is not valid JSON.")
        }
    }

    static func problem(for error: DecodingError) -> Problem {
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return .validation(field, "\(field) is required.")
        case .typeMismatch(let expected, let context):
            let field = path(context.codingPath)
            if field.isEmpty { return .malformedBody("The body must be a JSON object.") }
            return .validation(field, "\(field) must be \(describe(expected)).")
        case .valueNotFound(let expected, let context):
            let field = path(context.codingPath)
            return .validation(field, "\(field) must be \(describe(expected)), not null.")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            if field.isEmpty { return .malformedBody("The body is not valid JSON.") }
            return .validation(field, "\(field) is invalid: \(context.debugDescription)")
        @unknown default:
            return .malformedBody("The body could not be read.")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }

    /// `packages[3].barcode` from a coding path.
    public static func path(_ codingPath: [any CodingKey]) -> String {
        var result = ""
        for key in codingPath {
            if let index = key.intValue {
                result += "[\(index)]"
            } else {
                result += result.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return result
    }
}

/// JSON responses. Encoders are made per call: `JSONEncoder` is cheap to make and not thread-safe to share.
public enum JSONResponse {
    public static func encode(_ value: some Encodable) throws -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return ByteBuffer(bytes: try encoder.encode(value))
    }

    public static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        try bytes(encode(value), status: status, headers: headers)
    }

    public static func bytes(_ buffer: ByteBuffer, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
    }
}

extension Request {
    /// A query parameter parsed as a bounded integer, or a 422 naming it.
    public func queryInt(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = uri.queryParameters.get(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw Problem.validation(name, "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound).")
        }
        return value
    }

    public func queryString(_ name: String) -> String? {
        guard let value = uri.queryParameters.get(name), !value.isEmpty else { return nil }
        return value
    }
}

extension KeyedDecodingContainer {
    /// Integer cents. Foundation on Linux reports a fraction such as 12.5 as "not valid JSON" with no
    /// coding path; this reports it as a type mismatch at the key, so the client gets a 422 naming it.
    public func decodeCents(forKey key: Key) throws -> Int64 {
        if let value = try? decode(Int64.self, forKey: key) { return value }
        guard contains(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        throw DecodingError.typeMismatch(Int64.self, .init(codingPath: codingPath + [key], debugDescription: "expected whole cents"))
    }

    public func decodeCentsIfPresent(forKey key: Key) throws -> Int64? {
        guard contains(key), !(try decodeNil(forKey: key)) else { return nil }
        return try decodeCents(forKey: key)
    }
}
