import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Parses a literal (IPv6 may come in brackets, as in a URL).
    public init?(_ text: String) {
        var text = text
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: v6) { Array($0) }
            return
        }
        return nil
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        return ok ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }

    /// The IPv4 address an IPv6 one carries (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16).
    public var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0] == 0x20, bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        return nil
    }
}

/// A CIDR range (`10.0.0.0/8`, `fd00::/8`); a bare address is a range of one.
public struct IPRange: Sendable, Equatable {
    public var network: IPAddress
    public var prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let bits = address.bytes.count * 8
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...bits).contains(prefix) else { return nil }
            self.prefix = prefix
        } else {
            self.prefix = bits
        }
        self.network = address
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = prefix
        for index in 0..<address.bytes.count where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - take))
            if address.bytes[index] & mask != network.bytes[index] & mask { return false }
            remaining -= take
        }
        return true
    }
}

/// The proxies whose forwarding headers are believed (`TRUSTED_PROXIES`, CIDRs). Behind a reverse
/// proxy every client arrives from the proxy's address, so a per-address rule (the failed
/// authentication throttle) would treat them all as one; but a header is only as trustworthy as
/// the peer that sent it, so it is read only when the socket's peer is one of these.
public struct TrustedProxies: Sendable, Equatable {
    public var ranges: [IPRange]

    public init(ranges: [IPRange] = []) { self.ranges = ranges }

    /// Comma-separated CIDRs or addresses; nil names the first entry that is neither.
    public static func parse(_ text: String) -> Result<TrustedProxies, ParseError> {
        var ranges: [IPRange] = []
        for part in text.split(separator: ",") {
            let entry = part.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { continue }
            guard let range = IPRange(entry) else { return .failure(ParseError(entry: entry)) }
            ranges.append(range)
        }
        return .success(TrustedProxies(ranges: ranges))
    }

    public struct ParseError: Error, Equatable { public var entry: String }

    public var isEmpty: Bool { ranges.isEmpty }

    func trusts(_ text: String) -> Bool {
        guard let address = IPAddress(text) else { return false }
        let unmapped = address.bytes.count == 16 && address.bytes[0..<10].allSatisfy({ $0 == 0 }) && address.bytes[10] == 0xff && address.bytes[11] == 0xff
            ? IPAddress(bytes: Array(address.bytes[12..<16])) : address
        return ranges.contains { $0.contains(unmapped) || $0.contains(address) }
    }

    /// The client's address: the socket's peer, unless the peer is a trusted proxy; then the hops
    /// it forwarded (`Forwarded: for=`, else `X-Forwarded-For`) read from the nearest back, the
    /// first one that is not itself a trusted proxy. A client cannot choose its address by sending
    /// the header itself: what it wrote is left of what the trusted proxy appended.
    public func client(peer: String?, forwarded: [String], forwardedFor: [String]) -> String? {
        guard let peer, !ranges.isEmpty, trusts(peer) else { return peer }
        let hops = forwarded.isEmpty ? Self.forwardedForHops(forwardedFor) : Self.forwardedHops(forwarded)
        guard !hops.isEmpty else { return peer }
        for hop in hops.reversed() where !trusts(hop) { return hop }
        return hops.first
    }

    /// `X-Forwarded-For: client, proxy1, proxy2` (every header line, in order).
    static func forwardedForHops(_ lines: [String]) -> [String] {
        lines.flatMap { $0.split(separator: ",") }.map { normalized(String($0)) }.filter { !$0.isEmpty }
    }

    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`.
    static func forwardedHops(_ lines: [String]) -> [String] {
        var hops: [String] = []
        for element in lines.flatMap({ $0.split(separator: ",") }) {
            for pair in element.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "for" else { continue }
                hops.append(normalized(String(parts[1])))
            }
        }
        return hops.filter { !$0.isEmpty }
    }

    /// An address without quotes, brackets or port (`"[2001:db8::1]:4711"` → `2001:db8::1`).
    static func normalized(_ hop: String) -> String {
        var text = hop.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") { return String(text[text.index(after: text.startIndex)..<close]) }
        // IPv4 with a port; a bare IPv6 address has several colons and no port.
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return text
    }
}
