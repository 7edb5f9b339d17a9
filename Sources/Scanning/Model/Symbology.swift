/// The barcode formats a scan names (`format` in the answer), and the check digits of those
/// that carry one.
public enum Symbology: String, Sendable, CaseIterable, Codable {
    case code128, code39, code93, codabar, ean13, ean8, upca, upce, itf, qr, datamatrix
    /// A Correios registered-mail number (S10: `AA123456789BR`), printed as Code 128 or read by OCR.
    case s10
    /// Read by OCR only: digits and letters without a format of their own.
    case text

    /// What a complete text read by OCR looks like, judged by its shape and check digit: an
    /// EAN-13 (13 digits), a UPC-A (12), an ITF-14 (14), an S10 number. nil when it proves nothing.
    public static func selfChecking(_ text: String) -> Symbology? {
        let bytes = Array(text.utf8)
        if bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
            switch bytes.count {
            case 13 where gtinCheck(text): return .ean13
            case 12 where gtinCheck(text): return .upca
            case 14 where gtinCheck(text): return .itf
            case 8 where gtinCheck(text): return .ean8
            default: return nil
            }
        }
        return s10Check(text) ? .s10 : nil
    }

    /// GTIN (EAN/UPC/ITF-14) check: weights 3 and 1 from the right, the sum a multiple of 10.
    public static func gtinCheck(_ text: String) -> Bool {
        let digits = text.utf8.map { Int($0) - 48 }
        guard digits.count >= 2, digits.allSatisfy({ (0...9).contains($0) }) else { return false }
        var sum = 0
        for (index, digit) in digits.reversed().enumerated() { sum += index % 2 == 0 ? digit : digit * 3 }
        return sum % 10 == 0
    }

    /// UPU S10: two letters, eight serial digits, a check digit (weights 8 6 4 2 3 5 9 7; 11 − sum
    /// mod 11, 10 → 0, 11 → 5), two letters of the country.
    public static func s10Check(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 13, bytes[0..<2].allSatisfy(isLetter), bytes[11...].allSatisfy(isLetter),
            bytes[2..<11].allSatisfy({ $0 >= 48 && $0 <= 57 })
        else { return false }
        let weights = [8, 6, 4, 2, 3, 5, 9, 7]
        var sum = 0
        for (index, weight) in weights.enumerated() { sum += Int(bytes[2 + index] - 48) * weight }
        var check = 11 - sum % 11
        if check == 10 { check = 0 } else if check == 11 { check = 5 }
        return Int(bytes[10] - 48) == check
    }

    static func isLetter(_ byte: UInt8) -> Bool { byte >= 65 && byte <= 90 }
}
