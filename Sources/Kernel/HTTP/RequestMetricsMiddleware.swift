import CoreMetrics
import Hummingbird
import Synchronization

/// Requests by route template (`/api/sessions/{id}`, never the raw path), method and status, as one
/// latency histogram (`sessiond_http_request_duration_seconds`; its `_count` is the number of
/// requests). Hummingbird's own `MetricsMiddleware` records a counter, a timer and an
/// active-requests meter per request, each behind a lock: on `/health` that cost about a fifth of
/// the throughput on this machine, so this records the one histogram, with its handle cached.
public struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    private let timers = Timers()

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            timers.timer(route: context.endpointPath ?? "unknown", method: request.method, status: response.status.code)
                .recordNanoseconds(Self.nanoseconds(since: start))
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            timers.timer(route: context.endpointPath ?? "unknown", method: request.method, status: status)
                .recordNanoseconds(Self.nanoseconds(since: start))
            throw error
        }
    }

    static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        return elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    }

    final class Timers: Sendable {
        struct Key: Hashable {
            var route: String
            var method: HTTPRequest.Method
            var status: Int
        }

        private let cache = Mutex<[Key: Timer]>([:])

        func timer(route: String, method: HTTPRequest.Method, status: Int) -> Timer {
            let key = Key(route: route, method: method, status: status)
            if let timer = cache.withLock({ $0[key] }) { return timer }
            let timer = Timer(
                label: "sessiond_http_request_duration_seconds",
                dimensions: [("route", route), ("method", method.rawValue), ("status", String(status))], preferredDisplayUnit: .seconds)
            cache.withLock { $0[key] = timer }
            return timer
        }
    }
}
