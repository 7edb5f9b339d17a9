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
    /// Set while the request that claimed the key is still running.
    public var claimedUntil: Timestamp?

    public var isClaim: Bool { status == 0 }
}

/// The `idempotency_keys` table (kernel migration 2).
public struct IdempotencyStore: Sendable {
    let storage: Storage

    public init(storage: Storage) { self.storage = storage }

    /// The record for this key: an answer (`status` > 0) or a claim of a request still running
    /// (`status` 0, until `claimedUntil`).
    public func find(scope: String, key: String, now: Timestamp) async throws -> IdempotencyRecord? {
        let rows = try await storage.query(
            """
            SELECT request_hash, status, content_type, body, created_at, expires_at, headers, claimed_until
            FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND expires_at > ?
            """,
            [.text(scope), .text(key), .int(now.milliseconds)])
        return try rows.first.map { row in
            IdempotencyRecord(
                scope: scope, key: key, requestHash: try row.string(0), status: Int(try row.int(1)),
                contentType: try row.optionalString(2), headers: Self.headers(from: try row.optionalString(6)), body: try row.string(3),
                createdAt: Timestamp(milliseconds: try row.int(4)), expiresAt: Timestamp(milliseconds: try row.int(5)),
                claimedUntil: try row.optionalInt(7).map(Timestamp.init(milliseconds:)))
        }
    }

    /// Claims the key for a request about to run, in the database, so that no other request (on
    /// this server or another on the same database) runs the same keyed request meanwhile. Returns
    /// false when someone else holds a live claim or an answer. An expired record, or a claim whose
    /// server died before it answered (past `claimedUntil`), is taken over.
    public func claim(scope: String, key: String, requestHash: String, now: Timestamp, lifetime: Int64, claimFor: Int64) async throws -> Bool {
        do {
            try await storage.write([
                SQLStatement(
                    """
                    INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, content_type, body, created_at, expires_at, headers, claimed_until)
                    VALUES (?, ?, ?, 0, NULL, '', ?, ?, NULL, ?)
                    ON CONFLICT (scope, idem_key) DO UPDATE SET
                        request_hash = excluded.request_hash, status = 0, content_type = NULL, body = '', headers = NULL,
                        created_at = excluded.created_at, expires_at = excluded.expires_at, claimed_until = excluded.claimed_until
                    WHERE idempotency_keys.expires_at <= excluded.created_at
                       OR (idempotency_keys.status = 0 AND idempotency_keys.claimed_until <= excluded.created_at)
                    """,
                    [
                        .text(scope), .text(key), .text(requestHash), .int(now.milliseconds), .int(now.milliseconds + lifetime),
                        .int(now.milliseconds + claimFor),
                    ], expectedChanges: 1)
            ])
            return true
        } catch StorageError.conflict {
            return false
        }
    }

    /// The statement that turns this request's claim into its answer. It changes nothing when the
    /// claim is no longer this request's (it expired and another request took it over).
    static func saveStatement(
        scope: String, key: String, requestHash: String, status: Int, contentType: String?, headers: [String: String], body: String
    ) -> SQLStatement {
        SQLStatement(
            """
            UPDATE idempotency_keys SET status = ?, content_type = ?, body = ?, headers = ?, claimed_until = NULL
            WHERE scope = ? AND idem_key = ? AND status = 0 AND request_hash = ?
            """,
            [
                .int(Int64(status)), SQLValue(contentType), .text(body),
                headers.isEmpty ? .null : .text(JSONValue.object(headers.mapValues(JSONValue.string)).canonicalText()),
                .text(scope), .text(key), .text(requestHash),
            ])
    }

    /// The statement that stores `answer`. An answer marked `no-store` holds a secret (a new API
    /// key, a login link): sessiond keeps only hashes of those, so what is stored for the replay
    /// is a 409 `idempotency-answer-withheld` that says the request succeeded and, through
    /// `Location`, what it made.
    static func saveStatement(scope: String, key: String, requestHash: String, answer: RenderedAnswer) -> SQLStatement {
        let withheld = answer.status.code < 300 && (answer.headers[.cacheControl]?.contains("no-store") ?? false)
        return saveStatement(
            scope: scope, key: key, requestHash: requestHash, status: withheld ? 409 : Int(answer.status.code),
            contentType: withheld ? "application/problem+json" : answer.headers[.contentType],
            headers: IdempotencyMiddleware.replayedHeaders(answer.headers),
            body: withheld ? IdempotencyMiddleware.withheld(status: Int(answer.status.code)) : String(buffer: answer.body))
    }

    /// Removes every stored answer whose body holds `text` (erasing a person: an answer that
    /// named them is not replayed afterwards; a retry with its key runs again).
    public static func eraseAnswers(containing text: String) -> SQLStatement {
        SQLStatement("DELETE FROM idempotency_keys WHERE body LIKE ? ESCAPE '!'", [.text(SQLLike.containing(text))])
    }

    /// Stores the answer of the claimed request.
    func save(scope: String, key: String, requestHash: String, answer: RenderedAnswer) async throws {
        try await storage.write([Self.saveStatement(scope: scope, key: key, requestHash: requestHash, answer: answer)])
    }

    /// Gives a claim up (the request failed with a 5xx): a retry may run it again.
    public func release(scope: String, key: String, requestHash: String) async throws {
        try await storage.write([
            SQLStatement(
                "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND status = 0 AND request_hash = ?",
                [.text(scope), .text(key), .text(requestHash)])
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

    public static let migrations = [migration, headersMigration, claimMigration]

    static let claimMigration = Migration(
        version: 4, name: "idempotency keys claimed in the database",
        shared: ["ALTER TABLE idempotency_keys ADD COLUMN claimed_until BIGINT"])

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
/// while the first request is still running is a 409. Keys are scoped to the principal and live
/// 24 h. A key is claimed in the database before the request runs, so two servers on one database
/// never both run one keyed request.
///
/// A route that answers through `IdempotencySlot.respond` has its answer stored by the store in the
/// transaction of its change, so a crash cannot separate the two. Any other answer (a refusal, a
/// route that writes no aggregate) is stored here after the request, in its own transaction; a
/// crash between the two leaves a claim that expires after `claimSeconds`.
public struct IdempotencyMiddleware: RouterMiddleware {
    public typealias Context = SessiondRequestContext
    let store: IdempotencyStore
    let clock: WallClock
    let lifetime: Int64
    let claimFor: Int64
    let problems: ProblemMiddleware

    public init(store: IdempotencyStore, clock: WallClock, routes: RouteRegistry, lifetimeSeconds: Int64 = 86_400, claimSeconds: Int64 = 60) {
        self.store = store
        self.clock = clock
        self.lifetime = lifetimeSeconds * 1000
        self.claimFor = claimSeconds * 1000
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
        let scope = context.caller.idempotencyScope

        if let answer = try await replay(scope: scope, key: key, hash: hash) { return answer }
        guard try await store.claim(scope: scope, key: key, requestHash: hash, now: clock.now(), lifetime: lifetime, claimFor: claimFor) else {
            // Someone claimed it between the look and the claim: answer as they would be answered.
            if let answer = try await replay(scope: scope, key: key, hash: hash) { return answer }
            throw Self.inFlight
        }

        let slot = IdempotencySlot(scope: scope, key: key, requestHash: hash)
        var response: Response
        do {
            response = try await IdempotencySlot.$current.withValue(slot) { try await next(request, context) }
        } catch {
            response = problems.render(error, request: request, context: context)
        }
        // Stored with the change, in its transaction.
        if slot.storedAnswer != nil, response.status.code < 500 { return response }
        guard response.status.code < 500 else {
            do { try await store.release(scope: scope, key: key, requestHash: hash) } catch {
                context.logger.warning("could not release an idempotency claim", metadata: ["error": "\(error)"])
            }
            return response
        }
        let collector = BodyCollector()
        try await response.body.write(collector)
        let bytes = collector.buffer
        do {
            try await store.save(
                scope: scope, key: key, requestHash: hash,
                answer: RenderedAnswer(status: response.status, headers: response.headers, body: bytes))
        } catch {
            // The request itself has committed: its answer is true and is what the client gets. A
            // retry with this key will run again once the claim expires (as after a crash here).
            context.logger.warning("could not store the idempotent answer", metadata: ["error": "\(error)"])
        }
        response.body = .init(byteBuffer: bytes)
        return response
    }

    /// The replay of an answer that held a secret.
    static func withheld(status: Int) -> String {
        let problem: JSONValue = [
            "type": .string(Problem.typeBase + "idempotency-answer-withheld"), "title": "Answer withheld", "status": 409,
            "detail": .string(
                "The first request with this Idempotency-Key succeeded (\(status)), but its answer held a secret that sessiond does not keep, so it cannot be sent again. Location names what it made."),
        ]
        return problem.canonicalText()
    }

    static let inFlight = Problem.conflict(
        "idempotency-key-in-flight", "A request with this Idempotency-Key is still being processed; retry shortly.")

    private func replay(scope: String, key: String, hash: String) async throws -> Response? {
        guard let record = try await store.find(scope: scope, key: key, now: clock.now()) else { return nil }
        guard record.requestHash == hash else {
            throw Problem(
                status: .unprocessableContent, slug: "idempotency-key-reused", title: "Idempotency-Key reused",
                detail: "This Idempotency-Key was used for a different request; use a new key.", field: "Idempotency-Key")
        }
        if record.isClaim {
            // A live claim is a request still running; an abandoned one is taken over by `claim`.
            if let until = record.claimedUntil, until > clock.now() { throw Self.inFlight }
            return nil
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

    public static func fingerprint(method: String, path: String, body: ByteBuffer) -> String {
        var hasher = SHA256()
        hasher.update(data: Array("\(method) \(path)\n".utf8))
        hasher.update(data: Array(body.readableBytesView))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
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
