import HTTPTypes
import Foundation
import Hummingbird
import HummingbirdTesting
import Kernel
import NIOCore
import SessiondApp
import Synchronization
import Testing

/// The admin key every test server is configured with; `send` uses it unless a request names
/// its own credential (or asks for none with `TestAuth.none`).
enum TestAuth {
    static let adminKey = "test-admin-key-0123456789-abcdefghijklmnop"
    static let admin: HTTPFields = [.authorization: "Bearer \(adminKey)"]
    /// Sends the request with no credential at all.
    static let none: HTTPFields = [noKey: "1"]
    static let noKey = HTTPField.Name("X-Test-No-Key")!

    static func bearer(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }
}

/// Builds the real application (the same composition root as `sessiond serve`) on a fresh database.
///
/// Once the test's body has ended (returned or thrown), the application's shutdown gets 30 s: a shutdown still
/// running then is recorded as a warning naming the test and left behind, so that one stuck
/// service cannot hang the whole run (CI once ran out of its 90 minutes that way).
func withApp<T: Sendable>(
    _ framework: TestingSetup = .router, clock: WallClock = .system,
    configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (any TestClientProtocol, DatabaseLocation) async throws -> T,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> T {
    let location = try await TestDatabase.make()
    let app = try testApplication(on: location, clock: clock, configure: configure)
    let run = AppRun<T>()
    Task {
        do {
            let value = try await app.test(framework) { client in
                do {
                    let value = try await body(client, location)
                    run.bodyEnded(.success(value))
                    return value
                } catch {
                    run.bodyEnded(.failure(error))
                    throw error
                }
            }
            run.finish(.success(value))
        } catch {
            run.finish(.failure(error))
        }
    }
    var shutdownStarted: ContinuousClock.Instant?
    while true {
        if let outcome = run.outcome {
            await TestDatabase.drop(location)
            return try outcome.get()
        }
        if let ended = run.bodyOutcome {
            let started = shutdownStarted ?? ContinuousClock.now
            shutdownStarted = started
            if ContinuousClock.now - started > .seconds(30) {
                Issue.record("the application's shutdown did not end within 30 s of the test's end; left running", severity: .warning, sourceLocation: sourceLocation)
                return try ended.get()
            }
        }
        try? await Task.sleep(for: .milliseconds(50))
    }
}

/// What a test application's run came to: the body's end (its value or error) as soon as it
/// ended, then the whole run's end.
final class AppRun<T: Sendable>: Sendable {
    private struct State {
        var bodyOutcome: Result<T, any Error>?
        var outcome: Result<T, any Error>?
    }
    private let state = Mutex(State())
    var bodyOutcome: Result<T, any Error>? { state.withLock { $0.bodyOutcome } }
    var outcome: Result<T, any Error>? { state.withLock { $0.outcome } }
    func bodyEnded(_ outcome: Result<T, any Error>) { state.withLock { $0.bodyOutcome = outcome } }
    func finish(_ outcome: Result<T, any Error>) { state.withLock { $0.outcome = outcome } }
}

/// The real composition root on a test database, on any free port, logging errors only. Rate
/// limits are off unless a test turns them on; a PostgreSQL pool holds at most 4 connections.
func testApplication(
    on location: DatabaseLocation, clock: WallClock = .system, configure: (inout ServerConfiguration) -> Void = { _ in }
) throws -> some ApplicationProtocol {
    var configuration = ServerConfiguration(database: location, logLevel: .error)
    configuration.port = 0
    configuration.access.adminKey = TestAuth.adminKey
    configuration.access.rateLimitPerSecond = 0
    configuration.access.authFailuresPerSecond = 0
    // Every test runs at once against one PostgreSQL (100 connections by default): a small pool each.
    configuration.databasePoolSize = 4
    configure(&configuration)
    return try buildApplication(configuration, clock: clock, logger: TestDatabase.logger)
}

/// Another server (its own caches, the same composition root) on a database a test already uses.
func withSecondServer<T>(
    on location: DatabaseLocation, clock: WallClock = .system, configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @Sendable (any TestClientProtocol) async throws -> T
) async throws -> T {
    try await testApplication(on: location, clock: clock, configure: configure).test(.router) { client in try await body(client) }
}

extension TestClientProtocol {
    @discardableResult
    func send(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, headers: HTTPFields = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> TestResponse {
        var headers = headers
        if json != nil { headers[.contentType] = "application/json" }
        if headers[TestAuth.noKey] != nil {
            headers[TestAuth.noKey] = nil
        } else if headers[.authorization] == nil, headers[HTTPField.Name("X-API-Key")!] == nil, headers[.cookie] == nil {
            headers[.authorization] = "Bearer \(TestAuth.adminKey)"
        }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    /// Sends, checks the status, and returns the body as JSON.
    @discardableResult
    func json(
        _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, expect status: HTTPResponse.Status = .ok,
        headers: HTTPFields = [:], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> JSONValue {
        let response = try await send(method, uri, json: body, headers: headers)
        let text = String(buffer: response.body)
        #expect(response.status == status, "\(method) \(uri) → \(response.status.code): \(text)", sourceLocation: sourceLocation)
        if text.isEmpty { return .null }
        return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}

extension JSONValue {
    subscript(index: Int) -> JSONValue? {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return nil
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var int: Int64? { if case .int(let value) = self { value } else { nil } }
    var double: Double? {
        switch self {
        case .double(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }
    var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    var array: [JSONValue] { if case .array(let value) = self { value } else { [] } }
    var isNull: Bool { self == .null }
}

/// JSON text from a literal-ish dictionary, for request bodies.
func body(_ value: JSONValue) -> String { value.canonicalText() }
