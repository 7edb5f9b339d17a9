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

    static func register(on router: Router<SessiondRequestContext>, routes: RouteRegistry, delivery: DeliveryService) {
        routes.add(.init(.get, "/metrics", summary: "Prometheus metrics of this process", tag: "system", response: "Metrics", responseMediaType: "text/plain"), to: router) { _, context in
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
