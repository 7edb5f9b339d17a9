import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

@Suite("Metrics")
struct MetricsTests {
    /// The registry is the process's, shared by the tests running beside this one: figures are
    /// checked to be present and at least what this test caused.
    @Test("GET /metrics: requests by route template and status with latency, write batches, events, SSE clients, sessions by status")
    func prometheusText() async throws {
        try await withApp(.live) { client, _ in
            let flow = DeliveryFlow(client: client)
            let id = try await flow.create(user: "metrics-user")
            try await flow.add(id, ["M1"])
            try await client.json(.get, "/api/sessions/\(id)")
            try await client.json(.get, "/api/sessions/does-not-exist", expect: .notFound)
            let stream = try SSEClient(port: try #require(client.port), path: "/api/events/stream", headers: ["Authorization": "Bearer \(TestAuth.adminKey)"])
            try await stream.waitForHead()

            let response = try await client.send(.get, "/metrics", headers: TestAuth.none)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
            let text = String(buffer: response.body)
            let lines = text.split(separator: "\n").map(String.init)
            func has(_ prefix: String, _ parts: [String] = []) -> Bool {
                lines.contains { line in line.hasPrefix(prefix) && parts.allSatisfy { line.contains($0) } }
            }
            #expect(has("sessiond_http_request_duration_seconds_count", [#"route="/api/sessions/{id}""#, #"status="200""#, #"method="GET""#]))
            #expect(has("sessiond_http_request_duration_seconds_count", [#"route="/api/sessions/{id}""#, #"status="404""#]))
            #expect(has("sessiond_http_request_duration_seconds_bucket", [#"route="/api/sessions/create""#, #"status="201""#, "le="]))
            #expect(has("sessiond_db_write_batches_total"))
            #expect(has("sessiond_db_write_batch_size_bucket", ["le="]))
            #expect(has("sessiond_events_appended_total"))
            #expect(has("sessiond_sse_clients"))
            #expect(has("sessiond_delivery_sessions", [#"status="open""#]))
            let open = lines.first { $0.hasPrefix("sessiond_delivery_sessions") && $0.contains(#"status="open""#) }
            #expect((open?.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 1)
            stream.close()
        }
    }
}
