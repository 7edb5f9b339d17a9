import Foundation
import Hummingbird
import NIOCore

/// An RFC 9457 problem: every error a client sees is one of these, as `application/problem+json`.
///
/// `type` is stable (clients branch on it), `detail` is for people, `field` names the offending
/// input for validation errors (a dotted path such as `packages[3].barcode`).
public struct Problem: Error, HTTPResponseError, Sendable {
    public static let typeBase = "https://sessiond.dev/problems/"

    public var status: HTTPResponse.Status
    public var slug: String
    public var title: String
    public var detail: String
    public var field: String?
    public var headers: HTTPFields = [:]
    public var extensions: [String: JSONValue] = [:]

    public init(status: HTTPResponse.Status, slug: String, title: String, detail: String, field: String? = nil) {
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.field = field
    }

    public var type: String { Self.typeBase + slug }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    public func response() -> Response {
        var object: [String: JSONValue] = extensions
        object["type"] = .string(type)
        object["title"] = .string(title)
        object["status"] = .int(Int64(status.code))
        object["detail"] = .string(detail)
        if let field { object["field"] = .string(field) }
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        let body = (try? JSONValue.encoder.encode(JSONValue.object(object))) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension Problem {
    public static func validation(_ field: String, _ detail: String) -> Problem {
        Problem(status: .unprocessableContent, slug: "validation", title: "Invalid field", detail: detail, field: field)
    }

    public static func malformedBody(_ detail: String) -> Problem {
        Problem(status: .badRequest, slug: "malformed-body", title: "Malformed request body", detail: detail)
    }

    public static func notFound(_ detail: String) -> Problem {
        Problem(status: .notFound, slug: "not-found", title: "Not found", detail: detail)
    }

    public static func conflict(_ slug: String, _ detail: String, title: String = "Conflict") -> Problem {
        Problem(status: .conflict, slug: slug, title: title, detail: detail)
    }

    public static let internalError = Problem(
        status: .internalServerError, slug: "internal", title: "Internal server error",
        detail: "The server failed to answer this request; it has been logged with the request id.")
}
