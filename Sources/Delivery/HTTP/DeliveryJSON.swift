import Kernel

// The JSON shapes of the delivery API contract. Optional fields are written as `null`, never
// left out, so clients see every documented field on every object.

extension DeliverySession: Encodable {
    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", userID = "user_id", name, status, version
        case createdAt = "created_at", startedAt = "started_at", pausedAt = "paused_at"
        case completedAt = "completed_at", archivedAt = "archived_at", isReadOnly = "is_readonly"
        case wasReused = "was_reused", reuseCount = "reuse_count", packagesTotal = "packages_total"
        case packagesDelivered = "packages_delivered", packagesFailed = "packages_failed"
        case packagesPending = "packages_pending"
        case totalRevenueCents = "total_revenue_cents", totalCostCents = "total_cost_cents"
        case totalProfitCents = "total_profit_cents", financialSnapshot = "financial_snapshot"
        case packages, addresses, deliverers, audit
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try encodeFields(into: &container)
    }

    func encodeFields(into container: inout KeyedEncodingContainer<CodingKeys>) throws {
        try container.encode(id, forKey: .sessionID)
        try container.encode(userID, forKey: .userID)
        try container.encode(name, forKey: .name)
        try container.encode(status, forKey: .status)
        try container.encode(version, forKey: .version)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(pausedAt, forKey: .pausedAt)
        try container.encode(completedAt, forKey: .completedAt)
        try container.encode(archivedAt, forKey: .archivedAt)
        try container.encode(isReadOnly, forKey: .isReadOnly)
        try container.encode(wasReused, forKey: .wasReused)
        try container.encode(reuseCount, forKey: .reuseCount)
        try container.encode(packagesTotal, forKey: .packagesTotal)
        try container.encode(packagesDelivered, forKey: .packagesDelivered)
        try container.encode(packagesFailed, forKey: .packagesFailed)
        try container.encode(packagesTotal - packagesDelivered - packagesFailed, forKey: .packagesPending)
        try container.encode(totalRevenueCents, forKey: .totalRevenueCents)
        try container.encode(totalCostCents, forKey: .totalCostCents)
        try container.encode(totalProfitCents, forKey: .totalProfitCents)
        try container.encode(financialSnapshot, forKey: .financialSnapshot)
    }
}

extension Package: Encodable {
    enum CodingKeys: String, CodingKey {
        case packageID = "package_id", barcode, deliveryStatus = "delivery_status", valueCents = "value_cents"
        case recipient, addressID = "address_id", assignedDelivererID = "assigned_deliverer_id"
        case pickedUpAt = "picked_up_at", deliveredAt = "delivered_at", failedAt = "failed_at"
        case failureReason = "failure_reason", createdAt = "created_at"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .packageID)
        try container.encode(barcode, forKey: .barcode)
        try container.encode(status, forKey: .deliveryStatus)
        try container.encode(valueCents, forKey: .valueCents)
        try container.encode(recipient, forKey: .recipient)
        try container.encode(addressID, forKey: .addressID)
        try container.encode(assignedDelivererID, forKey: .assignedDelivererID)
        try container.encode(pickedUpAt, forKey: .pickedUpAt)
        try container.encode(deliveredAt, forKey: .deliveredAt)
        try container.encode(failedAt, forKey: .failedAt)
        try container.encode(failureReason, forKey: .failureReason)
        try container.encode(createdAt, forKey: .createdAt)
    }
}

/// An address with the number of the session's packages going to it.
struct AddressView: Encodable {
    var address: Address
    var packageCount: Int

    enum CodingKeys: String, CodingKey {
        case addressID = "address_id", street, number, district, city, state, postalCode = "postal_code"
        case latitude, longitude, packageCount = "package_count"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(address.id, forKey: .addressID)
        try container.encode(address.street, forKey: .street)
        try container.encode(address.number, forKey: .number)
        try container.encode(address.district, forKey: .district)
        try container.encode(address.city, forKey: .city)
        try container.encode(address.state, forKey: .state)
        try container.encode(address.postalCode, forKey: .postalCode)
        try container.encode(address.latitude, forKey: .latitude)
        try container.encode(address.longitude, forKey: .longitude)
        try container.encode(packageCount, forKey: .packageCount)
    }
}

extension SessionDeliverer: Encodable {
    enum CodingKeys: String, CodingKey {
        case delivererID = "deliverer_id", name, packagesAssigned = "packages_assigned"
        case packagesDelivered = "packages_delivered", packagesFailed = "packages_failed"
        case packagesPending = "packages_pending"
        case baseSalaryCents = "base_salary_cents", commissionPerDeliveryCents = "commission_per_delivery_cents"
        case totalEarnedCents = "total_earned_cents"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .delivererID)
        try container.encode(name, forKey: .name)
        try container.encode(packagesAssigned, forKey: .packagesAssigned)
        try container.encode(packagesDelivered, forKey: .packagesDelivered)
        try container.encode(packagesFailed, forKey: .packagesFailed)
        try container.encode(packagesAssigned - packagesDelivered - packagesFailed, forKey: .packagesPending)
        try container.encode(baseSalaryCents, forKey: .baseSalaryCents)
        try container.encode(commissionPerDeliveryCents, forKey: .commissionPerDeliveryCents)
        try container.encode(totalEarnedCents, forKey: .totalEarnedCents)
    }
}

extension AuditEntry: Encodable {
    enum CodingKeys: String, CodingKey {
        case seq, action, actorID = "actor_id", details, createdAt = "created_at", prevHash = "prev_hash", hash
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(seq, forKey: .seq)
        try container.encode(action, forKey: .action)
        try container.encode(actorID, forKey: .actorID)
        try container.encode(JSONValue.parse(details), forKey: .details)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(prevHash, forKey: .prevHash)
        try container.encode(hash, forKey: .hash)
    }
}

/// `GET /api/sessions/{id}`: the session with everything linked to it.
struct SessionDocument: Encodable {
    var aggregate: DeliveryAggregate

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: DeliverySession.CodingKeys.self)
        try aggregate.session.encodeFields(into: &container)
        try container.encode(aggregate.packages, forKey: .packages)
        var counts: [String: Int] = [:]
        for package in aggregate.packages { if let id = package.addressID { counts[id, default: 0] += 1 } }
        try container.encode(aggregate.addresses.map { AddressView(address: $0, packageCount: counts[$0.id] ?? 0) }, forKey: .addresses)
        try container.encode(aggregate.deliverers, forKey: .deliverers)
        try container.encode(aggregate.audit, forKey: .audit)
    }
}

struct AddPackagesResponse: Encodable {
    var added: [Package]
    var duplicates: [String]
}

struct MarkResponse: Encodable {
    var package: Package
    var deliverer: SessionDeliverer?
    var session: DeliverySession
}

struct Page<Item: Encodable>: Encodable {
    var items: [Item]
    var nextCursor: String?

    enum CodingKeys: String, CodingKey { case items, nextCursor = "next_cursor" }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(items, forKey: .items)
        try container.encode(nextCursor, forKey: .nextCursor)
    }
}

struct VerifyResponse: Encodable {
    var valid: Bool
    var entries: Int
    var firstBadSeq: Int64?

    enum CodingKeys: String, CodingKey { case valid, entries, firstBadSeq = "first_bad_seq" }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(valid, forKey: .valid)
        try container.encode(entries, forKey: .entries)
        try container.encode(firstBadSeq, forKey: .firstBadSeq)
    }
}

/// `GET /api/sessions/{id}/dashboard`: live progress.
struct Dashboard: Encodable {
    var aggregate: DeliveryAggregate

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", status, packagesTotal = "packages_total", packagesDelivered = "packages_delivered"
        case packagesFailed = "packages_failed", packagesPending = "packages_pending", packagesPickedUp = "packages_picked_up"
        case progressPercent = "progress_percent", deliveredPercent = "delivered_percent"
        case totalRevenueCents = "total_revenue_cents", totalCostCents = "total_cost_cents"
        case totalProfitCents = "total_profit_cents", deliverers, version, startedAt = "started_at"
    }

    struct DelivererProgress: Encodable {
        var deliverer: SessionDeliverer
        var pickedUp: Int

        enum CodingKeys: String, CodingKey {
            case delivererID = "deliverer_id", name, packagesAssigned = "packages_assigned", packagesDelivered = "packages_delivered"
            case packagesFailed = "packages_failed", packagesPending = "packages_pending", packagesPickedUp = "packages_picked_up"
            case progressPercent = "progress_percent", totalEarnedCents = "total_earned_cents"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            let done = deliverer.packagesDelivered + deliverer.packagesFailed
            try container.encode(deliverer.id, forKey: .delivererID)
            try container.encode(deliverer.name, forKey: .name)
            try container.encode(deliverer.packagesAssigned, forKey: .packagesAssigned)
            try container.encode(deliverer.packagesDelivered, forKey: .packagesDelivered)
            try container.encode(deliverer.packagesFailed, forKey: .packagesFailed)
            try container.encode(deliverer.packagesAssigned - done, forKey: .packagesPending)
            try container.encode(pickedUp, forKey: .packagesPickedUp)
            try container.encode(Dashboard.percent(done, of: deliverer.packagesAssigned), forKey: .progressPercent)
            try container.encode(deliverer.totalEarnedCents, forKey: .totalEarnedCents)
        }
    }

    static func percent(_ part: Int, of whole: Int) -> Double {
        guard whole > 0 else { return 0 }
        return (Double(part) * 10_000 / Double(whole)).rounded() / 100
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        let session = aggregate.session
        let done = session.packagesDelivered + session.packagesFailed
        var pickedUp: [String: Int] = [:]
        for package in aggregate.packages where package.status == .pickedUp {
            pickedUp[package.assignedDelivererID ?? "", default: 0] += 1
        }
        try container.encode(session.id, forKey: .sessionID)
        try container.encode(session.status, forKey: .status)
        try container.encode(session.version, forKey: .version)
        try container.encode(session.startedAt, forKey: .startedAt)
        try container.encode(session.packagesTotal, forKey: .packagesTotal)
        try container.encode(session.packagesDelivered, forKey: .packagesDelivered)
        try container.encode(session.packagesFailed, forKey: .packagesFailed)
        try container.encode(session.packagesTotal - done, forKey: .packagesPending)
        try container.encode(pickedUp.values.reduce(0, +), forKey: .packagesPickedUp)
        try container.encode(Self.percent(done, of: session.packagesTotal), forKey: .progressPercent)
        try container.encode(Self.percent(session.packagesDelivered, of: session.packagesTotal), forKey: .deliveredPercent)
        try container.encode(session.totalRevenueCents, forKey: .totalRevenueCents)
        try container.encode(session.totalCostCents, forKey: .totalCostCents)
        try container.encode(session.totalProfitCents, forKey: .totalProfitCents)
        try container.encode(aggregate.deliverers.map { DelivererProgress(deliverer: $0, pickedUp: pickedUp[$0.id] ?? 0) }, forKey: .deliverers)
    }
}
