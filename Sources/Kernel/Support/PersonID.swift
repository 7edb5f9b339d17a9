/// The ids people choose for people: an owner's `user_id` (the tenant) and a `deliverer_id`. They
/// are 1–64 characters of `A-Z a-z 0-9 . _ : @ + -`, so no id can carry a space, a quote, an `=`
/// or anything else another format might read as syntax. Every other id people choose (channel
/// names, contacts, barcodes) is opaque text, matched exactly.
public enum PersonID {
    public static let maximumLength = 64

    public static func isValid(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...maximumLength).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: "-"): true
            default: false
            }
        }
    }

    /// `text` when it is a valid person id; otherwise a 422 problem naming `field`.
    public static func checked(_ text: String, field: String) throws(Problem) -> String {
        guard isValid(text) else { throw Problem.validation(field, "\(field) must be 1 to \(maximumLength) characters of A-Z a-z 0-9 . _ : @ + -") }
        return text
    }
}
