import Hummingbird
import Kernel

/// The delivery API's HTTP surface: decode, call `DeliveryService`, encode.
public struct DeliveryRoutes: Sendable {
    let service: DeliveryService

    public init(service: DeliveryService) { self.service = service }

    struct CreateBody: Decodable {
        var userID: String
        var name: String?
        enum CodingKeys: String, CodingKey { case userID = "user_id", name }
    }

    struct PackagesBody: Decodable { var packages: [NewPackage] }

    struct ReuseBody: Decodable {
        var userID: String
        enum CodingKeys: String, CodingKey { case userID = "user_id" }
    }

    struct StartBody: Decodable {
        var deliverers: [NewDeliverer]
        var assignments: [String: String]?
    }

    struct MarkBody: Decodable {
        var packageID: String?
        var barcode: String?
        var delivererID: String
        var reason: String?
        enum CodingKeys: String, CodingKey { case packageID = "package_id", barcode, delivererID = "deliverer_id", reason }

        var reference: PackageReference {
            get throws {
                if let packageID, !packageID.isEmpty { return .id(packageID) }
                if let barcode, !barcode.isEmpty { return .barcode(barcode) }
                throw DeliveryError.invalid(field: "package_id", detail: "Give package_id or barcode.")
            }
        }
    }

    struct ReassignBody: Decodable {
        var delivererID: String
        enum CodingKeys: String, CodingKey { case delivererID = "deliverer_id" }
    }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let service = service
        let tag = "delivery"
        let notFoundOrState = [404, 409, 422]

        routes.add(.init(.post, "/api/sessions/create", summary: "Open a new delivery session", tag: tag, request: "CreateSession", response: "Session", status: 201, errors: [400, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: CreateBody.self, context: context)
            return try await IdempotencySlot.respond {
                try await service.create(userID: body.userID, name: body.name, caller: context.caller)
            } render: { session in
                .json(session, status: .created, headers: [.location: "/api/sessions/\(session.id)"])
            }
        }
        routes.add(.init(.get, "/api/sessions/user/{user_id}", summary: "A user's sessions, newest first", tag: tag, response: "SessionPage", errors: [422], query: [
            QueryParameter("status", schema: ["type": "string", "enum": .array(SessionStatus.allCases.map { .string($0.rawValue) })]),
            QueryParameter("barcode", schema: ["type": "string", "description": "only sessions holding a package whose barcode contains this text"]),
            .limit(maximum: 200), .cursor(),
        ]), to: router) { request, context in
            let userID = try context.parameters.require("user_id")
            var status: SessionStatus?
            if let text = request.queryString("status") {
                guard let parsed = SessionStatus(rawValue: text) else {
                    throw Problem.validation("status", "status must be one of \(SessionStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
                }
                status = parsed
            }
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.sessions(
                userID: userID, status: status, barcode: request.queryString("barcode"), cursor: request.queryString("cursor"), limit: limit,
                caller: context.caller)
            return JSONResponse.write(Page(items: page.items, next: page.next))
        }
        routes.add(.init(.get, "/api/sessions/{id}", summary: "A session with its packages, addresses, deliverers and audit trail", tag: tag, response: "SessionDocument", errors: [404]), to: router) { request, context in
            let (body, version) = try await service.document(try context.parameters.require("id"), caller: context.caller)
            let etag = "\"v\(version)\""
            if request.headers[.ifNoneMatch] == etag {
                return Response(status: .notModified, headers: [.eTag: etag])
            }
            return JSONResponse.bytes(body, headers: [.eTag: etag])
        }
        routes.add(.init(.get, "/api/sessions/{id}/dashboard", summary: "Live progress of a session", tag: tag, response: "Dashboard", errors: [404]), to: router) { _, context in
            JSONResponse.write(Dashboard(aggregate: try await service.session(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.post, "/api/sessions/{id}/packages", summary: "Add packages; duplicates are reported, not added", tag: tag, request: "AddPackages", response: "AddPackagesResult", errors: [400] + notFoundOrState), to: router) { request, context in
            let body = try await request.decodeJSON(as: PackagesBody.self, context: context)
            let sessionID = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.addPackages(sessionID, body.packages, caller: context.caller)
            } render: { outcome in
                .json(AddPackagesResponse(added: outcome.added, duplicates: outcome.duplicates))
            }
        }
        routes.add(.init(.delete, "/api/sessions/{id}/packages/{package_id}", summary: "Remove a package before the session starts", tag: tag, status: 204, errors: [404, 409]), to: router) { _, context in
            try await service.removePackage(try context.parameters.require("id"), packageID: try context.parameters.require("package_id"), caller: context.caller)
            return Response(status: .noContent)
        }
        routes.add(.init(.post, "/api/sessions/{id}/packages/{package_id}/reassign", summary: "Give a package to another deliverer", tag: tag, request: "Reassign", response: "Package", errors: [400] + notFoundOrState), to: router) { request, context in
            let body = try await request.decodeJSON(as: ReassignBody.self, context: context)
            let (sessionID, packageID) = (try context.parameters.require("id"), try context.parameters.require("package_id"))
            return try await IdempotencySlot.respond {
                try await service.reassign(sessionID, packageID: packageID, to: body.delivererID, caller: context.caller)
            } render: { package in .json(package) }
        }
        routes.add(.init(.post, "/api/sessions/{id}/reuse", summary: "Come back into an open session", tag: tag, request: "Reuse", response: "Session", errors: [400] + notFoundOrState), to: router) { request, context in
            let body = try await request.decodeJSON(as: ReuseBody.self, context: context)
            let sessionID = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.reuse(sessionID, userID: body.userID, caller: context.caller)
            } render: { session in .json(session) }
        }
        routes.add(.init(.post, "/api/sessions/{id}/start", summary: "Bring deliverers in and start delivering", tag: tag, request: "Start", response: "Session", errors: [400] + notFoundOrState), to: router) { request, context in
            let body = try await request.decodeJSON(as: StartBody.self, context: context)
            let sessionID = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.start(sessionID, deliverers: body.deliverers, assignments: body.assignments ?? [:], caller: context.caller)
            } render: { session in .json(session) }
        }
        let marks: [(String, DeliveryMark, String, String)] = [
            ("complete", .delivered, "Mark a package delivered by its deliverer", "Mark"),
            ("fail", .failed, "Mark a package failed, with a reason", "MarkFailed"),
            ("pickup", .pickedUp, "Mark a package picked up", "Mark"),
        ]
        for (path, mark, summary, schema) in marks {
            routes.add(.init(.post, "/api/sessions/{id}/delivery/\(path)", summary: summary, tag: tag, request: schema, response: "MarkResult", errors: [400] + notFoundOrState), to: router) { request, context in
                let body = try await request.decodeJSON(as: MarkBody.self, context: context)
                let (sessionID, reference) = (try context.parameters.require("id"), try body.reference)
                return try await IdempotencySlot.respond {
                    try await service.mark(sessionID, mark, reference, delivererID: body.delivererID, reason: body.reason, caller: context.caller)
                } render: { outcome in
                    .json(MarkResponse(package: outcome.package, deliverer: outcome.deliverer, session: outcome.session))
                }
            }
        }
        let transitions: [(String, DeliveryService.Transition, String)] = [
            ("pause", .pause, "Pause an active session"),
            ("resume", .resume, "Resume a paused session"),
            ("complete", .complete, "Close a session and freeze its financial snapshot"),
            ("archive", .archive, "Move a completed session out of the default listings"),
        ]
        for (path, transition, summary) in transitions {
            routes.add(.init(.post, "/api/sessions/{id}/\(path)", summary: summary, tag: tag, response: "Session", errors: [404, 409]), to: router) { _, context in
                let sessionID = try context.parameters.require("id")
                return try await IdempotencySlot.respond {
                    try await service.transition(sessionID, transition, caller: context.caller)
                } render: { session in .json(session) }
            }
        }
        routes.add(.init(.get, "/api/sessions/{id}/audit", summary: "The session's audit trail, oldest first", tag: tag, response: "AuditPage", errors: [404, 422], query: [.limit(maximum: 1000), .cursor(pattern: "^[0-9]+$")]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 100, range: 1...1000)
            var cursor: Int64?
            if let text = request.queryString("cursor") {
                guard let value = Int64(text), value >= 0 else { throw Problem.validation("cursor", "cursor is not one this API gave out.") }
                cursor = value
            }
            let page = try await service.audit(try context.parameters.require("id"), after: cursor, limit: limit, caller: context.caller)
            return JSONResponse.write(Page(items: page.items, next: page.next))
        }
        routes.add(.init(.get, "/api/sessions/{id}/audit/verify", summary: "Check the audit trail's hash chain as stored", tag: tag, response: "AuditVerification", errors: [404]), to: router) { _, context in
            let result = try await service.verifyAudit(try context.parameters.require("id"), caller: context.caller)
            return JSONResponse.write(VerifyResponse(valid: result.valid, entries: result.entries, firstBadSeq: result.firstBadSeq))
        }
    }
}
