import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// The dashboard in a real browser: Debian's headless Chromium against a real server socket.
/// Logs in by link, watches a live session take deliveries, pauses and failures made through the
/// API (each within a second, no reload), sees it close into its history, checks the audit, logs
/// out; the API-key form by keyboard alone; a phone's screen; nothing loaded from elsewhere; no
/// Content-Security-Policy violation. Saves screenshots to `SESSIOND_SCREENSHOTS` when set.
@Suite("Web: the dashboard in headless Chromium", .serialized)
struct WebBrowserTests {
    static let phone = (width: 390, height: 844)
    static let desktop = (width: 1280, height: 800)

    @Test("log in by link, follow a live session without reloading, its history and audit, logout; keyboard login; a phone's screen")
    func liveDashboard() async throws {
        try #require(Chromium.executable != nil, "chromium is not installed: scripts/install-deps --tests installs it")
        try await withApp(.live) { client, _ in
            let port = try #require(client.port)
            let origin = "http://127.0.0.1:\(port)"
            let flow = DeliveryFlow(client: client)
            let ownerKey = try await WebTests.key(client, role: "owner", user: "maria")
            let session = try await flow.create(user: "maria", name: "Zona Sul — sábado")
            try await flow.add(session, (1...6).map { "BR20260\($0)" }, value: { 1_290 + Int64($0) * 310 })
            try await flow.start(session, deliverers: ["ana", "bruno"])
            let older = try await flow.create(user: "maria", name: "Centro")
            try await flow.add(older, ["CE1", "CE2"])
            let packages = try await flow.assignments(session)

            let browser = try Chromium()
            defer { browser.stop() }
            let page = try await browser.newPage()

            // A one-time link logs the browser in and lands on my sessions.
            let link = try await client.json(.post, "/api/auth/login-links", body(["user_id": "maria"]), expect: .created, headers: TestAuth.bearer(ownerKey))
            let token = try #require(link["url"]?.string?.components(separatedBy: "token=").last)
            try await page.open("\(origin)/auth/login?token=\(token)")
            try await page.wait(for: "location.pathname === '/' && document.querySelectorAll('[data-session-id]').length === 2", "my sessions")
            #expect(try await page.evaluate("document.cookie.includes('sessiond_session')") == .bool(false))
            let cookies = try await page.send("Network.getCookies", ["urls": .array([.string(origin + "/")])])["cookies"]?.array ?? []
            let cookie = try #require(cookies.first { $0["name"]?.string == "sessiond_session" })
            #expect(cookie["httpOnly"]?.bool == true && cookie["sameSite"]?.string == "Lax")
            try await Self.checkPage(page, origin: origin, "my sessions")
            try await Self.save(page, "sessions")

            // The live page: a change made right after it loads shows without a reload. Each change
            // must show within 3 s and their median within the contract's 1 s: the whole suite runs
            // at once around this test (~150 servers on 2 cores), where one change in a few may
            // wait longer for a core than a person's browser ever would.
            var latencies: [Duration] = []
            try await page.open("\(origin)/sessions/\(session)")
            _ = try await page.evaluate("window.__sameDocument = true")
            try await flow.deliver(session, package: packages[0].packageID, by: packages[0].deliverer)
            try await Self.within(into: &latencies, page, "document.querySelector('[data-package-id=\"\(packages[0].packageID)\"]').dataset.status === 'delivered'", "the first delivery")
            try await page.wait(for: "document.querySelector('[data-live-state]').textContent === 'ao vivo'", "the stream to be open")

            try await client.json(.post, "/api/sessions/\(session)/delivery/pickup", body(["package_id": .string(packages[1].packageID), "deliverer_id": .string(packages[1].deliverer)]))
            try await Self.within(into: &latencies, page, "document.querySelector('[data-package-id=\"\(packages[1].packageID)\"]').dataset.status === 'picked_up'", "a pickup")
            try await flow.fail(session, package: packages[2].packageID, by: packages[2].deliverer, reason: "Cliente ausente")
            try await Self.within(
                into: &latencies, page, "document.querySelector('[data-package-id=\"\(packages[2].packageID)\"]').dataset.status === 'failed' && " + Self.figure("packages_failed") + " === '1'",
                "a failure and its figure")
            try await page.wait(for: "document.querySelector('[data-package-id=\"\(packages[2].packageID)\"]').textContent.includes('Cliente ausente')", "the failure's reason")
            try await client.json(.post, "/api/sessions/\(session)/pause")
            try await Self.within(into: &latencies, page, Self.figure("status") + " === 'paused'", "the pause")
            try await client.json(.post, "/api/sessions/\(session)/resume")
            try await Self.within(into: &latencies, page, Self.figure("status") + " === 'active'", "the resume")
            try await flow.deliver(session, package: packages[1].packageID, by: packages[1].deliverer)
            try await Self.within(into: &latencies, page, Self.figure("packages_delivered") + " === '2'", "the second delivery")

            let sorted = latencies.sorted()
            #expect(sorted[sorted.count / 2] < .seconds(1), "changes took \(latencies) to show")
            print("web live page: changes showed after \(latencies.map { "\(Int($0 / .milliseconds(1))) ms" }.joined(separator: ", "))")

            // Every figure on the page is the API's value now.
            let dashboard = try await client.json(.get, "/api/sessions/\(session)/dashboard")
            for name in ["packages_total", "packages_delivered", "packages_failed", "packages_pending", "total_revenue_cents"] {
                #expect(try await page.evaluate(Self.figure(name)) == .string(String(dashboard[name]!.int!)), "\(name)")
            }
            for deliverer in dashboard["deliverers"]!.array {
                let id = deliverer["deliverer_id"]!.string!
                for name in ["packages_assigned", "packages_delivered", "packages_failed", "total_earned_cents"] {
                    let value = try await page.evaluate("document.querySelector('[data-deliverer-id=\"\(id)\"] [data-field=\"\(name)\"]').dataset.value")
                    #expect(value == .string(String(deliverer[name]!.int!)), "\(id) \(name)")
                }
            }
            let revenueText = try await page.evaluate("document.querySelector('[data-field=\"total_revenue_cents\"]').textContent").string
            #expect(revenueText == Reais.format(cents: dashboard["total_revenue_cents"]!.int!))
            #expect(try await page.evaluate("window.__sameDocument === true") == .bool(true), "the page reloaded")
            try await Self.checkPage(page, origin: origin, "the live page")
            try await Self.save(page, "live")

            // The last packages: the session completes and the page turns into its history.
            for package in try await flow.assignments(session) {
                let status = try await flow.session(session)["packages"]!.array.first { $0["package_id"]?.string == package.packageID }?["delivery_status"]?.string
                if status == "pending" || status == "picked_up" { try await flow.deliver(session, package: package.packageID, by: package.deliverer) }
            }
            try await page.wait(for: "document.querySelector('[data-snapshot]') !== null && document.readyState === 'complete'", seconds: 5, "the history after completion")
            #expect(try await page.evaluate(Self.figure("status")) == .string("completed"))
            let audit = try await client.json(.get, "/api/sessions/\(session)/audit/verify")
            _ = try await page.evaluate("document.querySelector('[data-action=\"verify-audit\"]').click()")
            try await page.wait(for: Self.figure("audit_valid") + " === 'true'", "the audit check")
            #expect(try await page.evaluate(Self.figure("audit_entries")) == .string(String(audit["entries"]!.int!)))
            #expect(try await page.evaluate("document.querySelectorAll('[data-audit-seq]').length") == .int(audit["entries"]!.int!))
            #expect(try await page.evaluate("document.querySelector('a[data-action=\"export-csv\"]').getAttribute('href')") == .string("/sessions/\(session)/export.csv"))
            try await Self.checkPage(page, origin: origin, "the history")
            try await Self.save(page, "history")

            // Logout: back to /login; Back and reload show no session data; the old cookie opens nothing.
            _ = try await page.evaluate("document.querySelector('[data-action=\"logout\"]').click()")
            try await page.wait(for: "location.pathname === '/login' && document.readyState === 'complete'", "the login page after logout")
            _ = try await page.evaluate("history.back()")
            try await Task.sleep(for: .milliseconds(500))
            try await page.wait(for: "document.readyState === 'complete'", "back")
            #expect(try await page.evaluate("document.querySelectorAll('[data-package-id],[data-snapshot],[data-session-id]').length") == .int(0))
            #expect(try await page.evaluate("location.pathname") == .string("/login"))
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: [.cookie: "sessiond_session=\(cookie["value"]?.string ?? "")"])

            // The API-key form with the keyboard alone, in a fresh browser context, on a phone's screen.
            let phone = try await browser.newPage(isolated: true)
            try await phone.send("Emulation.setDeviceMetricsOverride", ["width": .int(Int64(Self.phone.width)), "height": .int(Int64(Self.phone.height)), "deviceScaleFactor": 1, "mobile": true])
            try await phone.open("\(origin)/sessions/\(older)")
            #expect(try await phone.evaluate("location.pathname") == .string("/login"))
            try await Self.checkPage(phone, origin: origin, "the login page")
            try await Self.save(phone, "login-phone", width: Self.phone.width, height: Self.phone.height, mobile: true)
            try await phone.key("Tab", code: 9)
            #expect(try await phone.evaluate("document.activeElement && document.activeElement.name") == .string("api_key"))
            try await phone.type(ownerKey)
            try await phone.key("Enter", code: 13, text: "\r")
            try await phone.wait(for: "location.pathname === '/sessions/\(older)' && document.readyState === 'complete'", "the page asked for, after the keyboard login")
            try await Self.checkPage(phone, origin: origin, "a live page on a phone")
            try await Self.save(phone, "live-phone", width: Self.phone.width, height: Self.phone.height, mobile: true)
            for path in ["/", "/sessions/\(session)"] {
                try await phone.open(origin + path)
                try await Self.checkPage(phone, origin: origin, "\(path) on a phone")
            }
            try await Self.save(phone, "history-phone", width: Self.phone.width, height: Self.phone.height, mobile: true)
        }
    }

    /// `data-value` of the session-level figure `name` (outside every row and the snapshot).
    static func figure(_ name: String) -> String {
        "(Array.from(document.querySelectorAll('[data-field=\"\(name)\"]')).filter(e => !e.closest('[data-deliverer-id],[data-package-id],[data-session-id],[data-audit-seq],[data-snapshot]')).map(e => e.dataset.value)[0])"
    }

    /// Waits for `expression` after a change the API has just answered; how long it took.
    static func within(into latencies: inout [Duration], _ page: Chromium.Page, _ expression: String, _ what: String) async throws {
        let started = ContinuousClock.now
        try await page.wait(for: expression, seconds: 3, what)
        latencies.append(ContinuousClock.now - started)
    }

    /// What every page must be: no sideways scroll on a phone, names on every control, nothing
    /// from another origin, no CSP violation.
    static func checkPage(_ page: Chromium.Page, origin: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let width = try await page.evaluate("window.innerWidth").int ?? 0
        if width <= phone.width {
            let scrollWidth = try await page.evaluate("document.documentElement.scrollWidth").int ?? 0
            #expect(scrollWidth <= Int64(phone.width), "\(what) scrolls sideways: \(scrollWidth)", sourceLocation: sourceLocation)
        }
        let unnamed = try await page.evaluate(
            """
            Array.from(document.querySelectorAll('a, button, input:not([type=hidden]), select, textarea')).filter(function (el) {
              var name = (el.getAttribute('aria-label') || '').trim() || (el.labels && el.labels.length ? el.labels[0].textContent.trim() : '') || (el.textContent || '').trim();
              return !name;
            }).map(function (el) { return el.outerHTML; }).join(' | ')
            """)
        #expect(unnamed == .string(""), "\(what): controls without a name: \(unnamed)", sourceLocation: sourceLocation)
        let foreign = page.requestedURLs.filter { !$0.hasPrefix(origin + "/") }
        #expect(foreign.isEmpty, "\(what) asked another origin: \(foreign)", sourceLocation: sourceLocation)
        let violations = try await page.evaluate("(window.__csp || []).join(' | ')")
        #expect(violations == .string(""), "\(what) broke its CSP: \(violations)", sourceLocation: sourceLocation)
    }

    /// Saves a desktop screenshot (or the phone's) when `SESSIOND_SCREENSHOTS` names a folder.
    static func save(_ page: Chromium.Page, _ name: String, width: Int = desktop.width, height: Int = desktop.height, mobile: Bool = false) async throws {
        guard let folder = ProcessInfo.processInfo.environment["SESSIOND_SCREENSHOTS"], !folder.isEmpty else { return }
        let png = try await page.screenshot(width: width, height: height, mobile: mobile)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try png.write(to: URL(fileURLWithPath: folder).appendingPathComponent("\(name).png"))
        if !mobile {
            // Back to a phone-sized check next time: the desktop metrics stay until changed.
            try await page.send("Emulation.clearDeviceMetricsOverride")
        }
    }
}
