import Foundation
import Kernel

/// New package as the caller describes it (validated by `DeliveryRules.addPackages`).
public struct NewPackage: Sendable, Decodable {
    public var barcode: String
    public var valueCents: Int64?
    public var recipient: String?
    public var address: NewAddress?

    enum CodingKeys: String, CodingKey {
        case barcode, valueCents = "value_cents", recipient, address
    }

    public init(barcode: String, valueCents: Int64? = nil, recipient: String? = nil, address: NewAddress? = nil) {
        self.barcode = barcode
        self.valueCents = valueCents
        self.recipient = recipient
        self.address = address
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        barcode = try container.decode(String.self, forKey: .barcode)
        valueCents = try container.decodeCentsIfPresent(forKey: .valueCents)
        recipient = try container.decodeIfPresent(String.self, forKey: .recipient)
        address = try container.decodeIfPresent(NewAddress.self, forKey: .address)
    }
}

public struct NewAddress: Sendable, Decodable {
    public var street: String
    public var number: String?
    public var district: String?
    public var city: String?
    public var state: String?
    public var postalCode: String?
    public var latitude: Double?
    public var longitude: Double?

    enum CodingKeys: String, CodingKey {
        case street, number, district, city, state, postalCode = "postal_code", latitude, longitude
    }

    public init(street: String, number: String? = nil, district: String? = nil, city: String? = nil, state: String? = nil, postalCode: String? = nil) {
        self.street = street
        self.number = number
        self.district = district
        self.city = city
        self.state = state
        self.postalCode = postalCode
    }
}

public struct NewDeliverer: Sendable, Decodable {
    public var delivererID: String
    public var name: String?
    public var baseSalaryCents: Int64
    public var commissionPerDeliveryCents: Int64

    enum CodingKeys: String, CodingKey {
        case delivererID = "deliverer_id", name, baseSalaryCents = "base_salary_cents"
        case commissionPerDeliveryCents = "commission_per_delivery_cents"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        delivererID = try container.decode(String.self, forKey: .delivererID)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        baseSalaryCents = try container.decodeCents(forKey: .baseSalaryCents)
        commissionPerDeliveryCents = try container.decodeCents(forKey: .commissionPerDeliveryCents)
    }
    public init(delivererID: String, name: String?, baseSalaryCents: Int64, commissionPerDeliveryCents: Int64) {
        self.delivererID = delivererID
        self.name = name
        self.baseSalaryCents = baseSalaryCents
        self.commissionPerDeliveryCents = commissionPerDeliveryCents
    }
}

/// Which package a delivery call is about: by id or by barcode.
public enum PackageReference: Sendable, Equatable {
    case id(String)
    case barcode(String)
}

public struct AddPackagesOutcome: Sendable {
    public var added: [Package]
    public var duplicates: [String]
}

public enum DeliveryMark: String, Sendable {
    case pickedUp = "picked_up"
    case delivered
    case failed
}

/// The rules of a delivery session, as mutations of the aggregate. Pure: no I/O, no clock of their
/// own (the time comes in), so every rule is tested without a database and runs the same on both.
/// Each change appends an audit entry; a call that changes nothing appends none.
extension DeliveryAggregate {
    static let maxBarcodeLength = 128
    static let maxTextLength = 500
    static let maxMoneyCents: Int64 = 1_000_000_000_000

    public static func new(id: String, userID: String, name: String?, at now: Timestamp, actor: String?) -> DeliveryAggregate {
        var aggregate = DeliveryAggregate(
            session: DeliverySession(
                id: id, userID: userID, name: name, status: .open, version: 0, createdAt: now, startedAt: nil, pausedAt: nil,
                completedAt: nil, archivedAt: nil, wasReused: false, reuseCount: 0, packagesTotal: 0, packagesDelivered: 0,
                packagesFailed: 0, totalRevenueCents: 0, totalCostCents: 0, financialSnapshot: nil),
            addresses: [], deliverers: [], packages: [], audit: [])
        aggregate.record("session.created", actor: actor ?? userID, details: ["user_id": .string(userID), "name": name.map(JSONValue.string) ?? .null], at: now)
        return aggregate
    }

    // MARK: open

    public mutating func addPackages(_ incoming: [NewPackage], ids: () -> String, at now: Timestamp, actor: String?, limit: Int = 1000) throws -> AddPackagesOutcome {
        try requireWritable(action: "add packages to", allowed: [.open])
        guard !incoming.isEmpty else { throw DeliveryError.invalid(field: "packages", detail: "packages must list at least one package.") }
        guard incoming.count <= limit else { throw DeliveryError.invalid(field: "packages", detail: "At most \(limit) packages per call.") }
        // Validate everything first: a bad package refuses the whole call, nothing half-added.
        var cleaned: [(barcode: String, package: NewPackage)] = []
        for (index, package) in incoming.enumerated() {
            cleaned.append((try Self.validate(package, field: "packages[\(index)]"), package))
        }
        var known = Set(packages.map(\.barcode))
        // Address text → id, so that a large import does not scan the addresses once per package.
        var addressIDs = Dictionary(addresses.map { ($0.key, $0.id) }, uniquingKeysWith: { first, _ in first })
        var outcome = AddPackagesOutcome(added: [], duplicates: [])
        var nextPosition = (packages.map(\.position).max() ?? -1) + 1
        for (barcode, package) in cleaned {
            guard known.insert(barcode).inserted else {
                outcome.duplicates.append(barcode)
                continue
            }
            let addressID = package.address.map { address in
                let key = Self.addressKey(address)
                if let known = addressIDs[key] { return known }
                let id = upsertAddress(address, ids: ids)
                addressIDs[key] = id
                return id
            }
            let added = Package(
                id: ids(), barcode: barcode, status: .pending, valueCents: package.valueCents ?? 0,
                recipient: package.recipient.flatMap(Self.trimmedOrNil), addressID: addressID, assignedDelivererID: nil,
                pickedUpAt: nil, deliveredAt: nil, failedAt: nil, failureReason: nil, createdAt: now, position: nextPosition)
            nextPosition += 1
            packages.append(added)
            outcome.added.append(added)
        }
        recalculate()
        // Recorded even when every barcode was a duplicate: the attempt is part of the history.
        record(
            "packages.added", actor: actor ?? session.userID,
            details: [
                "added": .array(outcome.added.map { .string($0.barcode) }),
                "duplicates": .array(outcome.duplicates.map(JSONValue.string)),
            ], at: now)
        return outcome
    }

    public mutating func removePackage(_ packageID: String, at now: Timestamp, actor: String?) throws {
        try requireWritable(action: "remove packages from", allowed: [.open])
        guard let index = packages.firstIndex(where: { $0.id == packageID }) else { throw DeliveryError.packageNotFound(packageID) }
        let removed = packages.remove(at: index)
        recalculate()
        record("package.removed", actor: actor ?? session.userID, details: ["package_id": .string(removed.id), "barcode": .string(removed.barcode)], at: now)
    }

    public mutating func reuse(by userID: String, at now: Timestamp, actor: String?) throws {
        guard userID == session.userID else { throw DeliveryError.sessionNotFound(session.id) }
        try requireWritable(action: "reuse", allowed: [.open])
        session.wasReused = true
        session.reuseCount += 1
        record("session.reused", actor: actor ?? userID, details: ["reuse_count": .int(Int64(session.reuseCount))], at: now)
    }

    public mutating func start(deliverers incoming: [NewDeliverer], assignments: [String: String], at now: Timestamp, actor: String?) throws {
        try requireWritable(action: "start", allowed: [.open])
        guard !incoming.isEmpty else { throw DeliveryError.invalid(field: "deliverers", detail: "start needs at least one deliverer.") }
        var seen = Set<String>()
        var newDeliverers: [SessionDeliverer] = []
        for (index, deliverer) in incoming.enumerated() {
            let field = "deliverers[\(index)]"
            // A deliverer's id is a person's id: it names who may read the session's events.
            let id = deliverer.delivererID
            guard PersonID.isValid(id) else {
                throw DeliveryError.invalid(field: "\(field).deliverer_id", detail: "deliverer_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ + -.")
            }
            guard seen.insert(id).inserted else {
                throw DeliveryError.invalid(field: "\(field).deliverer_id", detail: "Deliverer \(id) is listed twice.")
            }
            try Self.validateMoney(deliverer.baseSalaryCents, field: "\(field).base_salary_cents")
            try Self.validateMoney(deliverer.commissionPerDeliveryCents, field: "\(field).commission_per_delivery_cents")
            newDeliverers.append(
                SessionDeliverer(
                    id: id, name: deliverer.name.flatMap(Self.trimmedOrNil), baseSalaryCents: deliverer.baseSalaryCents,
                    commissionPerDeliveryCents: deliverer.commissionPerDeliveryCents, packagesAssigned: 0, packagesDelivered: 0,
                    packagesFailed: 0, position: index))
        }
        guard !packages.isEmpty else { throw DeliveryError.noPackages }
        for (packageID, delivererID) in assignments.sorted(by: { $0.key < $1.key }) {
            guard packages.contains(where: { $0.id == packageID }) else {
                throw DeliveryError.invalid(field: "assignments.\(packageID)", detail: "Package \(packageID) is not in this session.")
            }
            guard seen.contains(delivererID) else {
                throw DeliveryError.invalid(field: "assignments.\(packageID)", detail: "Deliverer \(delivererID) is not in the deliverers list.")
            }
        }
        deliverers = newDeliverers
        assign(explicit: assignments)
        session.status = .active
        session.startedAt = now
        record(
            "session.started", actor: actor ?? session.userID,
            details: [
                "deliverers": .array(deliverers.map { .string($0.id) }),
                "assignments": .object(Dictionary(uniqueKeysWithValues: packages.map { ($0.id, JSONValue.string($0.assignedDelivererID ?? "")) })),
            ], at: now)
    }

    /// The caller's assignments first; the rest by address, each address to whoever has fewest.
    mutating func assign(explicit: [String: String]) {
        var load = Dictionary(uniqueKeysWithValues: deliverers.map { ($0.id, 0) })
        for index in packages.indices {
            if let delivererID = explicit[packages[index].id] {
                packages[index].assignedDelivererID = delivererID
                load[delivererID, default: 0] += 1
            }
        }
        var groups: [[Int]] = []
        var groupOfAddress: [String: Int] = [:]
        for index in packages.indices where explicit[packages[index].id] == nil {
            if let addressID = packages[index].addressID, let group = groupOfAddress[addressID] {
                groups[group].append(index)
            } else {
                if let addressID = packages[index].addressID { groupOfAddress[addressID] = groups.count }
                groups.append([index])
            }
        }
        for group in groups {
            // Fewest packages wins; ties go to the deliverer listed first.
            guard let target = deliverers.min(by: { (load[$0.id] ?? 0, $0.position) < (load[$1.id] ?? 0, $1.position) }) else { return }
            for index in group { packages[index].assignedDelivererID = target.id }
            load[target.id, default: 0] += group.count
        }
        recalculate()
    }

    // MARK: active

    /// Marks a package picked up, delivered or failed. Delivering (or failing, or picking up) the
    /// same package twice changes nothing the second time. Completes the session when every
    /// package is final.
    public mutating func mark(_ mark: DeliveryMark, _ reference: PackageReference, by delivererID: String, reason: String?, at now: Timestamp, actor: String?) throws -> Package {
        let verb = mark == .pickedUp ? "picked up" : mark.rawValue
        try requireWritable(action: "record deliveries in", allowed: [.active])
        guard let delivererID = Self.trimmedOrNil(delivererID) else {
            throw DeliveryError.invalid(field: "deliverer_id", detail: "deliverer_id is required.")
        }
        guard deliverer(id: delivererID) != nil else {
            throw DeliveryError.invalid(field: "deliverer_id", detail: "Deliverer \(delivererID) is not in this session.")
        }
        let index = try packageIndex(reference)
        var package = packages[index]
        guard package.assignedDelivererID == delivererID else {
            throw DeliveryError.wrongDeliverer(packageID: package.id, assignedTo: package.assignedDelivererID, caller: delivererID)
        }
        var cleanReason: String?
        if mark == .failed {
            guard let text = reason.flatMap(Self.trimmedOrNil), text.count <= Self.maxTextLength else {
                throw DeliveryError.invalid(field: "reason", detail: "reason is required to mark a package failed (at most 500 characters).")
            }
            cleanReason = text
        }
        switch (mark, package.status) {
        case (.pickedUp, .pickedUp), (.delivered, .delivered), (.failed, .failed):
            return package  // the same call again: counted once, nothing to record
        case (_, .delivered), (_, .failed):
            throw DeliveryError.packageFinal(packageID: package.id, status: package.status, action: verb)
        case (.pickedUp, _):
            package.status = .pickedUp
            package.pickedUpAt = now
        case (.delivered, _):
            package.status = .delivered
            package.deliveredAt = now
        case (.failed, _):
            package.status = .failed
            package.failedAt = now
            package.failureReason = cleanReason
        }
        packages[index] = package
        recalculate()
        var details: [String: JSONValue] = [
            "package_id": .string(package.id), "barcode": .string(package.barcode), "deliverer_id": .string(delivererID),
        ]
        if mark == .delivered { details["value_cents"] = .int(package.valueCents) }
        if let cleanReason { details["reason"] = .string(cleanReason) }
        record("package.\(mark.rawValue)", actor: actor ?? delivererID, details: .object(details), at: now)
        if packages.allSatisfy({ $0.status.isFinal }) {
            close(at: now, actor: "system", reason: "every package is delivered or failed")
        }
        return package
    }

    public mutating func reassign(_ packageID: String, to delivererID: String, at now: Timestamp, actor: String?) throws -> Package {
        try requireWritable(action: "reassign packages in", allowed: [.active, .paused])
        guard let index = packages.firstIndex(where: { $0.id == packageID }) else { throw DeliveryError.packageNotFound(packageID) }
        guard let delivererID = Self.trimmedOrNil(delivererID), deliverer(id: delivererID) != nil else {
            throw DeliveryError.invalid(field: "deliverer_id", detail: "Deliverer \(delivererID) is not in this session.")
        }
        let package = packages[index]
        guard !package.status.isFinal else {
            throw DeliveryError.packageFinal(packageID: packageID, status: package.status, action: "reassigned")
        }
        guard package.assignedDelivererID != delivererID else { return package }
        packages[index].assignedDelivererID = delivererID
        recalculate()
        record(
            "package.reassigned", actor: actor ?? session.userID,
            details: ["package_id": .string(packageID), "from": package.assignedDelivererID.map(JSONValue.string) ?? .null, "to": .string(delivererID)],
            at: now)
        return packages[index]
    }

    public mutating func pause(at now: Timestamp, actor: String?) throws {
        try requireWritable(action: "pause", allowed: [.active])
        session.status = .paused
        session.pausedAt = now
        record("session.paused", actor: actor ?? session.userID, details: [:], at: now)
    }

    public mutating func resume(at now: Timestamp, actor: String?) throws {
        try requireWritable(action: "resume", allowed: [.paused])
        session.status = .active
        session.pausedAt = nil
        record("session.resumed", actor: actor ?? session.userID, details: [:], at: now)
    }

    /// The owner closes the session; packages not yet final stay as they are.
    public mutating func complete(at now: Timestamp, actor: String?) throws {
        try requireWritable(action: "complete", allowed: [.active, .paused])
        close(at: now, actor: actor ?? session.userID, reason: "completed by the owner")
    }

    public mutating func archive(at now: Timestamp, actor: String?) throws {
        guard session.status == .completed else {
            if session.status == .archived { throw DeliveryError.readOnly(.archived) }
            throw DeliveryError.invalidState(action: "archive", status: session.status, allowed: [.completed])
        }
        session.status = .archived
        session.archivedAt = now
        record("session.archived", actor: actor ?? session.userID, details: [:], at: now)
    }

    // MARK: helpers

    mutating func close(at now: Timestamp, actor: String, reason: String) {
        recalculate()
        session.status = .completed
        session.completedAt = now
        session.pausedAt = nil
        let snapshot = FinancialSnapshot(
            totalRevenueCents: session.totalRevenueCents, totalCostCents: session.totalCostCents,
            totalProfitCents: session.totalProfitCents, packagesTotal: session.packagesTotal,
            packagesDelivered: session.packagesDelivered, packagesFailed: session.packagesFailed,
            packagesPending: session.packagesTotal - session.packagesDelivered - session.packagesFailed,
            deliverers: deliverers,
            completedAt: now)
        session.financialSnapshot = snapshot
        record(
            "session.completed", actor: actor,
            details: [
                "reason": .string(reason), "total_revenue_cents": .int(snapshot.totalRevenueCents),
                "total_cost_cents": .int(snapshot.totalCostCents), "total_profit_cents": .int(snapshot.totalProfitCents),
            ], at: now)
    }

    /// Recomputes every derived figure from the packages, so counts and money cannot drift.
    mutating func recalculate() {
        var total = 0
        var delivered = 0
        var failed = 0
        var revenue: Int64 = 0
        // Tallies by deliverer position: sessions have a handful of deliverers, so a linear match
        // beats hashing every package's deliverer id.
        var assigned = [Int](repeating: 0, count: deliverers.count)
        var deliveredBy = assigned
        var failedBy = assigned
        // Indexed access reads the packages in place; `for package in packages` would copy each one.
        for index in packages.indices {
            total += 1
            var slot: Int?
            if packages[index].assignedDelivererID != nil {
                slot = deliverers.indices.first { deliverers[$0].id == packages[index].assignedDelivererID }
            }
            if let slot { assigned[slot] += 1 }
            switch packages[index].status {
            case .delivered:
                delivered += 1
                revenue += packages[index].valueCents
                if let slot { deliveredBy[slot] += 1 }
            case .failed:
                failed += 1
                if let slot { failedBy[slot] += 1 }
            case .pending, .pickedUp:
                break
            }
        }
        var cost: Int64 = 0
        for index in deliverers.indices {
            deliverers[index].packagesAssigned = assigned[index]
            deliverers[index].packagesDelivered = deliveredBy[index]
            deliverers[index].packagesFailed = failedBy[index]
            cost += deliverers[index].totalEarnedCents
        }
        session.packagesTotal = total
        session.packagesDelivered = delivered
        session.packagesFailed = failed
        session.totalRevenueCents = revenue
        session.totalCostCents = cost
    }

    mutating func record(_ action: String, actor: String?, details: JSONValue, at now: Timestamp) {
        let seq = (audit.last?.seq ?? 0) + 1
        let previous = audit.last?.hash ?? AuditChain.genesis
        let text = details.canonicalText()
        let hash = AuditChain.hash(previous: previous, stream: session.id, seq: seq, action: action, actorID: actor, createdAt: now, details: text)
        audit.append(AuditEntry(seq: seq, action: action, actorID: actor, details: text, createdAt: now, prevHash: previous, hash: hash))
    }

    func requireWritable(action: String, allowed: [SessionStatus]) throws {
        if session.status.isReadOnly { throw DeliveryError.readOnly(session.status) }
        guard allowed.contains(session.status) else {
            throw DeliveryError.invalidState(action: action, status: session.status, allowed: allowed)
        }
    }

    func packageIndex(_ reference: PackageReference) throws -> Int {
        switch reference {
        case .id(let id):
            guard let index = packages.firstIndex(where: { $0.id == id }) else { throw DeliveryError.packageNotFound(id) }
            return index
        case .barcode(let barcode):
            let clean = barcode.trimmingCharacters(in: .whitespaces)
            guard let index = packages.firstIndex(where: { $0.barcode == clean }) else { throw DeliveryError.packageNotFound(clean) }
            return index
        }
    }

    mutating func upsertAddress(_ address: NewAddress, ids: () -> String) -> String {
        let key = Self.addressKey(address)
        if let existing = addresses.first(where: { $0.key == key }) { return existing.id }
        let id = ids()
        addresses.append(
            Address(
                id: id, key: key, street: address.street.trimmingCharacters(in: .whitespaces),
                number: address.number.flatMap(Self.trimmedOrNil), district: address.district.flatMap(Self.trimmedOrNil),
                city: address.city.flatMap(Self.trimmedOrNil), state: address.state.flatMap(Self.trimmedOrNil),
                postalCode: address.postalCode.flatMap(Self.trimmedOrNil), latitude: address.latitude, longitude: address.longitude))
        return id
    }

    /// Same text, same address: case, spacing and punctuation in the postal code do not matter.
    static func addressKey(_ address: NewAddress) -> String {
        let parts = [address.street, address.number, address.district, address.city, address.state, address.postalCode?.filter(\.isNumber)]
        return parts.map { ($0 ?? "").lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ") }.joined(separator: "|")
    }

    static func validate(_ package: NewPackage, field: String) throws -> String {
        guard let barcode = trimmedOrNil(package.barcode), barcode.count <= maxBarcodeLength,
            barcode.unicodeScalars.allSatisfy({ !$0.properties.isWhitespace || $0 == " " }), !barcode.contains("\n")
        else {
            throw DeliveryError.invalid(field: "\(field).barcode", detail: "barcode must be a non-empty string of at most 128 characters.")
        }
        if let value = package.valueCents { try validateMoney(value, field: "\(field).value_cents") }
        if let recipient = package.recipient, recipient.count > maxTextLength {
            throw DeliveryError.invalid(field: "\(field).recipient", detail: "recipient is longer than 500 characters.")
        }
        if let address = package.address {
            guard trimmedOrNil(address.street) != nil else {
                throw DeliveryError.invalid(field: "\(field).address.street", detail: "street must not be empty.")
            }
            for (name, value) in [("street", address.street), ("number", address.number), ("district", address.district), ("city", address.city), ("state", address.state), ("postal_code", address.postalCode)] {
                if let value, value.count > maxTextLength {
                    throw DeliveryError.invalid(field: "\(field).address.\(name)", detail: "\(name) is longer than 500 characters.")
                }
            }
            if let latitude = address.latitude, !(-90...90).contains(latitude) {
                throw DeliveryError.invalid(field: "\(field).address.latitude", detail: "latitude must be between -90 and 90.")
            }
            if let longitude = address.longitude, !(-180...180).contains(longitude) {
                throw DeliveryError.invalid(field: "\(field).address.longitude", detail: "longitude must be between -180 and 180.")
            }
        }
        return barcode
    }

    static func validateMoney(_ cents: Int64, field: String) throws {
        guard cents >= 0, cents <= maxMoneyCents else {
            throw DeliveryError.invalid(field: field, detail: "\(field) must be a whole number of cents from 0 to \(maxMoneyCents).")
        }
    }

    static func trimmedOrNil(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : trimmed
    }
}

extension NewPackage {
    /// What is wrong with this package, if anything (`address.street`, and what to fix), checked
    /// by the same rules `addPackages` applies: for imports that report every bad row at once.
    public var invalidField: (field: String, detail: String)? {
        do {
            _ = try DeliveryAggregate.validate(self, field: "p")
            return nil
        } catch DeliveryError.invalid(let field, let detail) {
            return (String(field.dropFirst(2)), detail)
        } catch {
            return ("barcode", "\(error)")
        }
    }
}
