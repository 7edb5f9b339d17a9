import Kernel

/// What a scan is for (`intent`): only look the barcode up, add it as a package, or mark its
/// package delivered.
public enum ScanIntent: String, Sendable, CaseIterable {
    case lookup, add, deliver
}

/// A package of the session a scan runs against, as the delivery module shows it.
public struct ScanPackage: Sendable {
    public var id: String
    public var barcode: String
    let render: @Sendable () -> JSONValue

    /// `render` gives the package exactly as the delivery API shows it (the answer's `package`);
    /// it runs only for the package a scan answers with.
    public init(id: String, barcode: String, render: @escaping @Sendable () -> JSONValue) {
        self.id = id
        self.barcode = barcode
        self.render = render
    }

    public var json: JSONValue { render() }
}

/// The session a scan runs against: its owner and its packages.
public struct ScanSession: Sendable {
    public var id: String
    public var userID: String
    public var packages: [ScanPackage]

    public init(id: String, userID: String, packages: [ScanPackage]) {
        self.id = id
        self.userID = userID
        self.packages = packages
    }
}

/// The delivery sessions as the scanning module needs them. The scanning module knows nothing of
/// the delivery module; the composition root implements this with the delivery service, whose
/// rules (who may do what, in which state) decide.
public protocol ScanTargets: Sendable {
    /// The session, if `caller` may scan for `intent` in it (the delivery module's 404, 403 and
    /// 409 otherwise: `add` needs an open session and the right to manage it, `deliver` an active
    /// one and the right to mark for `delivererID`).
    func session(_ sessionID: String, intent: ScanIntent, delivererID: String?, caller: Caller) async throws -> ScanSession

    /// Adds `barcode` as a package (worth `valueCents` when given); answers the package (the existing one when it is a duplicate:
    /// `existing`, the session's package with that barcode when the scan began, if any).
    /// `alongside` statements commit in the change's transaction.
    func add(
        _ barcode: String, valueCents: Int64?, to sessionID: String, existing: ScanPackage?, caller: Caller,
        alongside: @escaping @Sendable (ScanPackage, _ duplicate: Bool) -> [SQLStatement]
    ) async throws -> (package: ScanPackage, duplicate: Bool)

    /// Marks the package delivered by `delivererID`; answers the package after the change.
    func deliver(
        _ packageID: String, in sessionID: String, delivererID: String, caller: Caller, alongside: @escaping @Sendable (ScanPackage) -> [SQLStatement]
    ) async throws -> ScanPackage
}
