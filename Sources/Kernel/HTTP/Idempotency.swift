import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A stored answer to a POST that carried an `Idempotency-Key`.
public struct IdempotencyRecord: Sendable, Equatable {
    public var scope: String
    public var key: String
    public var requestHash: String
    public var status: Int
    public var contentType: String?
    /// Headers of the first answer that a replay repeats (`Location`, `ETag`).
    public var headers: [String: String] = [:]
    public var body: String
    public var createdAt: Timestamp
    public var expiresAt: Timestamp
}

/// The `idempotency_keys` table (kernel migration 2).
public struct IdempotencyStore: Sendable {
    let storage: Storage

    public init(storage: Storage) { self.storage = storage }

    public func find(scope: String, key: String, now: Timestamp) async throws -> IdempotencyRecord? {
        let rows = try await storage.query(
            """
            SELECT request_hash, status, content_type, body, created_at, expires_at, headers
            FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND expires_at > ?
            """,
            [.text(scope), .text(key), .int(now.milliseconds)])
        return try rows.first.map { row in
            IdempotencyRecord(
                scope: scope, key: key, requestHash: try row.string(0), status: Int(try row.int(1)),
                contentType: try row.optionalString(2), headers: Self.headers(from: try row.optionalString(6)), body: try row.string(3),
                createdAt: Timestamp(milliseconds: try row.int(4)), expiresAt: Timestamp(milliseconds: try row.int(5)))
        }
    }

    public func save(_ record: IdempotencyRecord) async throws {
        // An expired record with the same key is replaced; a live one is never overwritten.
        try await storage.write([
            SQLStatement(
                """
                INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, content_type, body, created_at, expires_at, headers)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (scope, idem_key) DO UPDATE SET
                    request_hash = excluded.request_hash, status = excluded.status,
                    content_type = excluded.content_type, body = excluded.body, headers = excluded.headers,
                    created_at = excluded.created_at, expires_at = excluded.expires_at
                WHERE idempotency_keys.expires_at <= excluded.created_at
                """,
                [
                    .text(record.scope), .text(record.key), .text(record.requestHash), .int(Int64(record.status)),
                    SQLValue(record.contentType), .text(record.body), .int(record.createdAt.milliseconds),
                    .int(record.expiresAt.milliseconds),
                    record.headers.isEmpty ? .null : .text(JSONValue.object(record.headers.mapValues(JSONValue.string)).canonicalText()),
                ])
        ])
    }

    @discardableResult
    public func purgeExpired(now: Timestamp) async throws -> Int {
        let expired = try await storage.query("SELECT COUNT(*) FROM idempotency_keys WHERE expires_at <= ?", [.int(now.milliseconds)])
        try await storage.write([SQLStatement("DELETE FROM idempotency_keys WHERE expires_at <= ?", [.int(now.milliseconds)])])
        return Int(try expired.first?.int(0) ?? 0)
    }

    static func headers(from text: String?) -> [String: String] {
        guard let text, case .object(let object) = JSONValue.parse(text) else { return [:] }
        return object.compactMapValues { if case .string(let value) = $0 { value } else { nil } }
    }

    public static let migrations = [migration, headersMigration]

    static let headersMigration = Migration(
        version: 3, name: "idempotency keys replay headers",
        shared: ["ALTER TABLE idempotency_keys ADD COLUMN headers TEXT"])

    static let migration = Migration(
        version: 2, name: "idempotency keys",
        shared: [
            """
            CREATE TABLE idempotency_keys (
                scope TEXT NOT NULL,
                idem_key TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                status INTEGER NOT NULL,
                content_type TEXT,
                body TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (scope, idem_key)
            )
            """,
            "CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at)",
        ])
}

/// `Idempotency-Key` on every POST: the same key with the same request replays the first answer
/// (with `Idempotent-Replayed: true`); the same key with another request is a 422; the same key
/// while the first request is still running is a 409. Keys are scoped by caller and live 24 h.
///
/// Known limit: the answer is stored in its own transaction just after the request's, so a crash
/// between the two lets a retry run again (services keep their writes idempotent where it matters:
/// delivering twice counts once).
public struct IdempotencyMiddleware: RouterMiddleware {
    public typealias Context = SessiondRequestContext
    let store: IdempotencyStore
    let clock: WallClock
    let lifetime: Int64
    let problems: ProblemMiddleware
    private let inFlight = InFlightKeys()

    public init(store: IdempotencyStore, clock: WallClock, routes: RouteRegistry, lifetimeSeconds: Int64 = 86_400) {
        self.store = store
        self.clock = clock
        self.lifetime = lifetimeSeconds * 1000
        self.problems = ProblemMiddleware(routes: routes)
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, let key = request.headers[.idempotencyKey] else {
            return try await next(request, context)
        }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw Problem.validation("Idempotency-Key", "Idempotency-Key must be 1 to 255 visible ASCII characters.")
        }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let hash = Self.fingerprint(method: request.method.rawValue, path: request.uri.description, body: body)
        let scope = context.caller.id ?? "anonymous"

        // Claim first, then look up once: whoever held the key before has stored its answer.
        guard inFlight.claim(scope + "\u{0}" + key) else {
            throw Problem.conflict("idempotency-key-in-flight", "A request with this Idempotency-Key is still being processed; retry shortly.")
        }
        defer { inFlight.release(scope + "\u{0}" + key) }
        if let answer = try await replay(scope: scope, key: key, hash: hash) { return answer }

        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = problems.render(error, request: request, context: context)
        }
        guard response.status.code < 500 else { return response }
        let collector = BodyCollector()
        try await response.body.write(collector)
        let bytes = collector.buffer
        let now = clock.now()
        do {
            try await store.save(
                IdempotencyRecord(
                    scope: scope, key: key, requestHash: hash, status: Int(response.status.code),
                    contentType: response.headers[.contentType], headers: Self.replayedHeaders(response.headers),
                    body: String(buffer: bytes), createdAt: now,
                    expiresAt: Timestamp(milliseconds: now.milliseconds + lifetime)))
        } catch {
            // The request itself has committed: its answer is true and is what the client gets. A
            // retry with this key will run again (the same window as a crash at this point).
            context.logger.warning("could not store the idempotent answer", metadata: ["error": "\(error)"])
        }
        response.body = .init(byteBuffer: bytes)
        return response
    }

    private func replay(scope: String, key: String, hash: String) async throws -> Response? {
        guard let record = try await store.find(scope: scope, key: key, now: clock.now()) else { return nil }
        guard record.requestHash == hash else {
            throw Problem(
                status: .unprocessableContent, slug: "idempotency-key-reused", title: "Idempotency-Key reused",
                detail: "This Idempotency-Key was used for a different request; use a new key.", field: "Idempotency-Key")
        }
        var headers: HTTPFields = [.idempotentReplayed: "true"]
        if let contentType = record.contentType { headers[.contentType] = contentType }
        for (name, value) in record.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: record.status), headers: headers,
            body: record.body.isEmpty ? .init() : .init(byteBuffer: ByteBuffer(string: record.body)))
    }

    static func replayedHeaders(_ headers: HTTPFields) -> [String: String] {
        var kept: [String: String] = [:]
        for name in [HTTPField.Name.location, .eTag] {
            if let value = headers[name] { kept[name.canonicalName] = value }
        }
        return kept
    }

    static func fingerprint(method: String, path: String, body: ByteBuffer) -> String {
        var hasher = SHA256()
        hasher.update(data: Array("\(method) \(path)\n".utf8))
        hasher.update(data: Array(body.readableBytesView))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

final class InFlightKeys: Sendable {
    private let keys = Mutex<Set<String>>([])
    func claim(_ key: String) -> Bool { keys.withLock { $0.insert(key).inserted } }
    func release(_ key: String) { _ = keys.withLock { $0.remove(key) } }
}

/// Collects a response body so that it can be stored and sent again.
final class BodyCollector: ResponseBodyWriter, Sendable {
    private let storage = Mutex(ByteBuffer())
    var buffer: ByteBuffer { storage.withLock { $0 } }
    func write(_ buffer: ByteBuffer) async throws {
        storage.withLock { stored in
            var incoming = buffer
            stored.writeBuffer(&incoming)
        }
    }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
