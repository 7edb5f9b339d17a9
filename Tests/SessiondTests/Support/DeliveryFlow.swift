import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// Short steps of a delivery session, over HTTP.
struct DeliveryFlow {
    let client: any TestClientProtocol

    func create(user: String = "owner-1", name: String? = "Lote") async throws -> String {
        var payload: [String: JSONValue] = ["user_id": .string(user)]
        if let name { payload["name"] = .string(name) }
        let session = try await client.json(.post, "/api/sessions/create", body(.object(payload)), expect: .created)
        return try #require(session["session_id"]?.string)
    }

    /// Adds packages with the given barcodes (value 1000 + index cents, alternating two addresses).
    @discardableResult
    func add(_ sessionID: String, _ barcodes: [String], value: (Int) -> Int64 = { 1000 + Int64($0) }) async throws -> JSONValue {
        let packages: [JSONValue] = barcodes.enumerated().map { index, barcode in
            [
                "barcode": .string(barcode), "value_cents": .int(value(index)), "recipient": .string("Cliente \(index)"),
                "address": ["street": .string(index % 2 == 0 ? "Rua das Flores" : "Avenida Brasil"), "number": .string(String(index % 3)), "city": "São Paulo", "state": "SP"],
            ]
        }
        return try await client.json(.post, "/api/sessions/\(sessionID)/packages", body(["packages": .array(packages)]))
    }

    func start(_ sessionID: String, deliverers: [String], base: Int64 = 5000, commission: Int64 = 250, assignments: [String: String] = [:]) async throws -> JSONValue {
        let list: [JSONValue] = deliverers.map {
            ["deliverer_id": .string($0), "name": .string("Entregador \($0)"), "base_salary_cents": .int(base), "commission_per_delivery_cents": .int(commission)]
        }
        var payload: [String: JSONValue] = ["deliverers": .array(list)]
        if !assignments.isEmpty { payload["assignments"] = .object(assignments.mapValues(JSONValue.string)) }
        return try await client.json(.post, "/api/sessions/\(sessionID)/start", body(.object(payload)))
    }

    func session(_ sessionID: String) async throws -> JSONValue {
        try await client.json(.get, "/api/sessions/\(sessionID)")
    }

    /// package_id → assigned deliverer, from the session document.
    func assignments(_ sessionID: String) async throws -> [(packageID: String, barcode: String, deliverer: String, value: Int64)] {
        try await session(sessionID)["packages"]!.array.map {
            ($0["package_id"]!.string!, $0["barcode"]!.string!, $0["assigned_deliverer_id"]!.string!, $0["value_cents"]!.int!)
        }
    }

    @discardableResult
    func deliver(_ sessionID: String, package: String, by deliverer: String, expect status: HTTPResponse.Status = .ok) async throws -> JSONValue {
        try await client.json(.post, "/api/sessions/\(sessionID)/delivery/complete", body(["package_id": .string(package), "deliverer_id": .string(deliverer)]), expect: status)
    }

    @discardableResult
    func fail(_ sessionID: String, package: String, by deliverer: String, reason: String = "Destinatário ausente", expect status: HTTPResponse.Status = .ok) async throws -> JSONValue {
        try await client.json(
            .post, "/api/sessions/\(sessionID)/delivery/fail",
            body(["package_id": .string(package), "deliverer_id": .string(deliverer), "reason": .string(reason)]), expect: status)
    }
}
