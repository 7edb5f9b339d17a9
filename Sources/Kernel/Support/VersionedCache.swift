import Synchronization

/// A bounded in-memory map from an aggregate's id to its newest known version.
///
/// `publish` keeps the newer of two versions, so a slow reader that loaded version 5 cannot
/// overwrite the version 6 a writer published after committing. When full, it forgets an
/// arbitrary eighth of its entries (cheap, and good enough: entries are reloaded on demand).
public final class VersionedCache<Value: Sendable>: Sendable {
    private struct Entry {
        var version: Int64
        var value: Value
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let capacity: Int

    public init(capacity: Int) { self.capacity = max(capacity, 8) }

    public func get(_ key: String) -> (version: Int64, value: Value)? {
        entries.withLock { $0[key].map { ($0.version, $0.value) } }
    }

    public func publish(_ key: String, version: Int64, value: Value) {
        entries.withLock { entries in
            if let existing = entries[key], existing.version >= version { return }
            if entries.count >= capacity, entries[key] == nil {
                for victim in entries.keys.prefix(capacity / 8 + 1) { entries[victim] = nil }
            }
            entries[key] = Entry(version: version, value: value)
        }
    }

    public func remove(_ key: String) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }
}
