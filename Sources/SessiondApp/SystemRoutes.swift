import Hummingbird
import Kernel

/// `/health`, `/ready` and `/openapi.json`: public (`access: .public`, the default outside `/api/`).
struct SystemRoutes {
    let storage: Storage
    let migrator: Migrator
    let routes: RouteRegistry
    let eventTypes: [(type: String, summary: String)]

    struct Health: Encodable { var status = "ok" }

    struct Readiness: Encodable {
        var status: String
        var database: String
        var schemaVersion: Int
        var expectedSchemaVersion: Int
        enum CodingKeys: String, CodingKey {
            case status, database, schemaVersion = "schema_version", expectedSchemaVersion = "expected_schema_version"
        }
    }

    func register(on router: Router<SessiondRequestContext>) {
        let (storage, migrator, routes, eventTypes) = (storage, migrator, routes, eventTypes)
        let health = try? JSONResponse.encode(Health())
        routes.add(.init(.get, "/health", summary: "The process is up", tag: "system", response: "Health"), to: router) { _, _ in
            JSONResponse.bytes(health ?? .init())
        }
        routes.add(.init(.get, "/ready", summary: "The database is reachable and fully migrated", tag: "system", response: "Readiness", errors: [503]), to: router) { _, context in
            let missing: [Int]
            do {
                missing = try await migrator.missingVersions(storage)
            } catch {
                context.logger.warning("readiness check failed", metadata: ["error": "\(error)"])
                throw Problem(status: .serviceUnavailable, slug: "not-ready", title: "Not ready", detail: "The database is not reachable.")
            }
            guard missing.isEmpty else {
                throw Problem(
                    status: .serviceUnavailable, slug: "not-ready", title: "Not ready",
                    detail: "Migrations \(missing.map(String.init).joined(separator: ", ")) are not applied. Run `sessiond migrate`.")
            }
            return try JSONResponse.make(
                Readiness(
                    status: "ready", database: storage.dialect.rawValue, schemaVersion: migrator.latestVersion,
                    expectedSchemaVersion: migrator.latestVersion))
        }
        routes.add(.init(.get, "/openapi.json", summary: "This document", tag: "system"), to: router) { _, _ in
            JSONResponse.bytes(try JSONResponse.encode(OpenAPIDocument.make(routes: routes.all, eventTypes: eventTypes)))
        }
    }
}
