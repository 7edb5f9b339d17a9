import Crypto
import Foundation

/// The shape of sessiond's secrets.
///
/// API keys are `sdk_` + 22 base62 characters (16 random bytes, 128 bits) + a 6-character base62
/// checksum of the random part. The prefix makes a key recognisable in a leak scan or a log; the
/// checksum tells a mistyped key (`malformed-key`) from a wrong one (`invalid-key`) without a
/// database lookup. Only a SHA-256 hash of the whole key is stored: the secret has 128 random bits,
/// so a fast hash is enough (no password stretching needed).
public enum KeyFormat {
    public static let prefix = "sdk_"
    static let randomLength = 22
    static let checksumLength = 6
    public static let length = prefix.count + randomLength + checksumLength
    /// How much of a key is shown in listings (`prefix`): enough to tell keys apart, not to use one.
    public static let displayedLength = prefix.count + 8

    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// A new API key.
    public static func makeKey() -> String {
        let body = base62(randomBytes(16), length: randomLength)
        return prefix + body + checksum(body)
    }

    /// What a presented credential looks like before any lookup.
    public enum Shape: Equatable {
        /// Cannot be any key: empty, too long, not printable ASCII, or one of ours with a typo.
        case malformed
        /// Well-formed: worth looking up.
        case plausible
    }

    /// ADMIN_API_KEY is any string of 32+ characters, so a foreign-looking string of that length
    /// may still be the admin key; anything shorter, or one of ours whose checksum fails, is not.
    public static func shape(of token: String) -> Shape {
        switch structure(of: token) {
        case .malformed: return .malformed
        case .foreign: return .plausible
        case .ours: return hasValidChecksum(token) ? .plausible : .malformed
        }
    }

    enum Structure { case malformed, foreign, ours }

    /// The cheap part of `shape`, without the checksum (a SHA-256): enough to decide whether a
    /// lookup is worth making. The checksum is checked only when the lookup finds nothing, to tell
    /// a typo from a key that is not ours.
    static func structure(of token: String) -> Structure {
        let bytes = token.utf8
        guard (1...512).contains(bytes.count), bytes.allSatisfy({ $0 > 32 && $0 < 127 }) else { return .malformed }
        guard token.hasPrefix(prefix) else { return bytes.count >= 32 ? .foreign : .malformed }
        guard bytes.count == length, bytes.dropFirst(prefix.utf8.count).allSatisfy(isBase62) else { return .malformed }
        return .ours
    }

    static func hasValidChecksum(_ token: String) -> Bool {
        let body = token.dropFirst(prefix.count).prefix(randomLength)
        return checksum(String(body)) == token.suffix(checksumLength)
    }

    static func isBase62(_ byte: UInt8) -> Bool {
        (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122)
    }

    /// A session or link token: 32 random bytes, base64url without padding (43 characters).
    public static func makeToken() -> String {
        Data(randomBytes(32)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func isTokenShaped(_ token: String) -> Bool {
        token.utf8.count == 43 && token.utf8.allSatisfy { byte in
            (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 45 || byte == 95
        }
    }

    /// Lower-case hex SHA-256: what is stored in place of every secret.
    public static func hash(_ secret: String) -> String {
        let digest = SHA256.hash(data: Array(secret.utf8))
        return String(unsafeUninitializedCapacity: 64) { buffer in
            var position = 0
            for byte in digest {
                buffer[position] = hexDigits[Int(byte >> 4)]
                buffer[position + 1] = hexDigits[Int(byte & 0x0F)]
                position += 2
            }
            return position
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Compares two hashes without stopping at the first difference.
    public static func constantTimeEqual(_ lhs: String, _ rhs: String) -> Bool {
        var difference: UInt8 = 0
        var left = lhs.utf8.makeIterator()
        var right = rhs.utf8.makeIterator()
        while let a = left.next() {
            guard let b = right.next() else { return false }
            difference |= a ^ b
        }
        guard right.next() == nil else { return false }
        return difference == 0
    }

    static func checksum(_ body: String) -> String {
        let digest = Array(SHA256.hash(data: Array(body.utf8)))
        return base62(Array(digest.prefix(5)), length: checksumLength)
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Big-endian base62 of `bytes`, left-padded (or truncated to the low digits) to `length`.
    static func base62(_ bytes: [UInt8], length: Int) -> String {
        var number = bytes
        var digits: [UInt8] = []
        while number.contains(where: { $0 != 0 }) && digits.count < length {
            var remainder = 0
            var next: [UInt8] = []
            next.reserveCapacity(number.count)
            for byte in number {
                let value = remainder * 256 + Int(byte)
                let quotient = value / 62
                remainder = value % 62
                if !next.isEmpty || quotient != 0 { next.append(UInt8(quotient)) }
            }
            digits.append(alphabet[remainder])
            number = next
        }
        while digits.count < length { digits.append(alphabet[0]) }
        return String(decoding: digits.reversed(), as: UTF8.self)
    }
}
