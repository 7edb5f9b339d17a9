import Kernel

public enum SessionStatus: String, Codable, Sendable, CaseIterable {
    case open, active, paused, completed, archived

    /// `completed` and `archived` sessions accept no more changes.
    public var isReadOnly: Bool { self == .completed || self == .archived }
}

public enum PackageStatus: String, Codable, Sendable, CaseIterable {
    case pending
    case pickedUp = "picked_up"
    case delivered, failed

    public var isFinal: Bool { self == .delivered || self == .failed }
}

/// The session row: identity, state, timestamps and the totals kept in step with its packages.
public struct DeliverySession: Sendable, Equatable {
    public var id: String
    public var userID: String
    public var name: String?
    public var status: SessionStatus
    public var version: Int64
    public var createdAt: Timestamp
    public var startedAt: Timestamp?
    public var pausedAt: Timestamp?
    public var completedAt: Timestamp?
    public var archivedAt: Timestamp?
    public var wasReused: Bool
    public var reuseCount: Int
    public var packagesTotal: Int
    public var packagesDelivered: Int
    public var packagesFailed: Int
    public var totalRevenueCents: Int64
    public var totalCostCents: Int64
    public var financialSnapshot: FinancialSnapshot?

    public var isReadOnly: Bool { status.isReadOnly }
    public var totalProfitCents: Int64 { totalRevenueCents - totalCostCents }
}

public struct Address: Sendable, Equatable {
    public var id: String
    /// Normalised text of the address: the same text in one session is one row.
    public var key: String
    public var street: String
    public var number: String?
    public var district: String?
    public var city: String?
    public var state: String?
    public var postalCode: String?
    public var latitude: Double?
    public var longitude: Double?
}

public struct Package: Sendable, Equatable {
    public var id: String
    public var barcode: String
    public var status: PackageStatus
    public var valueCents: Int64
    public var recipient: String?
    public var addressID: String?
    public var assignedDelivererID: String?
    public var pickedUpAt: Timestamp?
    public var deliveredAt: Timestamp?
    public var failedAt: Timestamp?
    public var failureReason: String?
    public var createdAt: Timestamp
    /// Order of arrival in the session; listings keep it.
    public var position: Int
}

/// A deliverer's row in one session: pay terms and the figures derived from their packages.
public struct SessionDeliverer: Sendable, Equatable {
    public var id: String
    public var name: String?
    public var baseSalaryCents: Int64
    public var commissionPerDeliveryCents: Int64
    public var packagesAssigned: Int
    public var packagesDelivered: Int
    public var packagesFailed: Int
    public var position: Int

    /// `base_salary + commission × delivered`, in cents.
    public var totalEarnedCents: Int64 { baseSalaryCents + commissionPerDeliveryCents * Int64(packagesDelivered) }
}

public struct AuditEntry: Sendable, Equatable {
    public var seq: Int64
    public var action: String
    public var actorID: String?
    /// Canonical JSON text (sorted keys): what is stored and what the hash covers.
    public var details: String
    public var createdAt: Timestamp
    public var prevHash: String
    public var hash: String
}

/// The figures frozen into a session when it completes.
public struct FinancialSnapshot: Sendable, Equatable, Decodable {
    public var totalRevenueCents: Int64
    public var totalCostCents: Int64
    public var totalProfitCents: Int64
    public var packagesTotal: Int
    public var packagesDelivered: Int
    public var packagesFailed: Int
    public var packagesPending: Int
    /// Each deliverer's figures and pay as they were at completion.
    public var deliverers: [SessionDeliverer]
    public var completedAt: Timestamp

    enum CodingKeys: String, CodingKey {
        case totalRevenueCents = "total_revenue_cents", totalCostCents = "total_cost_cents"
        case totalProfitCents = "total_profit_cents", packagesTotal = "packages_total"
        case packagesDelivered = "packages_delivered", packagesFailed = "packages_failed"
        case packagesPending = "packages_pending", deliverers, completedAt = "completed_at"
    }
}

extension SessionDeliverer: Decodable {
    enum CodingKeys: String, CodingKey {
        case id = "deliverer_id", name, packagesAssigned = "packages_assigned", packagesDelivered = "packages_delivered"
        case packagesFailed = "packages_failed", baseSalaryCents = "base_salary_cents"
        case commissionPerDeliveryCents = "commission_per_delivery_cents", position
    }

    /// Read back from a stored snapshot (derived fields such as `total_earned_cents` are recomputed).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        packagesAssigned = try container.decode(Int.self, forKey: .packagesAssigned)
        packagesDelivered = try container.decode(Int.self, forKey: .packagesDelivered)
        packagesFailed = try container.decode(Int.self, forKey: .packagesFailed)
        baseSalaryCents = try container.decode(Int64.self, forKey: .baseSalaryCents)
        commissionPerDeliveryCents = try container.decode(Int64.self, forKey: .commissionPerDeliveryCents)
        position = try container.decodeIfPresent(Int.self, forKey: .position) ?? 0
    }
}

/// A delivery session with everything linked to it: the unit every write loads, changes and saves.
public struct DeliveryAggregate: Sendable, Equatable {
    public var session: DeliverySession
    public var addresses: [Address]
    public var deliverers: [SessionDeliverer]
    public var packages: [Package]
    public var audit: [AuditEntry]

    public var id: String { session.id }
    public var version: Int64 { session.version }

    public func package(id: String) -> Package? { packages.first { $0.id == id } }
    public func deliverer(id: String) -> SessionDeliverer? { deliverers.first { $0.id == id } }
}

extension DeliverySession {
    /// Delivered and failed packages as a share of all of them, in percent to two decimals (the
    /// dashboard's `progress_percent`).
    public var progressPercent: Double { Percent.of(packagesDelivered + packagesFailed, packagesTotal) }
}

public enum Percent {
    /// `part` of `whole` in percent, rounded to two decimals; 0 when there is no whole.
    public static func of(_ part: Int, _ whole: Int) -> Double {
        guard whole > 0 else { return 0 }
        return (Double(part) * 10_000 / Double(whole)).rounded() / 100
    }
}
