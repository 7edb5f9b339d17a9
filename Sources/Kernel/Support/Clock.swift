import Foundation
import Synchronization

/// The time source every service takes (tests pass a manual one).
public struct WallClock: Sendable {
    private let read: @Sendable () -> Timestamp

    public init(_ read: @escaping @Sendable () -> Timestamp) { self.read = read }

    public static let system = WallClock {
        Timestamp(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }

    public func now() -> Timestamp { read() }
}

/// Time-ordered identifiers (UUID version 7 layout, lower-case): sorting them sorts by creation,
/// which keeps B-tree inserts local and gives "newest first" pagination for free.
/// Monotonic within the process, even for many IDs in one millisecond.
public final class IDGenerator: Sendable {
    private struct State {
        var lastMillis: Int64 = 0
        var counter: UInt16 = 0
    }

    private let state = Mutex(State())
    private let clock: WallClock

    public init(clock: WallClock = .system) { self.clock = clock }

    public func make() -> String {
        let (millis, counter) = state.withLock { state -> (Int64, UInt16) in
            let now = max(clock.now().milliseconds, state.lastMillis)
            if now == state.lastMillis {
                state.counter &+= 1
                if state.counter >= 0x0FFF {
                    state.lastMillis += 1
                    state.counter = 0
                }
            } else {
                state.lastMillis = now
                state.counter = UInt16.random(in: 0..<0x0400)
            }
            return (state.lastMillis, state.counter)
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - index))) }
        bytes[6] = 0x70 | UInt8(counter >> 8 & 0x0F)
        bytes[7] = UInt8(truncatingIfNeeded: counter)
        var random = SystemRandomNumberGenerator()
        let tail = random.next() as UInt64
        for index in 8..<16 { bytes[index] = UInt8(truncatingIfNeeded: tail >> (8 * (15 - index))) }
        bytes[8] = 0x80 | (bytes[8] & 0x3F)
        let hex = bytes.map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }
        return hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-" + hex[8..<10].joined() + "-" + hex[10..<16].joined()
    }
}
