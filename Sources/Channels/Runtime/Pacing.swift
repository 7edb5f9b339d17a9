/// Token buckets for what Telegram allows a bot: per chat about 1 message a second with bursts of
/// 3, per bot 30 a second. Pure: time is passed in (milliseconds).
struct Pacing: Sendable {
    struct Bucket: Sendable {
        var tokens: Double
        var updatedAt: Int64
    }

    let chatBurst = 3.0
    let chatPerSecond = 1.0
    let botBurst = 30.0
    let botPerSecond = 30.0
    var chats: [Int64: Bucket] = [:]
    var bot = Bucket(tokens: 30, updatedAt: 0)
    /// Chats Telegram told to wait (429 `retry_after`), until when.
    var blockedUntil: [Int64: Int64] = [:]

    static func refill(_ bucket: inout Bucket, now: Int64, rate: Double, burst: Double) {
        let elapsed = Double(max(0, now - bucket.updatedAt)) / 1000
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.updatedAt = now
    }

    /// Takes a token for a message to `chat` (nil: not a chat message, paced per bot only);
    /// nil when it may go now, else the milliseconds to wait.
    mutating func take(chat: Int64?, now: Int64) -> Int64? {
        if let chat, let until = blockedUntil[chat] {
            if until > now { return until - now }
            blockedUntil[chat] = nil
        }
        Self.refill(&bot, now: now, rate: botPerSecond, burst: botBurst)
        guard bot.tokens >= 1 else { return Int64((1 - bot.tokens) / botPerSecond * 1000) + 1 }
        if let chat {
            var bucket = chats[chat] ?? Bucket(tokens: chatBurst, updatedAt: now)
            Self.refill(&bucket, now: now, rate: chatPerSecond, burst: chatBurst)
            guard bucket.tokens >= 1 else {
                chats[chat] = bucket
                return Int64((1 - bucket.tokens) / chatPerSecond * 1000) + 1
            }
            bucket.tokens -= 1
            chats[chat] = bucket
        }
        bot.tokens -= 1
        return nil
    }

    mutating func block(chat: Int64, until: Int64) {
        blockedUntil[chat] = max(blockedUntil[chat] ?? 0, until)
    }
}
