import Kernel
import Synchronization

/// The database's revocation epoch, read so that every request sees every revocation committed
/// before it arrived, by one read shared among the requests that wait at the same time.
///
/// Each revocation (a key revoked or rotated, a login session ended) bumps `access_epoch` in its own
/// transaction. A request asks for the epoch from a read that *started after the request arrived*:
/// when none is running, it runs one itself; when one is about to be sent, it joins it; when one
/// is already sent (it may have missed a revocation), it waits for the next, which one of the
/// waiters runs as soon as that one ends. Under load one read serves every request that arrived
/// while the previous one ran, so a credential check costs a fraction of a query instead of one
/// query per request, and a revocation by any server counts at once on every server.
final class RevocationWatch: Sendable {
    /// What a waiting request is told: the epoch, or that it is to run the next read itself.
    private enum Turn: Sendable {
        case epoch(Int64)
        case lead(Int)
    }

    private struct State {
        /// Reads numbered so far; the running read, if any, has this number.
        var started = 0
        var running = false
        /// The numbered read has not been sent yet: a request arriving now may join it.
        var collecting = false
        /// Requests waiting for a read numbered at least `needed`.
        var waiters: [(needed: Int, continuation: CheckedContinuation<Turn, any Error>)] = []
    }

    private let state = Mutex(State())
    private let read: @Sendable () async throws -> Int64

    init(read: @escaping @Sendable () async throws -> Int64) {
        self.read = read
    }

    /// The epoch as of a read that began after this call. The request that finds no read running
    /// runs one itself (no task of its own, no hop); the others wait for it, or for the next one,
    /// which one of them is asked to run.
    func current() async throws -> Int64 {
        let turn = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Turn, any Error>) in
            let lead = state.withLock { state -> Int? in
                if state.running {
                    state.waiters.append((state.collecting ? state.started : state.started + 1, continuation))
                    return nil
                }
                state.started += 1
                state.running = true
                state.collecting = true
                return state.started
            }
            if let lead { continuation.resume(returning: .lead(lead)) }
        }
        switch turn {
        case .epoch(let epoch):
            return epoch
        case .lead(let number):
            // Let the requests already on their way join this read before it is sent; from the
            // moment it is sent, newcomers wait for the next one.
            await Task.yield()
            state.withLock { $0.collecting = false }
            let result: Result<Int64, any Error>
            do { result = .success(try await read()) } catch { result = .failure(error) }
            let (ready, next) = state.withLock { state -> ([CheckedContinuation<Turn, any Error>], (Int, CheckedContinuation<Turn, any Error>)?) in
                let ready = state.waiters.filter { $0.needed <= number }.map(\.continuation)
                state.waiters.removeAll { $0.needed <= number }
                guard !state.waiters.isEmpty else {
                    state.running = false
                    return (ready, nil)
                }
                // Those left arrived while this read ran: the first of them runs the next one.
                state.started += 1
                state.collecting = true
                return (ready, (state.started, state.waiters.removeFirst().continuation))
            }
            for continuation in ready { continuation.resume(with: result.map(Turn.epoch)) }
            if let (number, leader) = next { leader.resume(returning: .lead(number)) }
            return try result.get()
        }
    }
}
