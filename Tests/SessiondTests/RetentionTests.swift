import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import SessiondApp
import Testing

/// The retention settings: a background sweep prunes what is older than each setting, in small
/// batches, never an event a webhook endpoint still has to be given.
@Suite("Retention: pruned in batches, never what a reader still needs")
struct RetentionTests {
    static func count(_ table: String, _ condition: String = "1 = 1", on location: DatabaseLocation) async throws -> Int64 {
        try await queryRaw("SELECT COUNT(*) FROM \(table) WHERE \(condition)", on: location)[0].int(0)
    }

    /// Waits (on the database's own state, never a fixed sleep) until `done` holds.
    static func until(_ what: String, timeout: Duration = .seconds(30), _ done: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !done() {
            guard ContinuousClock.now < deadline else { throw Timeout(what: what) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    struct Timeout: Error { var what: String }

    @Test("events, audits, login links, finished submissions are pruned past their setting; events a webhook still owes stay; 0 keeps for ever")
    func sweep() async throws {
        let clock = ManualClock()
        try await withApp(clock: clock.wallClock, configure: {
            $0.retention.interval = .milliseconds(100)
            $0.retention.submissionSeconds = 0  // kept for ever
            $0.webhooks.allowPrivate = true
            $0.webhooks.policy.retrySchedule = [86_400 * 1000]
        }) { client, location in
            let flow = DeliveryFlow(client: client)
            let session = try await flow.create(user: "ana")
            try await flow.add(session, ["OLD-1", "OLD-2"])
            // A failed authentication (an audit row), a login link, a finished submission.
            #expect(try await client.send(.get, "/api/auth/whoami", headers: TestAuth.bearer("sdk_not-a-key-0000000000000000000000")).status == .unauthorized)
            try await client.json(.post, "/api/auth/login-links", body(["user_id": "ana"]), expect: .created)
            let submission = try await client.json(
                .post, "/api/submissions", body(["automation_slug": "package-import", "payload": ["session_id": .string(session), "csv": "barcode\nOLD-3\n"]]),
                expect: .accepted)
            try await Self.until("the submission to finish") {
                try await client.json(.get, "/api/submissions/\(submission["id"]!.string!)")["status"]?.string == "success"
            }
            let oldEvents = try await Self.count("events", on: location)
            #expect(oldEvents >= 3)
            #expect(try await Self.count("audits", on: location) >= 2)

            // Advance past every setting: all of it goes, in batches, without a request.
            clock.advance(seconds: 400 * 86_400)
            try await Self.until("the sweep to prune") {
                let events = try await Self.count("events", on: location)
                let audits = try await Self.count("audits", on: location)
                let links = try await Self.count("login_links", on: location)
                return events == 0 && audits == 0 && links == 0
            }
            // SUBMISSION_RETENTION=0 keeps them.
            #expect(try await Self.count("submissions", on: location) == 1)
            // The session itself is not the log's: it stays whole.
            #expect(try await flow.session(session)["packages"]?.array.count == 3)

            // An endpoint whose receiver refuses: its pending messages keep their events.
            let receiver = try await client.json(.post, "/api/webhooks", body(["url": "http://127.0.0.1:9/hooks", "events": ["delivery.*"]]), expect: .created)
            #expect(receiver["endpoint_id"]?.string != nil)
            let second = try await flow.create(user: "ana")
            try await Self.until("the fan-out to queue the event") { try await Self.count("webhook_messages", "status = 'pending'", on: location) >= 1 }
            clock.advance(seconds: 40 * 86_400)
            let third = try await flow.create(user: "ana")
            try await Self.until("the fan-out to queue the third") { try await Self.count("webhook_messages", "status = 'pending'", on: location) >= 2 }
            clock.advance(seconds: 40 * 86_400)
            // Another sweep ran (a new audit row made now ages past the setting and goes)…
            #expect(try await client.send(.get, "/api/auth/whoami", headers: TestAuth.bearer("sdk_not-a-key-0000000000000000000001")).status == .unauthorized)
            clock.advance(seconds: 400 * 86_400)
            try await Self.until("the next sweep") { try await Self.count("audits", on: location) == 0 }
            // …and the events the endpoint is still owed are there.
            let owed = try await queryRaw("SELECT COUNT(*) FROM events WHERE session_id IN ('\(second)', '\(third)')", on: location)[0].int(0)
            #expect(owed == 2)
        }
    }

    @Test("retention settings read durations, 0 keeps for ever, and bad values are reported")
    func settings() throws {
        let configuration = try ServerConfiguration.resolve(
            flags: .init(), environment: ["EVENT_RETENTION": "12h", "AUDIT_RETENTION": "0", "CHANNEL_UPDATE_RETENTION": "3600", "SCAN_ATTEMPT_RETENTION": "90d"])
        #expect(configuration.retention.eventSeconds == 43_200 && configuration.retention.auditSeconds == 0)
        #expect(configuration.retention.channelUpdateSeconds == 3_600 && configuration.retention.scanAttemptSeconds == 90 * 86_400)
        #expect(configuration.retention.submissionSeconds == 30 * 86_400)
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(flags: .init(), environment: ["EVENT_RETENTION": "soon", "SUBMISSION_RETENTION": "5"])
        }
    }
}
