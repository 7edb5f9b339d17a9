import Synchronization

/// A bounded in-memory map from an aggregate's id to its newest known version.
///
/// `publish` keeps the newer of two versions, so a slow reader that loaded version 5 cannot
/// overwrite the version 6 a writer published after committing. Each entry remembers when it was
/// last known to match the database, so readers can bound how stale a cached read may be when
/// other servers write to the same database. When full, it forgets an arbitrary eighth of its
/// entries (cheap, and good enough: entries are reloaded on demand).
public final class VersionedCache<Value: Sendable>: Sendable {
    private struct Entry {
        var version: Int64
        var value: Value
        var checkedAt: ContinuousClock.Instant
    }

    public struct Hit: Sendable {
        public var version: Int64
        public var value: Value
        /// Time since this version was last known to be the database's.
        public var age: Duration
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let capacity: Int

    public init(capacity: Int) { self.capacity = max(capacity, 8) }

    public func get(_ key: String) -> (version: Int64, value: Value)? {
        entries.withLock { $0[key].map { ($0.version, $0.value) } }
    }

    public func lookup(_ key: String) -> Hit? {
        let now = ContinuousClock.now
        return entries.withLock { $0[key].map { Hit(version: $0.version, value: $0.value, age: now - $0.checkedAt) } }
    }

    public func publish(_ key: String, version: Int64, value: Value) {
        let now = ContinuousClock.now
        // What is replaced or evicted is handed out of the lock and freed after it: freeing a large
        // aggregate (its arrays) inside would hold the lock that every read and the writer take.
        let dropped = entries.withLock { entries -> [Entry] in
            if let existing = entries[key], existing.version >= version {
                if existing.version == version { entries[key]?.checkedAt = now }
                return []
            }
            var dropped: [Entry] = []
            if entries.count >= capacity, entries[key] == nil {
                for victim in Array(entries.keys.prefix(capacity / 8 + 1)) {
                    if let entry = entries.removeValue(forKey: victim) { dropped.append(entry) }
                }
            }
            if let old = entries.updateValue(Entry(version: version, value: value, checkedAt: now), forKey: key) { dropped.append(old) }
            return dropped
        }
        _ = dropped
    }

    /// Records that `version` is still the database's.
    public func confirm(_ key: String, version: Int64) {
        let now = ContinuousClock.now
        entries.withLock { entries in
            if entries[key]?.version == version { entries[key]?.checkedAt = now }
        }
    }

    /// Forgets the entry if it is older than `version` (a newer one was committed elsewhere).
    public func invalidate(_ key: String, below version: Int64) {
        entries.withLock { entries in
            if let existing = entries[key], existing.version < version { entries[key] = nil }
        }
    }

    public func remove(_ key: String) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }
}
