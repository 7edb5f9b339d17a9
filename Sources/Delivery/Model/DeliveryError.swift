import Kernel

/// Everything a delivery rule can refuse, each with its problem+json form.
public enum DeliveryError: ProblemConvertible, Equatable {
    case sessionNotFound(String)
    case packageNotFound(String)
    case readOnly(SessionStatus)
    case invalidState(action: String, status: SessionStatus, allowed: [SessionStatus])
    case noPackages
    case wrongDeliverer(packageID: String, assignedTo: String?, caller: String)
    case packageFinal(packageID: String, status: PackageStatus, action: String)
    case invalid(field: String, detail: String)
    case forbidden(String)
    case userNotFound(String)

    public var problem: Problem {
        switch self {
        case .sessionNotFound(let id):
            return .notFound("Delivery session \(id) does not exist.")
        case .packageNotFound(let id):
            return .notFound("Package \(id) is not in this session.")
        case .readOnly(let status):
            return .conflict(
                "session-read-only", "The session is \(status.rawValue) and read-only: it accepts no more changes.",
                title: "Session is read-only")
        case .invalidState(let action, let status, let allowed):
            let expected = allowed.map(\.rawValue).joined(separator: " or ")
            return .conflict(
                "invalid-state", "Cannot \(action) a session that is \(status.rawValue); it must be \(expected).",
                title: "Wrong session state")
        case .noPackages:
            return .conflict("no-packages", "A session needs at least one package to start.", title: "Nothing to deliver")
        case .wrongDeliverer(let packageID, let assignedTo, let caller):
            return .conflict(
                "wrong-deliverer",
                "Package \(packageID) is assigned to \(assignedTo ?? "nobody"), not \(caller); reassign it first.",
                title: "Package assigned to another deliverer")
        case .packageFinal(let packageID, let status, let action):
            return .conflict(
                "package-final", "Package \(packageID) is already \(status.rawValue); it cannot be \(action).",
                title: "Package already final")
        case .invalid(let field, let detail):
            return .validation(field, detail)
        case .forbidden(let detail):
            return Problem(status: .forbidden, slug: "forbidden", title: "Forbidden", detail: detail)
        case .userNotFound(let id):
            return .notFound("No sessions of user \(id) to show.")
        }
    }
}
