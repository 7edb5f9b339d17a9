import Crypto
import Foundation

/// Encrypts secrets kept in the database (webhook signing secrets, bot tokens) with AES-256-GCM,
/// under a key the operator gives in the environment. A sealed value is text:
/// `v1:` + base64(nonce ‖ ciphertext ‖ tag); GCM's tag makes any change to it fail to open.
/// The associated data binds a sealed value to its row (an endpoint id), so a value copied to
/// another row does not open there.
public struct SecretBox: Sendable {
    let keyBytes: Data
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public enum Failure: Error, CustomStringConvertible {
        case badKey
        case unreadable

        public var description: String {
            switch self {
            case .badKey: "the secret key must be 32 bytes in base64"
            case .unreadable: "a stored secret does not open with this key (was the key changed?)"
            }
        }
    }

    /// A key from 32 bytes in base64 (`openssl rand -base64 32`).
    public init(base64 text: String) throws(Failure) {
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else { throw .badKey }
        self.keyBytes = bytes
    }

    public init(key: SymmetricKey) { self.keyBytes = key.withUnsafeBytes { Data($0) } }

    /// A fresh random key, as base64 text.
    public static func generateKey() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    public func seal(_ secret: String, boundTo context: String) throws -> String {
        let box = try AES.GCM.seal(Data(secret.utf8), using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw Failure.unreadable }
        return "v1:" + combined.base64EncodedString()
    }

    public func open(_ sealed: String, boundTo context: String) throws(Failure) -> String {
        guard sealed.hasPrefix("v1:"), let combined = Data(base64Encoded: String(sealed.dropFirst(3))),
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plain = try? AES.GCM.open(box, using: key, authenticating: Data(context.utf8))
        else { throw .unreadable }
        return String(decoding: plain, as: UTF8.self)
    }
}
