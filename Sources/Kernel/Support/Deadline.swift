import Synchronization

/// Runs `work` and waits for it `limit` at most: nil when the time ran out first. The work is left
/// to finish on its own then (a thread in the middle of a C call cannot be stopped; what matters
/// is that the caller is not held by it). Not a task group: a group waits for every child at its
/// end, so a child that ignores cancellation would make the limit mean nothing.
public func firstWithin<T: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () async throws -> T) async throws -> T? {
    let first = FirstOutcome<T>()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T?, any Error>) in
        first.set(continuation)
        let timer = Task {
            try? await Task.sleep(for: limit)
            first.resume(.success(nil))
        }
        Task {
            do {
                let value = try await work()
                first.resume(.success(value))
            } catch {
                first.resume(.failure(error))
            }
            timer.cancel()
        }
    }
}

/// Resumes a continuation once, with whichever outcome comes first.
final class FirstOutcome<T: Sendable>: Sendable {
    private let waiting = Mutex<CheckedContinuation<T?, any Error>?>(nil)
    func set(_ continuation: CheckedContinuation<T?, any Error>) { waiting.withLock { $0 = continuation } }
    func resume(_ outcome: Result<T?, any Error>) {
        waiting.withLock { current in defer { current = nil }; return current }?.resume(with: outcome)
    }
}
