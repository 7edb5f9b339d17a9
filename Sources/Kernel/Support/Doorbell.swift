import Synchronization

/// Wakes one waiting loop (new messages: one worker claims them, and wakes the next if there
/// were more than it could take); a ring while nobody waits is kept for the next waiter, so no
/// ring is lost between two checks.
public final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    public init() {}

    public func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let first = state.waiters.keys.min() else {
                state.rung = true
                return nil
            }
            return state.waiters.removeValue(forKey: first)
        }
        waiter?.resume()
    }

    /// Returns when rung, or after `timeout`, or when the task is cancelled.
    public func wait(for timeout: Duration) async {
        let id = state.withLock { state -> Int? in
            if state.rung {
                state.rung = false
                return nil
            }
            state.next += 1
            return state.next
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.rung || Task.isCancelled {
                                state.rung = false
                                return true
                            }
                            state.waiters[id] = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.resume(id)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.resume(id)
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func resume(_ id: Int) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume()
    }
}
