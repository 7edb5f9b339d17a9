import CoreMetrics

/// The kernel's own figures, through swift-metrics (the composition root chooses the backend).
/// Handles are made at each use, not kept: a handle made before the backend is bootstrapped
/// would stay a no-op forever, and these are recorded per batch or per commit, not per row.
public enum KernelMetrics {
    /// A SQLite group commit ended: one batch of `size` write transactions, one fsync.
    static func writeBatch(size: Int, database: String) {
        Counter(label: "sessiond_db_write_batches_total", dimensions: [("database", database)]).increment()
        Recorder(label: "sessiond_db_write_batch_size", dimensions: [("database", database)], aggregate: true).record(size)
    }

    /// Events committed to the log by this process.
    public static func eventsAppended(_ count: Int) {
        guard count > 0 else { return }
        Counter(label: "sessiond_events_appended_total").increment(by: count)
    }
}
