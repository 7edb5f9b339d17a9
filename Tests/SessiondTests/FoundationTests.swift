import HTTPTypes
import Foundation
import HummingbirdTesting
import Kernel
import NIOCore
import SessiondApp
import Testing

@Suite("HTTP foundation")
struct FoundationTests {
    @Test("health and readiness")
    func healthAndReady() async throws {
        try await withApp { client, _ in
            #expect(try await client.json(.get, "/health")["status"]?.string == "ok")
            let ready = try await client.json(.get, "/ready")
            #expect(ready["status"]?.string == "ready")
            #expect(ready["database"]?.string == TestDatabase.backendName)
            #expect(ready["schema_version"] == ready["expected_schema_version"])
        }
    }

    @Test("errors are problem+json: unknown route 404, wrong method 405, bad JSON 400, wrong shape 422, big body 413")
    func problems() async throws {
        try await withApp { client, _ in
            let missing = try await client.send(.get, "/api/nothing-here")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.contentType] == "application/problem+json")
            let wrongMethod = try await client.send(.delete, "/health")
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.headers[.allow] == "GET")
            // `create` is a constant segment: it wins over `{id}`, as it does in the router.
            let getCreate = try await client.send(.get, "/api/sessions/create")
            #expect(getCreate.status == .methodNotAllowed)
            #expect(getCreate.headers[.allow] == "POST")
            let start = try await client.send(.get, "/api/sessions/abc/start")
            #expect(start.status == .methodNotAllowed)
            #expect(start.headers[.allow] == "POST")
            #expect(wrongMethod.headers[.contentType] == "application/problem+json")

            let broken = try await client.json(.post, "/api/sessions/create", "{not json", expect: .badRequest)
            #expect(broken["type"]?.string == Problem.typeBase + "malformed-body")
            #expect(broken["status"]?.int == 400)
            #expect(broken["title"]?.string != nil)
            #expect(broken["detail"]?.string != nil)
            try await client.json(.post, "/api/sessions/create", "[1,2]", expect: .badRequest)
            try await client.json(.post, "/api/sessions/create", nil, expect: .badRequest)

            let missingField = try await client.json(.post, "/api/sessions/create", "{}", expect: .unprocessableContent)
            #expect(missingField["field"]?.string == "user_id")
            #expect(missingField["type"]?.string == Problem.typeBase + "validation")
            let wrongType = try await client.json(.post, "/api/sessions/create", #"{"user_id": 42}"#, expect: .unprocessableContent)
            #expect(wrongType["field"]?.string == "user_id")
            let blank = try await client.json(.post, "/api/sessions/create", #"{"user_id": "  "}"#, expect: .unprocessableContent)
            #expect(blank["field"]?.string == "user_id")

            let huge = "{\"user_id\": \"" + String(repeating: "x", count: 2 << 20) + "\"}"
            let tooLarge = try await client.send(.post, "/api/sessions/create", json: huge)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.headers[.contentType] == "application/problem+json")
        }
    }

    @Test("a request id is echoed, or made when missing")
    func requestID() async throws {
        try await withApp { client, _ in
            let given = try await client.send(.get, "/health", headers: [.requestID: "abc-123"])
            #expect(given.headers[.requestID] == "abc-123")
            let made = try await client.send(.get, "/health")
            #expect((made.headers[.requestID]?.count ?? 0) >= 32)
            let error = try await client.send(.get, "/api/sessions/unknown-id", headers: [.requestID: "err-1"])
            #expect(error.headers[.requestID] == "err-1")
        }
    }

    @Test("Idempotency-Key replays the first answer; the same key with another body is a 422")
    func idempotency() async throws {
        try await withApp { client, _ in
            let key: HTTPFields = [.idempotencyKey: "create-once-1"]
            let first = try await client.send(.post, "/api/sessions/create", json: #"{"user_id":"idem"}"#, headers: key)
            let second = try await client.send(.post, "/api/sessions/create", json: #"{"user_id":"idem"}"#, headers: key)
            #expect(first.status == .created)
            #expect(second.status == .created)
            #expect(String(buffer: first.body) == String(buffer: second.body))
            #expect(second.headers[.idempotentReplayed] == "true")
            #expect(first.headers[.location] != nil)
            #expect(second.headers[.location] == first.headers[.location])
            let listing = try await client.json(.get, "/api/sessions/user/idem")
            #expect(listing["items"]!.array.count == 1)

            let other = try await client.json(.post, "/api/sessions/create", #"{"user_id":"someone"}"#, expect: .unprocessableContent, headers: key)
            #expect(other["type"]?.string == Problem.typeBase + "idempotency-key-reused")

            // Errors are replayed too, without running the request again.
            let bad: HTTPFields = [.idempotencyKey: "bad-once"]
            let e1 = try await client.json(.post, "/api/sessions/create", "{}", expect: .unprocessableContent, headers: bad)
            let e2 = try await client.json(.post, "/api/sessions/create", "{}", expect: .unprocessableContent, headers: bad)
            #expect(e1 == e2)

            // A delivery retried with its key is not applied twice.
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let addKey: HTTPFields = [.idempotencyKey: "add-1"]
            let payload = body(["packages": [["barcode": "K1", "value_cents": 10]]])
            let a1 = try await client.json(.post, "/api/sessions/\(id)/packages", payload, headers: addKey)
            let a2 = try await client.json(.post, "/api/sessions/\(id)/packages", payload, headers: addKey)
            #expect(a1 == a2)
            #expect(a2["added"]!.array.count == 1)
            #expect(try await flow.session(id)["audit"]!.array.count == 2)
        }
    }

    /// The answer of a keyed request commits in the transaction of its change: when the answer
    /// cannot be stored, the change is not committed either, so a retry runs it exactly once.
    /// (Before, the change committed and the answer was lost: a retry created a second session.)
    @Test("a keyed change and its stored answer commit together or not at all")
    func idempotentAnswerInTheChangesTransaction() async throws {
        try await withApp { client, location in
            // Lookups and the claim (an INSERT) still work; storing the answer (an UPDATE) fails.
            switch location {
            case .sqlite:
                try await executeRaw(
                    "CREATE TRIGGER refuse_keys BEFORE UPDATE ON idempotency_keys BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
                    on: location)
            case .postgres:
                try await executeRaw(
                    "CREATE FUNCTION refuse_keys() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$",
                    on: location)
                try await executeRaw(
                    "CREATE TRIGGER refuse_keys BEFORE UPDATE ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION refuse_keys()",
                    on: location)
            }
            let request = #"{"user_id":"lost-key"}"#
            let failed = try await client.send(.post, "/api/sessions/create", json: request, headers: [.idempotencyKey: "k-1"])
            #expect(failed.status == .internalServerError)
            #expect(try await client.json(.get, "/api/sessions/user/lost-key")["items"]?.array.count == 0)
            // The same for writes outside the delivery aggregate: a key, a submission.
            let key = try await client.send(
                .post, "/api/keys", json: #"{"name":"lost","role":"owner","user_id":"lost-key"}"#, headers: [.idempotencyKey: "k-2"])
            #expect(key.status == .internalServerError)
            #expect(try await client.json(.get, "/api/keys")["items"]?.array.contains { $0["name"]?.string == "lost" } == false)

            try await executeRaw("DROP TRIGGER refuse_keys" + (location.isPostgres ? " ON idempotency_keys" : ""), on: location)
            let created = try await client.json(.post, "/api/sessions/create", request, expect: .created, headers: [.idempotencyKey: "k-1"])
            let replayed = try await client.send(.post, "/api/sessions/create", json: request, headers: [.idempotencyKey: "k-1"])
            #expect(replayed.headers[.idempotentReplayed] == "true")
            #expect(try JSONDecoder().decode(JSONValue.self, from: Data(String(buffer: replayed.body).utf8)) == created)
            #expect(try await client.json(.get, "/api/sessions/user/lost-key")["items"]?.array.count == 1)
        }
    }

    @Test("GET session carries an ETag; If-None-Match answers 304 until the next write")
    func etag() async throws {
        try await withApp { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create()
            let first = try await client.send(.get, "/api/sessions/\(id)")
            let etag = try #require(first.headers[.eTag])
            let cached = try await client.send(.get, "/api/sessions/\(id)", headers: [.ifNoneMatch: etag])
            #expect(cached.status == .notModified)
            try await flow.add(id, ["E1"])
            let changed = try await client.send(.get, "/api/sessions/\(id)", headers: [.ifNoneMatch: etag])
            #expect(changed.status == .ok)
            #expect(changed.headers[.eTag] != etag)
            let document = try JSONDecoder().decode(JSONValue.self, from: Data(String(buffer: changed.body).utf8))
            #expect(document["packages"]!.array.count == 1)
        }
    }

    @Test("the OpenAPI document describes every route with its schemas")
    func openAPI() async throws {
        try await withApp { client, _ in
            let document = try await client.json(.get, "/openapi.json")
            #expect(document["openapi"]?.string == "3.1.0")
            let paths = try #require(document["paths"])
            let expected: [(String, String)] = [
                ("/api/sessions/create", "post"), ("/api/sessions/{id}/packages", "post"), ("/api/sessions/{id}/reuse", "post"),
                ("/api/sessions/{id}/start", "post"), ("/api/sessions/{id}/delivery/complete", "post"),
                ("/api/sessions/{id}/delivery/fail", "post"), ("/api/sessions/{id}/delivery/pickup", "post"),
                ("/api/sessions/{id}/complete", "post"), ("/api/sessions/{id}", "get"), ("/api/sessions/user/{user_id}", "get"),
                ("/api/sessions/{id}/dashboard", "get"), ("/api/sessions/{id}/pause", "post"), ("/api/sessions/{id}/resume", "post"),
                ("/api/sessions/{id}/archive", "post"), ("/api/sessions/{id}/packages/{package_id}/reassign", "post"),
                ("/api/sessions/{id}/packages/{package_id}", "delete"), ("/api/sessions/{id}/audit", "get"),
                ("/api/sessions/{id}/audit/verify", "get"), ("/health", "get"), ("/ready", "get"),
                ("/api/keys", "post"), ("/api/keys", "get"), ("/api/keys/{key_id}/revoke", "post"), ("/api/keys/{key_id}/rotate", "post"),
                ("/api/auth/login-links", "post"), ("/auth/login", "get"), ("/api/auth/whoami", "get"), ("/api/auth/sessions", "get"),
                ("/api/auth/sessions/{session_id}/revoke", "post"), ("/api/auth/sessions/revoke-others", "post"),
                ("/api/auth/logout", "post"), ("/api/audits", "get"), ("/api/submissions", "post"), ("/api/submissions/{id}", "get"),
                ("/api/submissions", "get"), ("/api/channels", "post"), ("/api/channels/{id}/connect", "post"), ("/api/channels/{id}/status", "get"),
                ("/api/channels/{id}/invites/{invite_id}/qr.png", "get"), ("/telegram/webhook/{channel_id}", "post"),
            ]
            for (path, method) in expected {
                #expect(paths[path]?[method] != nil, "\(method) \(path) missing")
            }
            let schemas = try #require(document["components"]?["schemas"])
            #expect(schemas["Session"]?["properties"]?["financial_snapshot"] != nil)
            #expect(paths["/api/sessions/create"]?["post"]?["requestBody"] != nil)
            // Every /api/ operation needs a credential and says so; the system routes do not.
            guard case .object(let byPath) = paths else { return }
            for (path, operations) in byPath {
                guard case .object(let byMethod) = operations else { continue }
                for (method, operation) in byMethod {
                    let security = operation["security"]?.array ?? []
                    if path.hasPrefix("/api/") {
                        #expect(security.count == 3, "\(method) \(path) security")
                        for status in ["401", "403", "429"] { #expect(operation["responses"]?[status] != nil, "\(method) \(path) \(status)") }
                    } else {
                        #expect(security.isEmpty, "\(method) \(path) is public")
                    }
                }
            }
            #expect(document["components"]?["securitySchemes"]?["bearerAuth"]?["scheme"]?.string == "bearer")
            #expect(document["components"]?["securitySchemes"]?["apiKeyHeader"]?["name"]?.string == "X-API-Key")
        }
    }
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test("flags win over environment, which wins over defaults")
    func precedence() throws {
        let defaults = try ServerConfiguration.resolve(flags: .init(), environment: [:])
        #expect(defaults.port == 8080)
        #expect(defaults.database == .sqlite(path: "./data/sessiond.sqlite"))
        let fromEnvironment = try ServerConfiguration.resolve(flags: .init(), environment: ["PORT": "9000", "DATABASE_URL": "sqlite:/tmp/x.sqlite"])
        #expect(fromEnvironment.port == 9000)
        #expect(fromEnvironment.database == .sqlite(path: "/tmp/x.sqlite"))
        let fromFlags = try ServerConfiguration.resolve(flags: .init(port: 7000, database: "postgres://u:p@db:5433/app"), environment: ["PORT": "9000"])
        #expect(fromFlags.port == 7000)
        guard case .postgres(let location) = fromFlags.database else {
            Issue.record("expected postgres")
            return
        }
        #expect(location.host == "db" && location.port == 5433 && location.database == "app" && location.username == "u" && location.password == "p")
    }

    @Test("access settings: a short ADMIN_API_KEY is refused without echoing it; limits and URLs parsed")
    func accessSettings() throws {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(flags: .init(), environment: ["ADMIN_API_KEY": "too-short-secret"])
        }
        do {
            _ = try ServerConfiguration.resolve(flags: .init(), environment: ["ADMIN_API_KEY": "too-short-secret", "PUBLIC_BASE_URL": "ftp://x", "RATE_LIMIT_PER_SECOND": "fast"])
        } catch {
            #expect(error.problems.count == 3)
            #expect(!error.problems.joined().contains("too-short-secret"))
        }
        let resolved = try ServerConfiguration.resolve(flags: .init(), environment: [
            "ADMIN_API_KEY": String(repeating: "k", count: 32), "PUBLIC_BASE_URL": "https://ops.example/", "RATE_LIMIT_PER_SECOND": "0",
            "LOGIN_IDLE_TIMEOUT": "900", "SUBMISSION_LEASE_SECONDS": "5",
        ])
        #expect(resolved.access.adminKey?.count == 32)
        #expect(resolved.access.publicBaseURL == "https://ops.example")
        #expect(resolved.access.rateLimitPerSecond == 0)
        #expect(resolved.access.loginIdleTimeoutSeconds == 900)
        #expect(resolved.access.submissionLeaseSeconds == 5)
    }

    @Test("every bad value is reported at once, without leaking passwords")
    func errorsTogether() throws {
        do {
            _ = try ServerConfiguration.resolve(flags: .init(logLevel: "loud"), environment: ["PORT": "eighty", "DATABASE_URL": "mysql://u:secret@h/db"])
            Issue.record("expected an error")
        } catch {
            #expect(error.problems.count == 3)
            #expect(!error.description.contains("secret"))
        }
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test("RFC 3339 round trip, with zones and before 1970")
    func roundTrip() {
        for millis: Int64 in [0, 1_795_000_000_123, 951_782_400_000, -1, -86_400_001, 253_402_300_799_999] {
            let text = Timestamp(milliseconds: millis).rfc3339
            #expect(Timestamp(rfc3339: text)?.milliseconds == millis, "\(text)")
        }
        #expect(Timestamp(milliseconds: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(milliseconds: 951_782_400_000).rfc3339 == "2000-02-29T00:00:00.000Z")
        #expect(Timestamp(rfc3339: "2026-11-25T10:00:00-03:00")?.rfc3339 == "2026-11-25T13:00:00.000Z")
        #expect(Timestamp(rfc3339: "2026-11-25") == nil)
        #expect(Timestamp(rfc3339: "2026-13-25T10:00:00Z") == nil)
        // Found by fuzzing POST /api/keys: more than three fraction digits crashed the parser.
        #expect(Timestamp(rfc3339: "0423-02-09T14:14:30.827557Z")?.rfc3339 == "0423-02-09T14:14:30.827Z")
        #expect(Timestamp(rfc3339: "2026-11-25T10:00:00.123456789+01:00")?.rfc3339 == "2026-11-25T09:00:00.123Z")
        #expect(Timestamp(rfc3339: "2026-11-25T10:00:00.5Z")?.rfc3339 == "2026-11-25T10:00:00.500Z")
    }

    @Test("IDs sort in creation order")
    func idsAreOrdered() {
        let ids = IDGenerator()
        let made = (0..<5000).map { _ in ids.make() }
        #expect(made == made.sorted())
        #expect(Set(made).count == made.count)
        #expect(made[0].count == 36)
    }
}
