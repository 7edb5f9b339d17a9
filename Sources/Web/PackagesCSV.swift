import CSV
import Delivery
import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// A closed session's packages as CSV (RFC 4180: CRLF, fields quoted when they need it), one row
/// per package in the session's order, with a header row. Values are the API's raw values.
enum PackagesCSV {
    static let header = [
        "package_id", "barcode", "delivery_status", "value_cents", "assigned_deliverer_id", "deliverer_name", "recipient",
        "picked_up_at", "delivered_at", "failed_at", "failure_reason",
    ]

    static func text(_ aggregate: DeliveryAggregate) throws -> String {
        let stream = OutputStream(toMemory: ())
        let writer = try CSVWriter(stream: stream, newline: .crlf)
        try writer.write(row: header)
        let names = Dictionary(aggregate.deliverers.map { ($0.id, $0.name ?? "") }, uniquingKeysWith: { first, _ in first })
        for package in aggregate.packages {
            try writer.write(row: [
                package.id, package.barcode, package.status.rawValue, String(package.valueCents), package.assignedDelivererID ?? "",
                package.assignedDelivererID.flatMap { names[$0] } ?? "", package.recipient ?? "", package.pickedUpAt?.rfc3339 ?? "",
                package.deliveredAt?.rfc3339 ?? "", package.failedAt?.rfc3339 ?? "", package.failureReason ?? "",
            ].map(SpreadsheetCell.safe))
        }
        writer.stream.close()
        guard let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    static func response(_ aggregate: DeliveryAggregate) throws -> Response {
        let filename = "sessao-\(aggregate.session.id).csv"
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(filename)\"", .cacheControl: "no-store",
                .xContentTypeOptions: "nosniff",
            ],
            body: .init(byteBuffer: ByteBuffer(string: try text(aggregate))))
    }
}
