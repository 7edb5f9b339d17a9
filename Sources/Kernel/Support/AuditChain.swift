import Crypto

/// The hash chain behind every audit trail: each entry's hash covers the previous entry's hash and
/// every stored column of its own, so changing, removing or reordering any entry breaks the chain
/// from that entry on. Details are hashed as their stored canonical text (sorted keys).
public enum AuditChain {
    public static let genesis = String(repeating: "0", count: 64)

    public static func hash(
        previous: String, stream: String, seq: Int64, action: String, actorID: String?, createdAt: Timestamp, details: String
    ) -> String {
        var hasher = SHA256()
        for part in [previous, stream, String(seq), action, actorID ?? "", String(createdAt.milliseconds), details] {
            hasher.update(data: Array(part.utf8))
            hasher.update(data: [0x1F])  // unit separator: no two field splits hash alike
        }
        return hex(Array(hasher.finalize()))
    }

    static let digits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[2 * index] = digits[Int(byte >> 4)]
                buffer[2 * index + 1] = digits[Int(byte & 0x0F)]
            }
            return bytes.count * 2
        }
    }
}
