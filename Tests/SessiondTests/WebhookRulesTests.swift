import Crypto
import Foundation
import Kernel
import SessiondApp
import Testing
import Webhooks

/// The pure parts of webhooks: signatures (the specification's own vector), what an answer
/// means, the retry schedule, the circuit, the SSRF guard's address rules, sealed secrets.
@Suite("Webhooks: signatures, policy, SSRF guard")
struct WebhookRulesTests {
    @Test("signatures match the Standard Webhooks specification's test vector")
    func specificationVector() throws {
        let key = try #require(WebhookSignature.key(of: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let signature = WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8), key: key)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        // The secret without its prefix is the same key.
        #expect(WebhookSignature.key(of: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == key)
        // Another id, time or body signs differently.
        #expect(WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_331, body: Array(#"{"test": 2432232314}"#.utf8), key: key) != signature)
        #expect(WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232315}"#.utf8), key: key) != signature)
    }

    @Test("during a rotation the header carries one signature per secret, space-separated, newest first")
    func twoSignatures() throws {
        let new = try #require(WebhookSignature.key(of: WebhookSignature.newSecret()))
        let old = try #require(WebhookSignature.key(of: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let header = WebhookSignature.header(id: "e1", timestamp: 5, body: Array("{}".utf8), keys: [new, old])
        let parts = header.split(separator: " ").map(String.init)
        #expect(parts == [WebhookSignature.sign(id: "e1", timestamp: 5, body: Array("{}".utf8), key: new), WebhookSignature.sign(id: "e1", timestamp: 5, body: Array("{}".utf8), key: old)])
        let secret = WebhookSignature.newSecret()
        #expect(secret.hasPrefix("whsec_") && Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
    }

    @Test("only 2xx succeeds; 3xx fails; 410 is gone; abort-message stops; Retry-After only from 429/502/503/504")
    func outcomes() {
        #expect(DeliveryPolicy.outcome(status: 200, retryAfter: nil, deliveryHeader: nil) == .succeeded)
        #expect(DeliveryPolicy.outcome(status: 204, retryAfter: nil, deliveryHeader: "abort-message") == .succeeded)
        #expect(DeliveryPolicy.outcome(status: 301, retryAfter: nil, deliveryHeader: nil) == .failed(retryAfter: nil))
        #expect(DeliveryPolicy.outcome(status: 410, retryAfter: nil, deliveryHeader: nil) == .gone)
        #expect(DeliveryPolicy.outcome(status: 500, retryAfter: nil, deliveryHeader: "Abort-Message") == .aborted)
        #expect(DeliveryPolicy.outcome(status: 503, retryAfter: "120", deliveryHeader: nil) == .failed(retryAfter: 120))
        #expect(DeliveryPolicy.outcome(status: 429, retryAfter: " 7 ", deliveryHeader: nil) == .failed(retryAfter: 7))
        #expect(DeliveryPolicy.outcome(status: 500, retryAfter: "120", deliveryHeader: nil) == .failed(retryAfter: nil))
        #expect(DeliveryPolicy.outcome(status: 503, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", deliveryHeader: nil) == .failed(retryAfter: nil))
        #expect(DeliveryPolicy.outcome(status: nil, retryAfter: nil, deliveryHeader: nil) == .failed(retryAfter: nil))
    }

    @Test("retries follow the schedule with jitter, honour Retry-After within bounds, and stop when it is used up")
    func schedule() throws {
        let policy = DeliveryPolicy()
        let now = Timestamp(milliseconds: 1_000_000)
        #expect(policy.nextAttempt(after: 1, retryAfter: nil, now: now, random: 0.5)?.milliseconds == 1_005_000)
        #expect(policy.nextAttempt(after: 2, retryAfter: nil, now: now, random: 0.5)?.milliseconds == 1_300_000)
        #expect(policy.nextAttempt(after: 6, retryAfter: nil, now: now, random: 0.5)?.milliseconds == Int64(37_000_000))
        #expect(policy.nextAttempt(after: 7, retryAfter: nil, now: now, random: 0.5) == nil)
        // ±10 % jitter.
        #expect(policy.nextAttempt(after: 2, retryAfter: nil, now: now, random: 0)?.milliseconds == 1_270_000)
        #expect(policy.nextAttempt(after: 2, retryAfter: nil, now: now, random: 0.999_999)!.milliseconds <= 1_330_000)
        // Retry-After replaces the step, within 1 s … 6 h.
        #expect(policy.nextAttempt(after: 1, retryAfter: 60, now: now, random: 0.5)?.milliseconds == 1_060_000)
        #expect(policy.nextAttempt(after: 1, retryAfter: 0, now: now, random: 0.5)?.milliseconds == 1_001_000)
        #expect(policy.nextAttempt(after: 1, retryAfter: 999_999, now: now, random: 0.5)?.milliseconds == Int64(22_600_000))
        #expect(policy.nextAttempt(after: 7, retryAfter: 60, now: now, random: 0.5) == nil)
    }

    @Test("the circuit opens after 5 consecutive failures, for 30 s, doubling per failed probe (never per failure of a burst in flight) up to 10 minutes")
    func circuit() {
        let policy = DeliveryPolicy()
        let now = Timestamp(milliseconds: 0)
        func at(_ seconds: Int64) -> Timestamp { Timestamp(milliseconds: seconds * 1000) }
        #expect(policy.circuit(afterFailures: 4, consecutive: 0, openUntil: nil, opens: 0, now: now).openUntil == nil)
        // A burst of 7 failures within a second (a receiver that blinked): open for 30 s, not 2 minutes.
        let burst = policy.circuit(afterFailures: 7, consecutive: 0, openUntil: nil, opens: 0, now: now)
        #expect(burst.openUntil == at(30) && burst.opens == 1)
        // Stragglers of that burst ending while the circuit is open change nothing.
        let stragglers = policy.circuit(afterFailures: 3, consecutive: 7, openUntil: at(30), opens: 1, now: at(1))
        #expect(stragglers.openUntil == at(30) && stragglers.opens == 1)
        // Each failed probe (made once the time was up) doubles it, up to 10 minutes.
        var circuit = burst
        var expected: [Int64] = []
        var time: Int64 = 30
        for _ in 0..<7 {
            circuit = policy.circuit(afterFailures: 1, consecutive: 10, openUntil: circuit.openUntil, opens: circuit.opens, now: at(time))
            expected.append((circuit.openUntil!.milliseconds / 1000) - time)
            time = circuit.openUntil!.milliseconds / 1000
        }
        #expect(expected == [60, 120, 240, 480, 600, 600, 600])
        // Consecutive failures below the threshold keep it closed.
        #expect(policy.circuit(afterFailures: 1, consecutive: 3, openUntil: nil, opens: 0, now: now).openUntil == nil)
    }

    @Test("the SSRF guard refuses private, loopback, link-local, CGNAT, reserved and multicast addresses, IPv4 inside IPv6 included")
    func addresses() throws {
        let strict = try ReceiverGuard()
        for refused in [
            "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "127.0.0.1", "127.8.9.10", "169.254.169.254", "100.64.0.1", "100.127.255.254",
            "0.0.0.0", "192.0.2.5", "198.18.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
            "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "2001:db8::1",
        ] {
            #expect(strict.refusal(host: refused, address: try #require(IPAddress(refused))) != nil, "\(refused) should be refused")
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            #expect(strict.refusal(host: allowed, address: try #require(IPAddress(allowed))) == nil, "\(allowed) should be allowed")
        }
        let lenient = try ReceiverGuard(allowPrivate: true)
        #expect(lenient.refusal(host: "127.0.0.1", address: IPAddress("127.0.0.1")!) == nil)
        #expect(lenient.refusal(host: "x", address: IPAddress("169.254.169.254")!) == nil)
        #expect(lenient.refusal(host: "x", address: IPAddress("224.0.0.1")!) != nil)
        #expect(lenient.refusal(host: "x", address: IPAddress("0.0.0.0")!) != nil)
        let listed = try ReceiverGuard(allowList: ["10.20.0.0/16", "erp.internal"])
        #expect(listed.refusal(host: "x", address: IPAddress("10.20.3.4")!) == nil)
        #expect(listed.refusal(host: "x", address: IPAddress("10.21.3.4")!) != nil)
        #expect(listed.refusal(host: "ERP.internal", address: IPAddress("10.99.0.1")!) == nil)
        #expect(throws: ReceiverGuard.AllowListError.self) { try ReceiverGuard(allowList: ["10.0.0.0/99"]) }
    }

    @Test("a name that resolves to loopback is refused by the strict guard, and the checked address is where to connect")
    func resolution() async throws {
        await #expect(throws: ReceiverGuard.Refusal.self) { try await ReceiverGuard().check(host: "localhost") }
        let address = try await ReceiverGuard(allowPrivate: true).check(host: "localhost")
        #expect(address.special == .loopback)
        await #expect(throws: ReceiverGuard.Refusal.self) { try await ReceiverGuard().check(host: "no-such-host.invalid") }
    }

    @Test("sealed secrets open only with their key and only for the row they were sealed for")
    func secretBox() throws {
        let box = try SecretBox(base64: SecretBox.generateKey())
        let sealed = try box.seal("whsec_abc", boundTo: "whep_1")
        #expect(sealed.hasPrefix("v1:") && !sealed.contains("whsec_abc"))
        #expect(try box.open(sealed, boundTo: "whep_1") == "whsec_abc")
        #expect(throws: SecretBox.Failure.self) { try box.open(sealed, boundTo: "whep_2") }
        #expect(throws: SecretBox.Failure.self) { try SecretBox(base64: SecretBox.generateKey()).open(sealed, boundTo: "whep_1") }
        #expect(throws: SecretBox.Failure.self) { try SecretBox(base64: "c2hvcnQ=") }
    }

    @Test("WEBHOOK_* settings are read from the environment, and bad values are all reported")
    func configuration() throws {
        let good = try ServerConfiguration.resolve(flags: .init(), environment: [
            "WEBHOOK_RETRY_SCHEDULE": "1, 2,3", "WEBHOOK_TIMEOUT": "5", "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_DISABLE_AFTER": "2d",
            "WEBHOOK_ALLOWED_HOSTS": "10.0.0.0/8, erp.internal", "WEBHOOK_WORKERS": "3", "WEBHOOK_SECRET_KEY": SecretBox.generateKey(), "WEBHOOK_LOG_RETENTION": "7d",
        ]).webhooks
        #expect(good.policy.retrySchedule == [1, 2, 3] && good.timeoutSeconds == 5 && good.allowPrivate && good.policy.disableAfter == 172_800)
        #expect(good.allowList == ["10.0.0.0/8", "erp.internal"] && good.workers == 3 && good.logRetentionSeconds == 604_800 && good.secretKey != nil)
        let defaults = try ServerConfiguration.resolve(flags: .init(), environment: [:]).webhooks
        #expect(defaults.policy.retrySchedule == [5, 300, 1800, 7200, 18000, 36000] && defaults.timeoutSeconds == 15 && !defaults.allowPrivate)
        #expect(defaults.policy.disableAfter == 5 * 86_400 && defaults.workers == 5)
        do {
            _ = try ServerConfiguration.resolve(flags: .init(), environment: [
                "WEBHOOK_RETRY_SCHEDULE": "1,x", "WEBHOOK_TIMEOUT": "0", "WEBHOOK_ALLOW_PRIVATE": "maybe", "WEBHOOK_SECRET_KEY": "short",
                "WEBHOOK_ALLOWED_HOSTS": "10.0.0.0/40",
            ])
            Issue.record("bad settings were accepted")
        } catch {
            #expect(error.problems.count == 5)
            #expect(!error.problems.joined().contains("short"))
        }
    }
}
