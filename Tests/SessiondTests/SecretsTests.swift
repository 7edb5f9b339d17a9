import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Logging
import SessiondApp
import Synchronization
import Testing

/// Keeps every log line a test server writes, at trace level, as text.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    var logger: Logger {
        var logger = Logger(label: "sessiond-captured") { label in Handler(label: label, sink: self) }
        logger.logLevel = .trace
        return logger
    }

    struct Handler: LogHandler {
        let label: String
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
            sink.append("\(event.level) \(label) \(event.message) \(merged)")
        }
    }
}

@Suite("Secrets stay secret")
struct SecretsTests {
    @Test("no key, login token or cookie reaches a log line, an audit, a listing or an error")
    func noSecretLeaks() async throws {
        let logs = CapturedLogs()
        let location = try await TestDatabase.make()
        var configuration = ServerConfiguration(database: location, logLevel: .trace)
        configuration.port = 0
        configuration.access.adminKey = TestAuth.adminKey
        configuration.access.rateLimitPerSecond = 0
        configuration.access.authFailuresPerSecond = 0
        configuration.access.publicBaseURL = "http://sessiond.test"
        let app = try buildApplication(configuration, logger: logs.logger)
        let collected = try await app.test(.router) { client -> (secrets: [String], answers: String) in
            var secrets = [TestAuth.adminKey]
            var answers = ""
            let created = try await client.json(.post, "/api/keys", #"{"name":"s","role":"owner","user_id":"maria"}"#, expect: .created)
            let first = created["key"]!.string!
            secrets.append(first)
            try await client.json(.get, "/api/auth/whoami", headers: [HTTPField.Name("X-API-Key")!: first])
            try await client.json(
                .post, "/api/sessions/create", #"{"user_id":"maria"}"#, expect: .created, headers: [.authorization: "Bearer \(first)", .idempotencyKey: "once"])
            let rotated = try await client.json(.post, "/api/keys/\(created["key_id"]!.string!)/rotate", expect: .created)
            secrets.append(rotated["key"]!.string!)
            // Refused credentials: the revoked key, a typo of the live one, an unknown cookie.
            let second = rotated["key"]!.string!
            for headers: HTTPFields in [
                TestAuth.bearer(first), TestAuth.bearer(String(second.dropLast()) + (second.hasSuffix("x") ? "y" : "x")), [.cookie: "sessiond_session=" + String(repeating: "Q", count: 43)],
            ] {
                let refused = try await client.send(.get, "/api/sessions/user/maria", headers: headers)
                #expect(refused.status == .unauthorized)
                answers += String(buffer: refused.body)
            }
            let link = try await client.json(.post, "/api/auth/login-links", #"{"user_id":"maria"}"#, expect: .created)
            let url = link["url"]!.string!
            let token = String(url[url.range(of: "token=")!.upperBound...])
            secrets.append(token)
            let login = try await client.send(.get, "/auth/login?token=\(token)", headers: TestAuth.none)
            let cookie = String(login.headers[.setCookie]!.prefix { $0 != ";" })
            secrets.append(String(cookie.dropFirst("sessiond_session=".count)))
            answers += String(buffer: try await client.send(.get, "/api/auth/whoami", headers: [.cookie: cookie]).body)
            answers += String(buffer: try await client.send(.get, "/auth/login?token=\(token)", headers: TestAuth.none).body)
            answers += String(buffer: try await client.send(.get, "/api/auth/sessions", headers: [.cookie: cookie]).body)
            answers += String(buffer: try await client.send(.get, "/api/keys").body)
            answers += String(buffer: try await client.send(.get, "/api/audits?limit=500").body)
            return (secrets, answers)
        }
        await TestDatabase.drop(location)
        let logText = logs.text
        #expect(logText.contains("/api/keys"), "the capture saw the requests")
        for secret in collected.secrets {
            #expect(!logText.contains(secret), "a secret reached the log")
            #expect(!collected.answers.contains(secret), "a secret reached a response after its creation")
        }
    }
}

extension SecretsTests {
    /// A keyed request's answer is kept for replays, but a new key's secret (or a login link) is
    /// only ever stored as a hash: the replay says it succeeded and where the key is, without it.
    /// (Before, the answer with the secret sat in idempotency_keys for 24 h.)
    @Test("a replayed key creation withholds the secret, which is never stored for the replay")
    func idempotentKeyCreationKeepsNoSecret() async throws {
        try await withApp { client, location in
            let request = body(["name": "retry", "role": "owner", "user_id": "maria"])
            let first = try await client.send(.post, "/api/keys", json: request, headers: [.idempotencyKey: "key-once"])
            #expect(first.status == .created)
            #expect(first.headers[.cacheControl] == "no-store")
            let created = try JSONDecoder().decode(JSONValue.self, from: Data(String(buffer: first.body).utf8))
            let secret = try #require(created["key"]?.string)

            let replay = try await client.send(.post, "/api/keys", json: request, headers: [.idempotencyKey: "key-once"])
            #expect(replay.status == .conflict)
            #expect(replay.headers[.idempotentReplayed] == "true")
            #expect(replay.headers[.location] == "/api/keys/\(created["key_id"]!.string!)")
            #expect(String(buffer: replay.body).contains("idempotency-answer-withheld"))
            #expect(!String(buffer: replay.body).contains(secret))
            let stored = try await queryRaw("SELECT body FROM idempotency_keys", on: location).map { try $0.string(0) }
            #expect(!stored.isEmpty && stored.allSatisfy { !$0.contains(secret) })
            // One key was made, not two.
            let keys = try await client.json(.get, "/api/keys")["items"]!.array.filter { $0["name"]?.string == "retry" }
            #expect(keys.count == 1)
        }
    }
}
