import Delivery
import Foundation
import Kernel
import Mustache

// What the templates read. Mustache reads stored properties by name, so each view holds the
// words and figures ready to show; a figure's `value` is the API's raw value.

/// A figure: `data-field="name" data-value="value"`, and its text for people.
struct Figure {
    var name: String
    var value: String
    var text: String

    static func count(_ name: String, _ value: Int) -> Figure { Figure(name: name, value: String(value), text: String(value)) }
    static func money(_ name: String, _ cents: Int64) -> Figure { Figure(name: name, value: String(cents), text: Reais.format(cents: cents)) }
    static func percent(_ name: String, _ value: Double) -> Figure {
        Figure(name: name, value: String(value), text: Words.percent(value))
    }
}

/// A labelled figure in a summary block.
struct Stat {
    var label: String
    var figure: Figure
}

struct UserBar {
    var userID: String
    var readOnly: Bool

    init(_ caller: Caller) {
        userID = caller.userID ?? caller.id ?? ""
        readOnly = caller.role == "viewer"
    }
}

struct ErrorView {
    var title: String
    var user: UserBar?
    var message: String
}

struct LoginView {
    var title: String
    var user: UserBar?
    var next: String
    var error: String?
}

struct StatusOption {
    var value: String
    var label: String
    var selected: Bool
}

struct SessionRow {
    var id: String
    var status: String
    var statusText: String
    var name: String
    var created: String
    var delivered: Figure
    var total: Figure
    var revenue: Figure

    init(_ session: DeliverySession) {
        id = session.id
        status = session.status.rawValue
        statusText = Words.session(session.status)
        name = session.name ?? "Sessão \(session.id.suffix(6))"
        created = Words.time(session.createdAt)
        delivered = .count("packages_delivered", session.packagesDelivered)
        total = .count("packages_total", session.packagesTotal)
        revenue = .money("total_revenue_cents", session.totalRevenueCents)
    }
}

struct SessionsView {
    var title: String
    var user: UserBar?
    var statuses: [StatusOption]
    var barcode: String
    var filtered: Bool
    var sessions: [SessionRow]
    var empty: Bool
    var nextURL: String?
}

struct DelivererRow {
    var id: String
    var name: String
    var stats: [Stat]

    init(_ deliverer: SessionDeliverer, snapshot: Bool = false) {
        id = deliverer.id
        name = deliverer.name ?? deliverer.id
        stats = [
            Stat(label: "Pacotes", figure: .count("packages_assigned", deliverer.packagesAssigned)),
            Stat(label: "Entregues", figure: .count("packages_delivered", deliverer.packagesDelivered)),
            Stat(label: "Falhas", figure: .count("packages_failed", deliverer.packagesFailed)),
            Stat(label: snapshot ? "Recebeu" : "Ganhos", figure: .money("total_earned_cents", deliverer.totalEarnedCents)),
        ]
    }
}

struct PackageRow {
    var id: String
    var status: String
    var statusText: String
    var barcode: String
    var value: String
    var deliverer: String?
    var reason: String?

    init(_ package: Package, names: [String: String]) {
        id = package.id
        status = package.status.rawValue
        statusText = Words.package(package.status)
        barcode = package.barcode
        value = Reais.format(cents: package.valueCents)
        deliverer = package.assignedDelivererID.map { names[$0] ?? $0 }
        reason = package.failureReason
    }
}

struct AuditRow {
    var seq: Int64
    var action: String
    var label: String
    var actor: String?
    var time: String
    var datetime: String
}

struct Verification {
    var valid: Figure
    var entries: Figure
    var firstBadSeq: Int64?
}

struct SessionView {
    var title: String
    var user: UserBar?
    var id: String
    var name: String
    var statusFigure: Figure
    var created: String
    var stats: [Stat]
    var progress: String
    var deliverers: [DelivererRow]
    var noDeliverers: Bool
    var packages: [PackageRow]
    var noPackages: Bool
    var eventTypes: String
    // History only.
    var snapshot: Snapshot?
    var audit: [AuditRow]
    var verification: Verification?

    struct Snapshot {
        var stats: [Stat]
        var deliverers: [DelivererRow]
        var completed: String
    }

    init(_ aggregate: DeliveryAggregate, verification: DeliveryService.Verification?, caller: Caller, liveEventTypes: String) {
        let session = aggregate.session
        title = session.name ?? "Sessão"
        user = UserBar(caller)
        id = session.id
        name = session.name ?? "Sessão \(session.id.suffix(6))"
        statusFigure = Figure(name: "status", value: session.status.rawValue, text: Words.session(session.status))
        created = Words.time(session.createdAt)
        let pending = session.packagesTotal - session.packagesDelivered - session.packagesFailed
        stats = [
            Stat(label: "Pacotes", figure: .count("packages_total", session.packagesTotal)),
            Stat(label: "Entregues", figure: .count("packages_delivered", session.packagesDelivered)),
            Stat(label: "Falhas", figure: .count("packages_failed", session.packagesFailed)),
            Stat(label: "Pendentes", figure: .count("packages_pending", pending)),
            Stat(label: "Progresso", figure: .percent("progress_percent", session.progressPercent)),
            Stat(label: "Receita até agora", figure: .money("total_revenue_cents", session.totalRevenueCents)),
        ]
        progress = String(session.progressPercent)
        deliverers = aggregate.deliverers.map { DelivererRow($0) }
        noDeliverers = aggregate.deliverers.isEmpty
        let names = Dictionary(aggregate.deliverers.map { ($0.id, $0.name ?? $0.id) }, uniquingKeysWith: { first, _ in first })
        packages = aggregate.packages.map { PackageRow($0, names: names) }
        noPackages = aggregate.packages.isEmpty
        eventTypes = liveEventTypes
        snapshot = session.financialSnapshot.map { snapshot in
            Snapshot(
                stats: [
                    Stat(label: "Receita", figure: .money("total_revenue_cents", snapshot.totalRevenueCents)),
                    Stat(label: "Custo", figure: .money("total_cost_cents", snapshot.totalCostCents)),
                    Stat(label: "Lucro", figure: .money("total_profit_cents", snapshot.totalProfitCents)),
                    Stat(label: "Pacotes", figure: .count("packages_total", snapshot.packagesTotal)),
                    Stat(label: "Entregues", figure: .count("packages_delivered", snapshot.packagesDelivered)),
                    Stat(label: "Falhas", figure: .count("packages_failed", snapshot.packagesFailed)),
                ],
                deliverers: snapshot.deliverers.map { DelivererRow($0, snapshot: true) },
                completed: Words.time(snapshot.completedAt))
        }
        audit = aggregate.audit.map { entry in
            AuditRow(
                seq: entry.seq, action: entry.action, label: Words.audit(entry.action), actor: entry.actorID, time: Words.time(entry.createdAt),
                datetime: entry.createdAt.rfc3339)
        }
        self.verification = verification.map { result in
            Verification(
                valid: Figure(name: "audit_valid", value: result.valid ? "true" : "false", text: result.valid ? "Trilha íntegra" : "Trilha adulterada"),
                entries: Figure(name: "audit_entries", value: String(result.entries), text: "\(result.entries) registros"),
                firstBadSeq: result.firstBadSeq)
        }
    }
}

/// The dashboard's words in pt-BR.
enum Words {
    static func session(_ status: SessionStatus) -> String {
        switch status {
        case .open: "Aberta"
        case .active: "Em andamento"
        case .paused: "Pausada"
        case .completed: "Concluída"
        case .archived: "Arquivada"
        }
    }

    static func package(_ status: PackageStatus) -> String {
        switch status {
        case .pending: "Pendente"
        case .pickedUp: "Coletado"
        case .delivered: "Entregue"
        case .failed: "Falhou"
        }
    }

    static let auditLabels: [String: String] = [
        "session.created": "Sessão criada", "session.reused": "Sessão retomada", "packages.added": "Pacotes adicionados",
        "package.removed": "Pacote removido", "session.started": "Entregas iniciadas", "package.picked_up": "Pacote coletado",
        "package.delivered": "Pacote entregue", "package.failed": "Entrega falhou", "package.reassigned": "Pacote passado a outro entregador",
        "session.paused": "Sessão pausada", "session.resumed": "Sessão continuada", "session.completed": "Sessão concluída",
        "session.archived": "Sessão arquivada",
    ]

    static func audit(_ action: String) -> String { auditLabels[action] ?? action }

    /// `33,33 %`.
    static func percent(_ value: Double) -> String {
        let text = value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value).replacingOccurrences(of: ".", with: ",")
        return text + "\u{00A0}%"
    }

    /// Times as people in Brazil read them: `26/11/2026 14:03` in São Paulo's time.
    static func time(_ timestamp: Timestamp) -> String {
        let date = Date(timeIntervalSince1970: Double(timestamp.milliseconds) / 1000)
        return formatter.withLock { $0.string(from: date) }
    }

    private static let formatter: LockedFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "pt_BR")
        formatter.timeZone = TimeZone(identifier: "America/Sao_Paulo") ?? TimeZone(secondsFromGMT: -3 * 3600)
        formatter.dateFormat = "dd/MM/yyyy HH:mm"
        return LockedFormatter(formatter)
    }()
}

/// DateFormatter is not thread-safe: one at a time.
final class LockedFormatter: @unchecked Sendable {
    private let lock = NSLock()
    private let formatter: DateFormatter

    init(_ formatter: DateFormatter) { self.formatter = formatter }

    func withLock<T>(_ body: (DateFormatter) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(formatter)
    }
}

// The rows and figures repeat hundreds of times on a big session's page: their fields are looked
// up by name here rather than through `Mirror` (which made a 200-package page cost 21 ms of CPU).

extension Figure: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "name": self.name
        case "value": value
        case "text": text
        default: nil
        }
    }
}

extension Stat: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "label": label
        case "figure": figure
        default: nil
        }
    }
}

extension PackageRow: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "id": id
        case "status": status
        case "statusText": statusText
        case "barcode": barcode
        case "value": value
        case "deliverer": deliverer as Any
        case "reason": reason as Any
        default: nil
        }
    }
}

extension DelivererRow: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "id": id
        case "name": self.name
        case "stats": stats
        default: nil
        }
    }
}

extension AuditRow: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "seq": seq
        case "action": action
        case "label": label
        case "actor": actor as Any
        case "time": time
        case "datetime": datetime
        default: nil
        }
    }
}

extension SessionRow: MustacheParent {
    func child(named name: String) -> Any? {
        switch name {
        case "id": id
        case "status": status
        case "statusText": statusText
        case "name": self.name
        case "created": created
        case "delivered": delivered
        case "total": total
        case "revenue": revenue
        default: nil
        }
    }
}
