import Synchronization

/// Token buckets by name (an API key, a client address), in memory: `burst` tokens at most,
/// refilled at `perSecond`. Time comes in as milliseconds so that the rule is testable.
public final class RateLimiter: Sendable {
    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        public var limit: Int
        public var remaining: Int
        /// Seconds until the bucket is full again (`RateLimit-Reset`).
        public var reset: Int
        /// Seconds until one more request is allowed (`Retry-After`), when refused.
        public var retryAfter: Int
    }

    private struct Bucket {
        var tokens: Double
        var updatedAt: Int64
    }

    public let perSecond: Double
    public let burst: Int
    private let buckets = Mutex<[String: Bucket]>([:])
    private let capacity: Int

    public init(perSecond: Double, burst: Int, capacity: Int = 100_000) {
        self.perSecond = perSecond
        self.burst = max(burst, 1)
        self.capacity = capacity
    }

    public var isEnabled: Bool { perSecond > 0 }

    /// No bucket yet: nothing has been taken since start (a check cheaper than `peek`).
    public var isIdle: Bool { buckets.withLock { $0.isEmpty } }

    /// Takes one token for `name`, or says how long to wait.
    public func take(_ name: String, nowMilliseconds now: Int64) -> Decision {
        buckets.withLock { buckets in
            var bucket = refilled(buckets[name], now: now)
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            if buckets.count >= capacity, buckets[name] == nil { evict(&buckets, now: now) }
            buckets[name] = bucket
            return decision(bucket, allowed: allowed)
        }
    }

    /// Whether `name` has a token left, without taking one.
    public func peek(_ name: String, nowMilliseconds now: Int64) -> Decision {
        buckets.withLock { buckets in
            let bucket = refilled(buckets[name], now: now)
            return decision(bucket, allowed: bucket.tokens >= 1)
        }
    }

    private func refilled(_ bucket: Bucket?, now: Int64) -> Bucket {
        guard var bucket else { return Bucket(tokens: Double(burst), updatedAt: now) }
        let elapsed = Double(max(0, now - bucket.updatedAt)) / 1000
        bucket.tokens = min(Double(burst), bucket.tokens + elapsed * perSecond)
        bucket.updatedAt = now
        return bucket
    }

    private func decision(_ bucket: Bucket, allowed: Bool) -> Decision {
        let missing = Double(burst) - bucket.tokens
        let reset = perSecond > 0 ? Int((missing / perSecond).rounded(.up)) : 0
        let retry = bucket.tokens >= 1 || perSecond <= 0 ? 0 : max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up)))
        return Decision(allowed: allowed, limit: burst, remaining: max(0, Int(bucket.tokens)), reset: reset, retryAfter: retry)
    }

    /// Forgets buckets that have refilled completely (they are the same as no bucket).
    private func evict(_ buckets: inout [String: Bucket], now: Int64) {
        buckets = buckets.filter { refilled($0.value, now: now).tokens < Double(burst) }
        if buckets.count >= capacity { buckets.removeAll(keepingCapacity: true) }
    }
}
