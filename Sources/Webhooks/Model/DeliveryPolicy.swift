import Kernel

/// What a receiver's answer means and when to try again: pure, time and randomness passed in.
public struct DeliveryPolicy: Sendable, Equatable {
    /// Seconds to wait after the 1st, 2nd, … failed attempt (`WEBHOOK_RETRY_SCHEDULE`); when
    /// they are used up the message has failed for good.
    public var retrySchedule: [Int64]
    /// Each wait is spread by ± this fraction, so retries of a burst do not arrive together.
    public var jitter: Double
    /// A receiver's `Retry-After` is honoured between these bounds (seconds).
    public var retryAfterBounds: ClosedRange<Int64>
    /// Consecutive failed attempts that open an endpoint's circuit.
    public var circuitThreshold: Int64
    /// The circuit stays open this long the first time, doubling each time a probe fails, up to `circuitMaximum` (`circuit(afterFailures:…)`).
    public var circuitCooldown: Int64
    public var circuitMaximum: Int64
    /// An endpoint that has failed without a success for this long is disabled (`WEBHOOK_DISABLE_AFTER`).
    public var disableAfter: Int64

    public init(
        retrySchedule: [Int64] = [5, 300, 1800, 7200, 18000, 36000], jitter: Double = 0.1, retryAfterBounds: ClosedRange<Int64> = 1...21_600,
        circuitThreshold: Int64 = 5, circuitCooldown: Int64 = 30, circuitMaximum: Int64 = 600, disableAfter: Int64 = 5 * 86_400
    ) {
        self.retrySchedule = retrySchedule
        self.jitter = jitter
        self.retryAfterBounds = retryAfterBounds
        self.circuitThreshold = circuitThreshold
        self.circuitCooldown = circuitCooldown
        self.circuitMaximum = circuitMaximum
        self.disableAfter = disableAfter
    }

    /// How one attempt ended.
    public enum Outcome: Sendable, Equatable {
        /// A 2xx answer.
        case succeeded
        /// Anything else: another status (3xx included: redirects are not followed), a timeout,
        /// a refused connection, an address the SSRF guard refused. `retryAfter` from a 429, 502,
        /// 503 or 504 that sent one.
        case failed(retryAfter: Int64?)
        /// `410 Gone`: the receiver is gone for good; the endpoint is disabled.
        case gone
        /// The receiver answered `webhook-delivery: abort-message`: no more attempts of this event.
        case aborted
    }

    /// Classifies an answer (nil status: no answer at all).
    public static func outcome(status: Int?, retryAfter: String?, deliveryHeader: String?) -> Outcome {
        guard let status else { return .failed(retryAfter: nil) }
        if (200..<300).contains(status) { return .succeeded }
        if deliveryHeader?.trimmingCharacters(in: .whitespaces).lowercased() == "abort-message" { return .aborted }
        if status == 410 { return .gone }
        if [429, 502, 503, 504].contains(status), let retryAfter, let seconds = Int64(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return .failed(retryAfter: seconds)
        }
        return .failed(retryAfter: nil)
    }

    /// When to try again after failed attempt number `attempt` (1 = the first), or nil when the
    /// schedule is used up. `random` is in 0..<1.
    public func nextAttempt(after attempt: Int64, retryAfter: Int64?, now: Timestamp, random: Double) -> Timestamp? {
        guard attempt >= 1, attempt <= Int64(retrySchedule.count) else { return nil }
        let milliseconds: Int64
        if let retryAfter {
            let seconds = min(max(retryAfter, retryAfterBounds.lowerBound), retryAfterBounds.upperBound)
            milliseconds = seconds * 1000
        } else {
            let base = Double(retrySchedule[Int(attempt - 1)] * 1000)
            milliseconds = Int64(base * (1 + jitter * (2 * random - 1)))
        }
        return Timestamp(milliseconds: now.milliseconds + max(milliseconds, 0))
    }

    /// The circuit after attempts that ended in `failures` failures, given `consecutive`
    /// failures before them and the circuit as it was (`openUntil`, opened `opens` times in a
    /// row). Closed below the threshold. Reaching it opens the circuit for `circuitCooldown`;
    /// from then on only a failed probe (an attempt made once the circuit's time was up) doubles
    /// it, up to `circuitMaximum`. Failures of a burst that was in flight when the circuit opened
    /// (they end while it is open) change nothing: a receiver that blinks during a burst is cut
    /// off for the cooldown, not for minutes.
    public func circuit(
        afterFailures failures: Int64, consecutive: Int64, openUntil: Timestamp?, opens: Int64, now: Timestamp
    ) -> (openUntil: Timestamp?, opens: Int64) {
        guard consecutive + failures >= circuitThreshold else { return (nil, 0) }
        if let openUntil, now < openUntil { return (openUntil, opens) }
        let next = opens + 1
        let seconds = min(circuitCooldown << min(next - 1, 20), circuitMaximum)
        return (Timestamp(milliseconds: now.milliseconds + seconds * 1000), next)
    }
}
