import Foundation
import Access
import CSV
import Delivery
import Kernel

/// `package-import`: a CSV of packages into an open session, all or nothing. Every row is
/// checked by the delivery rules first; any bad row fails the job with every row's errors, and
/// nothing is added. The packages and the job's success commit in one transaction.
struct PackageImport: Automation {
    let delivery: DeliveryService
    let slug = "package-import"
    static let columns = ["barcode", "value_cents", "recipient", "street", "number", "district", "city", "state", "postal_code"]
    static let maxRows = 10_000

    func accept(_ payload: JSONValue, caller: Caller) async throws {
        let (sessionID, _) = try Self.fields(payload)
        try await delivery.session(sessionID, caller: caller).authorize(caller, .manage)
    }

    static func fields(_ payload: JSONValue) throws -> (sessionID: String, csv: String) {
        guard case .string(let sessionID)? = payload["session_id"], !sessionID.isEmpty else {
            throw Problem.validation("payload.session_id", "payload.session_id is required.")
        }
        guard case .string(let csv)? = payload["csv"], !csv.isEmpty else {
            throw Problem.validation("payload.csv", "payload.csv is required: a CSV text with the header \(columns.joined(separator: ",")).")
        }
        return (sessionID, csv)
    }

    func run(_ job: SubmissionJob) async throws -> AutomationOutcome {
        let (sessionID, csv) = try Self.fields(job.payload)
        let parsed = Self.parse(csv)
        guard parsed.errors.isEmpty else { return .failed(["errors": .array(parsed.errors)]) }
        _ = try await delivery.addPackages(sessionID, parsed.packages, caller: job.caller, limit: Self.maxRows) { outcome in
            [job.success(json: DeliveryService.json(outcome))]
        }
        return .committed
    }

    /// The packages of a CSV, or every problem found: `{row, field, message}`, rows counted from 1
    /// after the header.
    static func parse(_ text: String) -> (packages: [NewPackage], errors: [JSONValue]) {
        func error(_ row: Int, _ field: String, _ message: String) -> JSONValue {
            ["row": .int(Int64(row)), "field": .string(field), "message": .string(message)]
        }
        let reader: CSVReader
        do {
            reader = try CSVReader(string: text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text, hasHeaderRow: true, trimFields: true)
        } catch let readError {
            return ([], [error(0, "csv", "The CSV could not be read: \(readError)")])
        }
        let header = (reader.headerRow ?? []).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        var errors: [JSONValue] = []
        for name in header where !columns.contains(name) {
            errors.append(error(0, name, "Unknown column \(name); the columns are \(columns.joined(separator: ","))."))
        }
        guard header.contains("barcode") else {
            return ([], errors + [error(0, "barcode", "The header must name a barcode column.")])
        }
        let index = Dictionary(header.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var packages: [NewPackage] = []
        var row = 0
        while let fields = reader.next() {
            row += 1
            if fields.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
            if row > maxRows {
                errors.append(error(row, "csv", "At most \(maxRows) rows in one import."))
                break
            }
            func value(_ name: String) -> String? {
                guard let position = index[name], position < fields.count else { return nil }
                let text = fields[position].trimmingCharacters(in: .whitespaces)
                return text.isEmpty ? nil : text
            }
            if fields.count != header.count {
                errors.append(error(row, "csv", "The row has \(fields.count) fields; the header has \(header.count)."))
                continue
            }
            var cents: Int64?
            if let text = value("value_cents") {
                guard let parsed = Int64(text) else {
                    errors.append(error(row, "value_cents", "value_cents must be a whole number of cents."))
                    continue
                }
                cents = parsed
            }
            let addressFields = ["street", "number", "district", "city", "state", "postal_code"].compactMap(value)
            var address: NewAddress?
            if !addressFields.isEmpty {
                address = NewAddress(
                    street: value("street") ?? "", number: value("number"), district: value("district"), city: value("city"),
                    state: value("state"), postalCode: value("postal_code"))
            }
            let package = NewPackage(barcode: value("barcode") ?? "", valueCents: cents, recipient: value("recipient"), address: address)
            if let invalid = package.invalidField {
                errors.append(error(row, invalid.field, invalid.detail))
                continue
            }
            packages.append(package)
        }
        if let readError = reader.error {
            errors.append(error(row + 1, "csv", "The CSV is malformed: \(readError)"))
        }
        if packages.isEmpty && errors.isEmpty { errors.append(error(1, "csv", "The CSV has no rows.")) }
        return (packages, errors)
    }
}

/// `session-report`: a completed (or archived) session's finances as CSV: a row per deliverer,
/// then a `total` row with revenue, cost and profit.
struct SessionReport: Automation {
    let delivery: DeliveryService
    let slug = "session-report"

    func accept(_ payload: JSONValue, caller: Caller) async throws {
        _ = try await delivery.session(try Self.sessionID(payload), caller: caller)
    }

    static func sessionID(_ payload: JSONValue) throws -> String {
        guard case .string(let sessionID)? = payload["session_id"], !sessionID.isEmpty else {
            throw Problem.validation("payload.session_id", "payload.session_id is required.")
        }
        return sessionID
    }

    func run(_ job: SubmissionJob) async throws -> AutomationOutcome {
        let aggregate = try await delivery.session(try Self.sessionID(job.payload), caller: job.caller)
        guard let snapshot = aggregate.session.financialSnapshot else {
            return .failed(["message": .string("Session \(aggregate.id) is \(aggregate.session.status.rawValue); a report needs a completed session.")])
        }
        return .succeeded(["csv": .string(try Self.csv(snapshot, sessionID: aggregate.id))])
    }

    static let header = [
        "kind", "session_id", "deliverer_id", "name", "packages_assigned", "packages_delivered", "packages_failed",
        "base_salary_cents", "commission_per_delivery_cents", "total_earned_cents", "total_revenue_cents", "total_cost_cents",
        "total_profit_cents",
    ]

    static func csv(_ snapshot: FinancialSnapshot, sessionID: String) throws -> String {
        let stream = OutputStream(toMemory: ())
        let writer = try CSVWriter(stream: stream, newline: .crlf)
        try writer.write(row: header)
        for deliverer in snapshot.deliverers {
            try writer.write(row: [
                "deliverer", sessionID, deliverer.id, deliverer.name ?? "", String(deliverer.packagesAssigned), String(deliverer.packagesDelivered),
                String(deliverer.packagesFailed), String(deliverer.baseSalaryCents), String(deliverer.commissionPerDeliveryCents),
                String(deliverer.totalEarnedCents), "", "", "",
            ].map(SpreadsheetCell.safe))
        }
        try writer.write(row: [
            "total", sessionID, "", "", String(snapshot.packagesTotal), String(snapshot.packagesDelivered), String(snapshot.packagesFailed),
            "", "", "", String(snapshot.totalRevenueCents), String(snapshot.totalCostCents), String(snapshot.totalProfitCents),
        ].map(SpreadsheetCell.safe))
        writer.stream.close()
        let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
