import Foundation
import Kernel
#if canImport(Glibc)
import Glibc
#endif

/// The SSRF guard: which addresses a webhook may be delivered to. Refused unless allowed: private
/// (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (169.254/16 — cloud metadata —,
/// fe80::/10), CGNAT (100.64/10), unspecified, reserved and documentation ranges, multicast and
/// broadcast; IPv4 inside IPv6 (mapped, NAT64, 6to4) is judged as the IPv4 address it carries.
/// `WEBHOOK_ALLOW_PRIVATE=true` lifts the refusal of private, loopback, link-local and CGNAT
/// addresses (never of multicast or unspecified ones); `WEBHOOK_ALLOWED_HOSTS` names hosts or CIDR
/// ranges that are allowed whatever they are.
public struct ReceiverGuard: Sendable, Equatable {
    public var allowPrivate: Bool
    /// Host names (lower case) allowed whatever they resolve to.
    public var allowedHosts: Set<String>
    /// Address ranges allowed whatever they are.
    public var allowedRanges: [IPRange]

    public init(allowPrivate: Bool = false, allowList: [String] = []) throws(AllowListError) {
        self.allowPrivate = allowPrivate
        var hosts: Set<String> = []
        var ranges: [IPRange] = []
        for entry in allowList.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) where !entry.isEmpty {
            if let range = IPRange(entry) {
                ranges.append(range)
            } else if entry.contains("/") || entry.contains(" ") {
                throw AllowListError(entry: entry)
            } else {
                hosts.insert(entry)
            }
        }
        self.allowedHosts = hosts
        self.allowedRanges = ranges
    }

    public struct AllowListError: Error, Equatable {
        public var entry: String
    }

    /// Why an address is refused, or nil when it may be used.
    public func refusal(host: String, address: IPAddress) -> String? {
        if allowedHosts.contains(host.lowercased()) || allowedRanges.contains(where: { $0.contains(address) }) { return nil }
        guard let kind = address.special else { return nil }
        if allowPrivate, kind.liftedByAllowPrivate { return nil }
        return "\(address) is \(kind.rawValue)"
    }

    /// Resolves `host` (no lookup for an address literal) and checks every address it has; the
    /// first one is where to connect, so the connection goes to an address that was checked.
    /// Any refused address refuses the host, so a name that also points inside is never used.
    public func check(host: String) async throws(Refusal) -> IPAddress {
        let addresses: [IPAddress]
        if let literal = IPAddress(host) {
            addresses = [literal]
        } else {
            // A resolver that does not answer must not hold a sending worker: 5 s at most.
            addresses = await Self.resolveWithin(host, seconds: Self.resolveSeconds)
        }
        guard let first = addresses.first else { throw Refusal(reason: "\(host) does not resolve (within \(Self.resolveSeconds) s)") }
        for address in addresses {
            if let reason = refusal(host: host, address: address) {
                throw Refusal(reason: "\(host): \(reason) (set WEBHOOK_ALLOW_PRIVATE=true or WEBHOOK_ALLOWED_HOSTS to allow it)")
            }
        }
        return first
    }

    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { "refused: \(reason)" }
    }

    static let resolveSeconds = 5

    /// The addresses of `host`, or none if the lookup takes longer than `seconds`.
    static func resolveWithin(_ host: String, seconds: Int) async -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        let answer = FirstAnswer()
        return await withCheckedContinuation { continuation in
            answer.continuation = continuation
            Thread.detachNewThread { answer.give(resolveBlocking(host)) }
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                answer.give([])
            }
        }
    }

    /// Resumes a continuation with whichever answer comes first.
    final class FirstAnswer: @unchecked Sendable {
        private let lock = NSLock()
        var continuation: CheckedContinuation<[IPAddress], Never>?

        func give(_ addresses: [IPAddress]) {
            lock.lock()
            let waiting = continuation
            continuation = nil
            lock.unlock()
            waiting?.resume(returning: addresses)
        }
    }

    /// getaddrinfo on a thread of its own (it blocks).
    static func resolve(_ host: String) async -> [IPAddress] {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: resolveBlocking(host))
            }
        }
    }

    static func resolveBlocking(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let list = result else { return [] }
        defer { freeaddrinfo(list) }
        var addresses: [IPAddress] = []
        var pointer: UnsafeMutablePointer<addrinfo>? = list
        while let info = pointer {
            if let sockaddr = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET:
                    let bytes = sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } }
                    addresses.append(IPAddress(bytes: bytes))
                case AF_INET6:
                    let bytes = sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } }
                    addresses.append(IPAddress(bytes: bytes))
                default: break
                }
            }
            pointer = info.pointee.ai_next
        }
        var seen: Set<IPAddress> = []
        return addresses.filter { seen.insert($0).inserted }
    }
}

extension IPAddress {
    public enum Special: String, Sendable {
        case loopback = "a loopback address"
        case privateNetwork = "a private address"
        case linkLocal = "a link-local address"
        case sharedCGNAT = "a carrier-grade NAT address"
        case unspecified = "an unspecified address"
        case reserved = "a reserved address"
        case multicast = "a multicast address"

        var liftedByAllowPrivate: Bool {
            switch self {
            case .loopback, .privateNetwork, .linkLocal, .sharedCGNAT: true
            case .unspecified, .reserved, .multicast: false
            }
        }
    }

    /// What kind of special address this is, or nil for an ordinary public one.
    public var special: Special? {
        if let v4 = embeddedIPv4 { return v4.special }
        for (range, kind) in Self.specialRanges where range.contains(self) { return kind }
        return nil
    }

    static let specialRanges: [(IPRange, Special)] = ([
        ("0.0.0.0/8", .unspecified), ("10.0.0.0/8", .privateNetwork), ("100.64.0.0/10", .sharedCGNAT), ("127.0.0.0/8", .loopback),
        ("169.254.0.0/16", .linkLocal), ("172.16.0.0/12", .privateNetwork), ("192.0.0.0/24", .reserved), ("192.0.2.0/24", .reserved),
        ("192.88.99.0/24", .reserved), ("192.168.0.0/16", .privateNetwork), ("198.18.0.0/15", .reserved), ("198.51.100.0/24", .reserved),
        ("203.0.113.0/24", .reserved), ("224.0.0.0/4", .multicast), ("240.0.0.0/4", .reserved),
        ("::/128", .unspecified), ("::1/128", .loopback), ("::/96", .reserved), ("100::/64", .reserved), ("2001::/23", .reserved),
        ("2001:db8::/32", .reserved), ("fc00::/7", .privateNetwork), ("fe80::/10", .linkLocal), ("fec0::/10", .reserved), ("ff00::/8", .multicast),
    ] as [(String, Special)]).map { (IPRange($0.0)!, $0.1) }
}
