import Synchronization

/// Per-aggregate serialisation inside one process: callers with the same key run one at a time,
/// in arrival order; different keys do not wait for each other.
public final class KeyedLock: Sendable {
    private struct Waiters {
        var queue: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex<[String: Waiters]>([:])

    public init() {}

    public func withLock<T: Sendable>(_ key: String, _ body: () async throws -> T) async throws -> T {
        await acquire(key)
        defer { release(key) }
        return try await body()
    }

    private func acquire(_ key: String) async {
        let free = state.withLock { state -> Bool in
            if state[key] == nil {
                state[key] = Waiters()
                return true
            }
            return false
        }
        if free { return }
        await withCheckedContinuation { continuation in
            let owned = state.withLock { state -> Bool in
                // The holder may have left between the two looks.
                if state[key] == nil {
                    state[key] = Waiters()
                    return true
                }
                state[key]!.queue.append(continuation)
                return false
            }
            if owned { continuation.resume() }
        }
    }

    private func release(_ key: String) {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard var waiters = state[key] else { return nil }
            if waiters.queue.isEmpty {
                state[key] = nil
                return nil
            }
            let next = waiters.queue.removeFirst()
            state[key] = waiters
            return next
        }
        next?.resume()  // ownership passes straight to the next waiter
    }
}
