import Crypto
import Foundation

/// Standard Webhooks signing: a secret is `whsec_` + base64 of random bytes; a signature is
/// `v1,` + base64(HMAC-SHA256(secret bytes, "id.timestamp.body")). While a rotated-out secret is
/// still valid, a delivery carries one signature per secret, space-separated, newest first.
public enum WebhookSignature {
    public static let prefix = "whsec_"

    /// A new secret: 32 random bytes (the specification asks for 24 to 64).
    public static func newSecret() -> String {
        prefix + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// The key bytes of a secret (with or without its `whsec_` prefix); nil when it is not base64.
    public static func key(of secret: String) -> SymmetricKey? {
        let text = secret.hasPrefix(prefix) ? String(secret.dropFirst(prefix.count)) : secret
        guard let bytes = Data(base64Encoded: text), !bytes.isEmpty else { return nil }
        return SymmetricKey(data: bytes)
    }

    /// `v1,<base64>` for one key.
    public static func sign(id: String, timestamp: Int64, body: some DataProtocol, key: SymmetricKey) -> String {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: Data("\(id).\(timestamp).".utf8))
        mac.update(data: body)
        return "v1," + Data(mac.finalize()).base64EncodedString()
    }

    /// The `webhook-signature` header: one signature per key, space-separated.
    public static func header(id: String, timestamp: Int64, body: some DataProtocol, keys: [SymmetricKey]) -> String {
        keys.map { sign(id: id, timestamp: timestamp, body: body, key: $0) }.joined(separator: " ")
    }
}
