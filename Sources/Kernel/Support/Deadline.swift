import Synchronization

/// Resumes a continuation once, with whichever outcome comes first: the work's result, or a
/// timer's `nil` (the work is then left to finish on its own: a thread in the middle of a C call
/// cannot be stopped; what matters is that the caller is not held by it).
public final class FirstOutcome<T: Sendable>: Sendable {
    private let waiting = Mutex<CheckedContinuation<T?, any Error>?>(nil)

    public init() {}

    public func set(_ continuation: CheckedContinuation<T?, any Error>) { waiting.withLock { $0 = continuation } }

    public func resume(_ outcome: Result<T?, any Error>) {
        waiting.withLock { current in defer { current = nil }; return current }?.resume(with: outcome)
    }
}
