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

    /// Whether `text` has the shape of an id this generator makes (36 characters, 8-4-4-4-12
    /// lower-case hex): what an unauthenticated path may name before anything is looked up.
    public static func isWellFormed(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                guard (byte >= 48 && byte <= 57) || (byte >= 97 && byte <= 102) else { return false }
            }
        }
        return true
    }

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
        var random = SystemRandomNumberGenerator()
        let tail = random.next() as UInt64
        // 8-4-4-4-12 lower-case hex, written into one buffer (every request makes one of these).
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var position = 0
            func put(_ byte: UInt8) {
                buffer[position] = Self.hexDigits[Int(byte >> 4)]
                buffer[position + 1] = Self.hexDigits[Int(byte & 0x0F)]
                position += 2
            }
            for index in 0..<6 {
                put(UInt8(truncatingIfNeeded: millis >> (8 * (5 - index))))
                if index == 3 || index == 5 {
                    buffer[position] = UInt8(ascii: "-")
                    position += 1
                }
            }
            put(0x70 | UInt8(counter >> 8 & 0x0F))
            put(UInt8(truncatingIfNeeded: counter))
            buffer[position] = UInt8(ascii: "-")
            position += 1
            for index in 0..<8 {
                var byte = UInt8(truncatingIfNeeded: tail >> (8 * (7 - index)))
                if index == 0 { byte = 0x80 | (byte & 0x3F) }
                put(byte)
                if index == 1 {
                    buffer[position] = UInt8(ascii: "-")
                    position += 1
                }
            }
            return position
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
