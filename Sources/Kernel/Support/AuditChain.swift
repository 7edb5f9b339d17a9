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
        return hasher.finalize().map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }
}
