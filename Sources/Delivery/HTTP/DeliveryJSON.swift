import Kernel

// The JSON shapes of the delivery API contract, written with `JSONWriter`. Optional fields are
// written as `null`, never left out, so clients see every documented field on every object.

extension DeliverySession: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writeFields(to: &writer)
        writer.endObject()
    }

    func writeFields(to writer: inout JSONWriter) {
        writer.field("session_id", id)
        writer.field("user_id", userID)
        writer.field("name", name)
        writer.field("status", status.rawValue)
        writer.field("version", version)
        writer.field("created_at", createdAt)
        writer.field("started_at", startedAt)
        writer.field("paused_at", pausedAt)
        writer.field("completed_at", completedAt)
        writer.field("archived_at", archivedAt)
        writer.field("is_readonly", isReadOnly)
        writer.field("was_reused", wasReused)
        writer.field("reuse_count", reuseCount)
        writer.field("packages_total", packagesTotal)
        writer.field("packages_delivered", packagesDelivered)
        writer.field("packages_failed", packagesFailed)
        writer.field("packages_pending", packagesTotal - packagesDelivered - packagesFailed)
        writer.field("total_revenue_cents", totalRevenueCents)
        writer.field("total_cost_cents", totalCostCents)
        writer.field("total_profit_cents", totalProfitCents)
        writer.field("financial_snapshot", financialSnapshot)
    }
}

extension Package: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("package_id", id)
        writer.field("barcode", barcode)
        writer.field("delivery_status", status.rawValue)
        writer.field("value_cents", valueCents)
        writer.field("recipient", recipient)
        writer.field("address_id", addressID)
        writer.field("assigned_deliverer_id", assignedDelivererID)
        writer.field("picked_up_at", pickedUpAt)
        writer.field("delivered_at", deliveredAt)
        writer.field("failed_at", failedAt)
        writer.field("failure_reason", failureReason)
        writer.field("created_at", createdAt)
        writer.endObject()
    }
}

/// An address with the number of the session's packages going to it.
struct AddressView: JSONWritable {
    var address: Address
    var packageCount: Int

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("address_id", address.id)
        writer.field("street", address.street)
        writer.field("number", address.number)
        writer.field("district", address.district)
        writer.field("city", address.city)
        writer.field("state", address.state)
        writer.field("postal_code", address.postalCode)
        writer.field("latitude", address.latitude)
        writer.field("longitude", address.longitude)
        writer.field("package_count", packageCount)
        writer.endObject()
    }
}

extension SessionDeliverer: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("deliverer_id", id)
        writer.field("name", name)
        writer.field("packages_assigned", packagesAssigned)
        writer.field("packages_delivered", packagesDelivered)
        writer.field("packages_failed", packagesFailed)
        writer.field("packages_pending", packagesAssigned - packagesDelivered - packagesFailed)
        writer.field("base_salary_cents", baseSalaryCents)
        writer.field("commission_per_delivery_cents", commissionPerDeliveryCents)
        writer.field("total_earned_cents", totalEarnedCents)
        writer.endObject()
    }
}

extension AuditEntry: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("seq", seq)
        writer.field("action", action)
        writer.field("actor_id", actorID)
        writer.key("details")
        writer.raw(json: details)  // stored as canonical JSON: written as it is
        writer.field("created_at", createdAt)
        writer.field("prev_hash", prevHash)
        writer.field("hash", hash)
        writer.endObject()
    }
}

extension FinancialSnapshot: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("total_revenue_cents", totalRevenueCents)
        writer.field("total_cost_cents", totalCostCents)
        writer.field("total_profit_cents", totalProfitCents)
        writer.field("packages_total", packagesTotal)
        writer.field("packages_delivered", packagesDelivered)
        writer.field("packages_failed", packagesFailed)
        writer.field("packages_pending", packagesPending)
        writer.field("deliverers", array: deliverers)
        writer.field("completed_at", completedAt)
        writer.endObject()
    }
}

/// `GET /api/sessions/{id}`: the session with everything linked to it.
struct SessionDocument: JSONWritable {
    var aggregate: DeliveryAggregate

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        aggregate.session.writeFields(to: &writer)
        writer.field("packages", array: aggregate.packages)
        var counts: [String: Int] = [:]
        for index in aggregate.packages.indices {
            if let id = aggregate.packages[index].addressID { counts[id, default: 0] += 1 }
        }
        writer.field("addresses", array: aggregate.addresses.lazy.map { AddressView(address: $0, packageCount: counts[$0.id] ?? 0) })
        writer.field("deliverers", array: aggregate.deliverers)
        writer.field("audit", array: aggregate.audit)
        writer.endObject()
    }

    /// Room for the whole document in one allocation (about 600 bytes a package, 350 an entry).
    var estimatedSize: Int { 1024 + aggregate.packages.count * 640 + aggregate.addresses.count * 256 + aggregate.audit.count * 384 }
}

struct AddPackagesResponse: JSONWritable {
    var added: [Package]
    var duplicates: [String]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("added", array: added)
        writer.field("duplicates", array: duplicates)
        writer.endObject()
    }
}

struct MarkResponse: JSONWritable {
    var package: Package
    var deliverer: SessionDeliverer?
    var session: DeliverySession

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("package", package)
        writer.field("deliverer", deliverer)
        writer.field("session", session)
        writer.endObject()
    }
}

struct VerifyResponse: JSONWritable {
    var valid: Bool
    var entries: Int
    var firstBadSeq: Int64?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("valid", valid)
        writer.field("entries", entries)
        writer.field("first_bad_seq", firstBadSeq)
        writer.endObject()
    }
}

/// `GET /api/sessions/{id}/dashboard`: live progress.
struct Dashboard: JSONWritable {
    var aggregate: DeliveryAggregate

    struct DelivererProgress: JSONWritable {
        var deliverer: SessionDeliverer
        var pickedUp: Int

        func write(to writer: inout JSONWriter) {
            let done = deliverer.packagesDelivered + deliverer.packagesFailed
            writer.beginObject()
            writer.field("deliverer_id", deliverer.id)
            writer.field("name", deliverer.name)
            writer.field("packages_assigned", deliverer.packagesAssigned)
            writer.field("packages_delivered", deliverer.packagesDelivered)
            writer.field("packages_failed", deliverer.packagesFailed)
            writer.field("packages_pending", deliverer.packagesAssigned - done)
            writer.field("packages_picked_up", pickedUp)
            writer.field("progress_percent", Dashboard.percent(done, of: deliverer.packagesAssigned))
            writer.field("total_earned_cents", deliverer.totalEarnedCents)
            writer.endObject()
        }
    }

    static func percent(_ part: Int, of whole: Int) -> Double { Percent.of(part, whole) }

    func write(to writer: inout JSONWriter) {
        let session = aggregate.session
        let done = session.packagesDelivered + session.packagesFailed
        var pickedUp: [String: Int] = [:]
        for package in aggregate.packages where package.status == .pickedUp {
            pickedUp[package.assignedDelivererID ?? "", default: 0] += 1
        }
        writer.beginObject()
        writer.field("session_id", session.id)
        writer.field("status", session.status.rawValue)
        writer.field("version", session.version)
        writer.field("started_at", session.startedAt)
        writer.field("packages_total", session.packagesTotal)
        writer.field("packages_delivered", session.packagesDelivered)
        writer.field("packages_failed", session.packagesFailed)
        writer.field("packages_pending", session.packagesTotal - done)
        writer.field("packages_picked_up", pickedUp.values.reduce(0, +))
        writer.field("progress_percent", session.progressPercent)
        writer.field("delivered_percent", Self.percent(session.packagesDelivered, of: session.packagesTotal))
        writer.field("total_revenue_cents", session.totalRevenueCents)
        writer.field("total_cost_cents", session.totalCostCents)
        writer.field("total_profit_cents", session.totalProfitCents)
        writer.field("deliverers", array: aggregate.deliverers.lazy.map { DelivererProgress(deliverer: $0, pickedUp: pickedUp[$0.id] ?? 0) })
        writer.endObject()
    }
}
