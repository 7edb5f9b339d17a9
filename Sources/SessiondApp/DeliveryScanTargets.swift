import Delivery
import Kernel
import Scanning

/// The delivery sessions as the scanning module sees them: the delivery service's own reads,
/// role checks and writes, so a scan can do nothing the delivery API would refuse.
struct DeliveryScanTargets: ScanTargets {
    let delivery: DeliveryService

    func session(_ sessionID: String, intent: ScanIntent, delivererID: String?, caller: Caller) async throws -> ScanSession {
        let aggregate = try await delivery.session(sessionID, caller: caller)
        switch intent {
        case .lookup:
            break
        case .add:
            try aggregate.authorize(caller, .manage)
            guard aggregate.session.status == .open else {
                throw ScanError.wrongState("Packages are added while the session is open; it is \(aggregate.session.status.rawValue).")
            }
        case .deliver:
            try aggregate.authorize(caller, .mark(delivererID: delivererID ?? ""))
            guard aggregate.session.status == .active else {
                throw ScanError.wrongState("Packages are delivered while the session is active; it is \(aggregate.session.status.rawValue).")
            }
        }
        return ScanSession(id: aggregate.id, userID: aggregate.session.userID, packages: aggregate.packages.map(Self.scanPackage))
    }

    func add(
        _ barcode: String, valueCents: Int64?, to sessionID: String, existing: ScanPackage?, caller: Caller,
        alongside: @escaping @Sendable (ScanPackage, _ duplicate: Bool) -> [SQLStatement]
    ) async throws -> (package: ScanPackage, duplicate: Bool) {
        let outcome = try await delivery.addPackages(sessionID, [NewPackage(barcode: barcode, valueCents: valueCents)], caller: caller) { outcome in
            if let added = outcome.added.first { return alongside(Self.scanPackage(added), false) }
            return existing.map { alongside($0, true) } ?? []
        }
        if let added = outcome.added.first { return (Self.scanPackage(added), false) }
        // A duplicate: the package already there (read again when it came in after the scan began).
        if let existing { return (existing, true) }
        let after = try await delivery.session(sessionID, caller: caller)
        guard let package = after.packages.first(where: { $0.barcode == barcode }) else { throw ScanError.wrongState("The package could not be added.") }
        return (Self.scanPackage(package), true)
    }

    func deliver(
        _ packageID: String, in sessionID: String, delivererID: String, caller: Caller, alongside: @escaping @Sendable (ScanPackage) -> [SQLStatement]
    ) async throws -> ScanPackage {
        let outcome = try await delivery.mark(sessionID, .delivered, .id(packageID), delivererID: delivererID, reason: nil, caller: caller) { outcome in
            alongside(Self.scanPackage(outcome.package))
        }
        return Self.scanPackage(outcome.package)
    }

    /// The package as the delivery API renders it.
    static func scanPackage(_ package: Package) -> ScanPackage {
        ScanPackage(id: package.id, barcode: package.barcode) { JSONValue.parse(String(buffer: JSONResponse.encode(package, capacity: 512))) }
    }
}
