import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A route's answer, encoded once: what is sent, and what a replay of an `Idempotency-Key` sends.
public struct RenderedAnswer: Sendable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: ByteBuffer

    public init(status: HTTPResponse.Status, headers: HTTPFields = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ value: some JSONWritable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> RenderedAnswer {
        var headers = headers
        headers[.contentType] = "application/json"
        return RenderedAnswer(status: status, headers: headers, body: JSONResponse.encode(value))
    }

    public static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> RenderedAnswer {
        var headers = headers
        headers[.contentType] = "application/json"
        let data = (try? JSONValue.encoder.encode(value)) ?? Data()
        return RenderedAnswer(status: status, headers: headers, body: ByteBuffer(bytes: data))
    }

    public var response: Response {
        Response(status: status, headers: headers, body: body.readableBytes == 0 ? .init() : .init(byteBuffer: body))
    }
}

/// The answer of one request that carries an `Idempotency-Key`, on its way to the database.
///
/// The idempotency middleware claims the key and puts a slot in the task (`current`); the route
/// says how its output becomes an answer (`respond`); the store that commits the request's change
/// renders that answer and stores it **in the same transaction** (`answer(for:)`). So the
/// change and its answer commit together: after a crash a retry either finds the answer or finds
/// that nothing was committed, and never runs a committed change twice.
public final class IdempotencySlot: Sendable {
    public let scope: String
    public let key: String
    public let requestHash: String

    private struct State {
        var render: (@Sendable (any Sendable) -> RenderedAnswer?)?
        var stored: RenderedAnswer?
    }

    private let state = Mutex(State())

    @TaskLocal public static var current: IdempotencySlot?

    init(scope: String, key: String, requestHash: String) {
        self.scope = scope
        self.key = key
        self.requestHash = requestHash
    }

    /// The answer that a store saved with the change, if one did.
    public var storedAnswer: RenderedAnswer? { state.withLock { $0.stored } }

    func expect<Output: Sendable>(_ type: Output.Type, render: @escaping @Sendable (Output) -> RenderedAnswer) {
        state.withLock { $0.render = { ($0 as? Output).map(render) } }
    }

    /// The answer `output` renders to and the statement that stores it, for the transaction of
    /// the change that produced it (nil when the route did not say how to render this output).
    /// Once that transaction has committed, the store calls `stored(_:)`.
    public func answer(for output: any Sendable) -> (answer: RenderedAnswer, statement: SQLStatement)? {
        guard let render = state.withLock({ $0.render }), let answer = render(output) else { return nil }
        return (answer, IdempotencyStore.saveStatement(scope: scope, key: key, requestHash: requestHash, answer: answer))
    }

    /// The answer committed with the change: the middleware has nothing left to store.
    public func stored(_ answer: RenderedAnswer) {
        state.withLock { $0.stored = answer }
    }

    /// Runs `produce` (a service call) and renders its output. When the request carries an
    /// `Idempotency-Key`, the store that commits the change stores the rendered answer in the same
    /// transaction. A route whose work is a single store write answers through this.
    public static func respond<Output: Sendable>(
        _ produce: () async throws -> Output, render: @escaping @Sendable (Output) -> RenderedAnswer
    ) async throws -> Response {
        let slot = current
        slot?.expect(Output.self, render: render)
        let output = try await produce()
        if let stored = slot?.storedAnswer { return stored.response }
        return render(output).response
    }
}
