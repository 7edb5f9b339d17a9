/// Text bound for a spreadsheet (every CSV sessiond writes: the web's export, the session report,
/// the conversations export). A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage
/// return is a formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(…)` in a recipient's
/// name would run in the owner's spreadsheet): it is written with a leading `'`, which they show
/// as text. A plain number (`-3499`, `+12.5`) is left as it is: a spreadsheet reads it as the
/// number it is, never as a formula.
public enum SpreadsheetCell {
    public static func safe(_ text: String) -> String {
        guard let first = text.unicodeScalars.first else { return text }
        if isPlainNumber(text) { return text }
        switch first {
        case "=", "+", "-", "@", "\t", "\r": return "'" + text
        default: return text
        }
    }

    public static func safe(_ row: [String]) -> [String] { row.map(safe) }

    /// An optional sign, digits, and at most one `.` followed by digits.
    static func isPlainNumber(_ text: String) -> Bool {
        var digits = Substring(text)
        if let sign = digits.first, sign == "-" || sign == "+" { digits = digits.dropFirst() }
        let parts = digits.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }
}
