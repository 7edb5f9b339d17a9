@testable import Access
import Synchronization
import Testing

@Suite("Revocation epoch reads")
struct RevocationWatchTests {
    final class Epoch: Sendable {
        let value = Atomic<Int64>(0)
        let reads = Atomic<Int>(0)
    }

    /// Each task bumps the epoch (a revocation committing), then asks for it: the answer must come
    /// from a read that started after the bump, however the reads are shared.
    @Test("every request sees every change committed before it asked, with reads shared among waiters")
    func linearizable() async throws {
        let epoch = Epoch()
        let watch = RevocationWatch {
            epoch.reads.add(1, ordering: .relaxed)
            let seen = epoch.value.load(ordering: .sequentiallyConsistent)
            try await Task.sleep(for: .microseconds(200))  // a slow read: requests pile up behind it
            return seen
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<300 {
                group.addTask {
                    let committed = epoch.value.add(1, ordering: .sequentiallyConsistent).newValue
                    let seen = try await watch.current()
                    #expect(seen >= committed)
                }
            }
            try await group.waitForAll()
        }
        #expect(epoch.reads.load(ordering: .relaxed) < 300)  // shared: fewer reads than requests
    }
}
