import Crypto
import Delivery
import Hummingbird
import Kernel
import Metrics
import Prometheus

/// `GET /metrics`: the process's figures in the Prometheus text format. Requests by route
/// template, method and status with a latency histogram (`RequestMetricsMiddleware`), SQLite
/// commit batches and their sizes, events appended, SSE clients connected (recorded as they
/// happen), and sessions by status (counted at each scrape).
enum SessiondMetrics {
    /// One registry per process: swift-metrics has one backend per process, bootstrapped once
    /// however many applications a process builds (the tests build many).
    static let registry = PrometheusCollectorRegistry()

    static let bootstrap: Void = {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10),
        ]
        factory.valueHistogramBuckets["sessiond_db_write_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        MetricsSystem.bootstrap(factory)
    }()

    /// `key`: `METRICS_KEY`; when set, a scrape needs `Authorization: Bearer` it (401 otherwise).
    static func register(on router: Router<SessiondRequestContext>, routes: RouteRegistry, delivery: DeliveryService, key: String?) {
        let expected = key.map { Array(SHA256.hash(data: Array(("Bearer " + $0).utf8))) }
        routes.add(.init(.get, "/metrics", summary: "Prometheus metrics of this process (with METRICS_KEY set: Authorization: Bearer METRICS_KEY)", tag: "system", response: "Metrics", errors: [401], responseMediaType: "text/plain"), to: router) { request, context in
            if let expected {
                // Compared as digests, in constant time: the key's length and bytes stay unknown.
                let given = Array(SHA256.hash(data: Array((request.headers[.authorization] ?? "").utf8)))
                guard zip(given, expected).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else {
                    var problem = Problem(status: .unauthorized, slug: "metrics-key", title: "Metrics key needed", detail: "This server's /metrics needs Authorization: Bearer METRICS_KEY.")
                    problem.headers[.wwwAuthenticate] = "Bearer realm=\"metrics\""
                    throw problem
                }
            }
            do {
                for (status, count) in try await delivery.countsByStatus() {
                    Gauge(label: "sessiond_delivery_sessions", dimensions: [("status", status.rawValue)]).record(count)
                }
            } catch {
                context.logger.warning("metrics could not count sessions", metadata: ["error": "\(error)"])
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16_384)
            registry.emit(into: &bytes)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }
}
