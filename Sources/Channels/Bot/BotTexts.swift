import Delivery
import Foundation
import Kernel

/// What the delivery bot says, in Brazilian Portuguese, and the exact button texts of the contract.
enum BotTexts {
    static let newSession = "➕ Nova Sessão"
    static let mySessions = "📂 Minhas Sessões"
    static let reuse = "🔄 Reutilizar"
    static let dashboard = "📊 Dashboard"
    static let delivered = "✅ Entregue"
    static let failed = "❌ Falhou"
    static let startButton = "▶️ Iniciar"

    static let menuKeyboard = BotAPI.Keyboard([
        [BotAPI.Button(newSession, data: "menu:new"), BotAPI.Button(mySessions, data: "menu:list")],
        [BotAPI.Button(reuse, data: "menu:reuse"), BotAPI.Button(dashboard, data: "menu:dash")],
    ])

    static let stranger = "Olá! Este bot é de uso privado. Peça um convite a quem administra as entregas."
    static let menu = "O que você quer fazer?"
    static let noCurrentSession = "Nenhuma sessão aberta agora. Use /sessions e toque em \(newSession) ou \(reuse)."
    static let help = """
        Comandos:
        /sessions — menu das sessões
        /start_session — escolher entregadores e iniciar
        /session_dashboard — resumo da sessão atual
        /convidar NOME [SALÁRIO COMISSÃO] — convite para um entregador
        /cancel — cancelar o que estou esperando
        Para adicionar pacotes, envie os códigos, um por linha (opcional: o valor, como 12,50), ou a foto da etiqueta.
        """

    static let saoPaulo = TimeZone(identifier: "America/Sao_Paulo") ?? TimeZone(secondsFromGMT: -3 * 3600)!

    /// A session's name, or its creation time (`Sessão de 26/11 14:05`).
    static func title(_ session: DeliverySession) -> String {
        if let name = session.name { return name }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = saoPaulo
        let date = Date(timeIntervalSince1970: Double(session.createdAt.milliseconds) / 1000)
        let parts = calendar.dateComponents([.day, .month, .hour, .minute], from: date)
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "Sessão de \(two(parts.day))/\(two(parts.month)) \(two(parts.hour)):\(two(parts.minute))"
    }

    static func status(_ status: SessionStatus) -> String {
        switch status {
        case .open: "aberta"
        case .active: "em andamento"
        case .paused: "pausada"
        case .completed: "concluída"
        case .archived: "arquivada"
        }
    }

    static func packages(_ count: Int) -> String { count == 1 ? "1 pacote" : "\(count) pacotes" }

    static func dashboard(_ session: DeliverySession) -> String {
        let pending = session.packagesTotal - session.packagesDelivered - session.packagesFailed
        return """
            📊 \(title(session)) (\(status(session.status)))
            ✅ Entregues: \(session.packagesDelivered)
            ❌ Falharam: \(session.packagesFailed)
            ⏳ Pendentes: \(pending)
            💰 Receita até agora: \(Reais.format(cents: session.totalRevenueCents))
            """
    }

    static func summary(_ aggregate: DeliveryAggregate) -> String {
        let session = aggregate.session
        let snapshot = session.financialSnapshot
        let revenue = snapshot?.totalRevenueCents ?? session.totalRevenueCents
        let cost = snapshot?.totalCostCents ?? session.totalCostCents
        let profit = snapshot?.totalProfitCents ?? session.totalProfitCents
        var lines = [
            "🏁 \(title(session)) concluída!",
            "📦 \(session.packagesDelivered) entregues, \(session.packagesFailed) com falha, de \(packages(session.packagesTotal)).",
            "💰 Receita: \(Reais.format(cents: revenue))",
        ]
        for deliverer in aggregate.deliverers {
            lines.append("👤 \(deliverer.name ?? deliverer.id): \(Reais.format(cents: deliverer.totalEarnedCents)) (\(deliverer.packagesDelivered) entregues)")
        }
        lines.append("💸 Custo total: \(Reais.format(cents: cost))")
        lines.append("📈 Lucro: \(Reais.format(cents: profit))")
        return lines.joined(separator: "\n")
    }

    /// A refusal of the delivery engine, said to a person.
    static func refusal(_ error: any Error) -> String {
        if let problem = (error as? any ProblemConvertible)?.problem ?? (error as? Problem) {
            switch problem.status.code {
            case 404: return "Não encontrei essa sessão ou pacote."
            case 403: return "Você não pode fazer isso."
            case 409: return "Não foi possível agora: \(problem.detail)"
            case 422: return "Não entendi: \(problem.detail)"
            default: return "Algo deu errado (\(problem.title)). Tente de novo."
            }
        }
        return "Algo deu errado. Tente de novo em instantes."
    }
}

/// Ids (8-4-4-4-12 hex) in 22 base64url characters, so two fit in a button's 64-byte callback data.
enum CompactID {
    static func encode(_ id: String) -> String {
        let hex = id.replacingOccurrences(of: "-", with: "")
        guard hex.count == 32 else { return id }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return id }
            bytes.append(byte)
            index = next
        }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> String? {
        let base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/") + "=="
        guard let data = Data(base64Encoded: base64), data.count == 16 else { return nil }
        let hex = data.map { String(format: "%02x", $0) }.joined()
        let cuts = [8, 12, 16, 20]
        var result = ""
        for (offset, character) in hex.enumerated() {
            if cuts.contains(offset) { result.append("-") }
            result.append(character)
        }
        return result
    }
}
