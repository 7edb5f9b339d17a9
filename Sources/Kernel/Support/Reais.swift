import Foundation

/// Money as Brazilians write it: `R$ 1.234,56` (`.` between thousands, `,` before the cents,
/// `-R$ 12,34` when negative), and amounts typed in chat (`12,50`, `12.50`, `R$ 1250,00`, `8`).
public enum Reais {
    /// `R$ 1.234,56` with a no-break space after `R$`, so a phone never breaks the figure.
    public static func format(cents: Int64) -> String {
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        let whole = String(magnitude / 100)
        var grouped = ""
        for (index, digit) in whole.enumerated() {
            if index > 0 && (whole.count - index) % 3 == 0 { grouped.append(".") }
            grouped.append(digit)
        }
        let fraction = magnitude % 100
        return "\(sign)R$\u{00A0}\(grouped),\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// Cents from a typed amount: digits, optionally `,` or `.` and one or two decimals, optionally
    /// after `R$`. Nil for anything else (a thousands separator included: `1.234,56` is ambiguous
    /// typed in a hurry, and the contract's forms do not have it).
    public static func parse(_ text: String) -> Int64? {
        var text = Substring(text.trimmingCharacters(in: .whitespaces))
        if text.hasPrefix("R$") { text = text.dropFirst(2).drop(while: { $0 == " " || $0 == "\u{00A0}" }) }
        guard !text.isEmpty else { return nil }
        let parts = text.split(separator: text.contains(",") ? "," : ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let wholeText = parts.first, !wholeText.isEmpty, wholeText.count <= 12, wholeText.allSatisfy(Reais.isDigit),
            let whole = Int64(wholeText)
        else { return nil }
        var cents: Int64 = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard (1...2).contains(fraction.count), fraction.allSatisfy(Reais.isDigit), let value = Int64(fraction) else { return nil }
            cents = fraction.count == 1 ? value * 10 : value
        }
        return whole * 100 + cents
    }

    static func isDigit(_ character: Character) -> Bool { character.isASCII && character.isNumber }
}
