import Foundation
import Kernel
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// glibc ≥ 2.34 (Debian 12 has 2.36); its header declares it only for _GNU_SOURCE.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnActionsCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

/// Debian's `chromium`, headless, driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: the browser reads NUL-terminated JSON commands on fd 3 and writes
/// answers and events on fd 4), so no WebSocket client and no browser download are needed.
final class Chromium: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let pid: pid_t
    private let commands: Int32
    private let profile: URL
    private final class State: Sendable {
        struct Inner {
            var nextID = 1
            var waiting: [Int: CheckedContinuation<JSONValue, any Error>] = [:]
            var events: [JSONValue] = []
            var closed = false
        }
        let inner = Mutex(Inner())
    }
    private let state = State()

    static var executable: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init() throws {
        guard let executable = Self.executable else { throw Failure(description: "chromium is not installed (apt-get install chromium)") }
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        var toBrowser: [Int32] = [0, 0]
        var fromBrowser: [Int32] = [0, 0]
        guard pipe(&toBrowser) == 0, pipe(&fromBrowser) == 0 else { throw Failure(description: "pipe: \(errno)") }
        // Ours only: no other child of the test process inherits them.
        for descriptor in toBrowser + fromBrowser { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        let arguments = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--user-data-dir=\(profile.path)",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--lang=pt-BR", "about:blank",
        ]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toBrowser[0], 3)
        posix_spawn_file_actions_adddup2(&actions, fromBrowser[1], 4)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // Nothing else of the test process (servers' sockets, other children's pipes) goes along.
        _ = spawnActionsCloseFrom(&actions, 5)
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        close(toBrowser[0])
        close(fromBrowser[1])
        guard spawned == 0 else {
            close(toBrowser[1])
            close(fromBrowser[0])
            throw Failure(description: "posix_spawn chromium: \(spawned)")
        }
        self.pid = pid
        self.commands = toBrowser[1]
        let answers = fromBrowser[0]
        let state = self.state
        Thread.detachNewThread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = read(answers, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                pending += buffer[..<count]
                while let end = pending.firstIndex(of: 0) {
                    let message = Data(pending[..<end])
                    pending.removeSubrange(...end)
                    guard let json = try? JSONDecoder().decode(JSONValue.self, from: message) else { continue }
                    if case .int(let id)? = json["id"] {
                        let waiter = state.inner.withLock { $0.waiting.removeValue(forKey: Int(id)) }
                        if let error = json["error"] {
                            waiter?.resume(throwing: Failure(description: "DevTools: \(error.canonicalText())"))
                        } else {
                            waiter?.resume(returning: json["result"] ?? .null)
                        }
                    } else {
                        state.inner.withLock { $0.events.append(json) }
                    }
                }
            }
            close(answers)
            let waiters = state.inner.withLock { inner -> [CheckedContinuation<JSONValue, any Error>] in
                inner.closed = true
                defer { inner.waiting = [:] }
                return Array(inner.waiting.values)
            }
            for waiter in waiters { waiter.resume(throwing: Failure(description: "chromium went away")) }
        }
    }

    /// One DevTools command; its `result`. A page's commands name the page's session.
    @discardableResult
    func send(_ method: String, _ parameters: [String: JSONValue] = [:], session: String? = nil, timeout: Double = 20) async throws -> JSONValue {
        try await withThrowingTaskGroup(of: JSONValue.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    let id: Int? = self.state.inner.withLock { inner in
                        guard !inner.closed else { return nil }
                        let id = inner.nextID
                        inner.nextID += 1
                        inner.waiting[id] = continuation
                        return id
                    }
                    guard let id else { return continuation.resume(throwing: Failure(description: "chromium went away")) }
                    var message: [String: JSONValue] = ["id": .int(Int64(id)), "method": .string(method), "params": .object(parameters)]
                    if let session { message["sessionId"] = .string(session) }
                    var bytes = Array(JSONValue.object(message).canonicalText().utf8)
                    bytes.append(0)
                    var offset = 0
                    while offset < bytes.count {
                        let written = bytes[offset...].withUnsafeBytes { write(self.commands, $0.baseAddress, $0.count) }
                        if written < 0 && errno == EINTR { continue }
                        if written <= 0 {
                            if let waiter = self.state.inner.withLock({ $0.waiting.removeValue(forKey: id) }) {
                                waiter.resume(throwing: Failure(description: "cannot write to chromium"))
                            }
                            return
                        }
                        offset += written
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(timeout))
                throw Failure(description: "DevTools \(method) got no answer in \(timeout) s")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// Events received so far (`method`, `params`, `sessionId`).
    var events: [JSONValue] { state.inner.withLock { $0.events } }

    /// A new tab, attached. `isolated`: in a browser context of its own (no cookies shared).
    func newPage(isolated: Bool = false) async throws -> Page {
        var parameters: [String: JSONValue] = ["url": "about:blank"]
        if isolated {
            let context = try await send("Target.createBrowserContext")
            parameters["browserContextId"] = context["browserContextId"] ?? .null
        }
        let target = try await send("Target.createTarget", parameters)
        guard let targetID = target["targetId"]?.string else { throw Failure(description: "no targetId") }
        let attached = try await send("Target.attachToTarget", ["targetId": .string(targetID), "flatten": true])
        guard let session = attached["sessionId"]?.string else { throw Failure(description: "no sessionId") }
        let page = Page(browser: self, session: session)
        try await page.send("Page.enable")
        try await page.send("Network.enable")
        try await page.send("Runtime.enable")
        // Before any page script: count Content-Security-Policy violations (this script itself is the browser's, not the page's).
        try await page.send(
            "Page.addScriptToEvaluateOnNewDocument",
            ["source": "window.__csp = []; document.addEventListener('securitypolicyviolation', function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });"])
        return page
    }

    func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        close(commands)
        try? FileManager.default.removeItem(at: profile)
    }

    /// One tab.
    struct Page: Sendable {
        let browser: Chromium
        let session: String

        @discardableResult
        func send(_ method: String, _ parameters: [String: JSONValue] = [:]) async throws -> JSONValue {
            try await browser.send(method, parameters, session: session)
        }

        /// The value of a JavaScript expression (promises awaited).
        func evaluate(_ expression: String) async throws -> JSONValue {
            let answer = try await send("Runtime.evaluate", ["expression": .string(expression), "returnByValue": true, "awaitPromise": true])
            if let exception = answer["exceptionDetails"] { throw Failure(description: "page script failed: \(exception.canonicalText())") }
            return answer["result"]?["value"] ?? .null
        }

        /// Waits until the expression is truthy; its value.
        @discardableResult
        func wait(for expression: String, seconds: Double = 10, _ what: String) async throws -> JSONValue {
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            while true {
                let value = try? await evaluate(expression)
                if let value, value != .null, value != .bool(false), value != .string(""), value != .int(0) { return value }
                if ContinuousClock.now > deadline {
                    let url = (try? await evaluate("location.href"))?.string ?? "?"
                    throw Failure(description: "waited \(seconds) s for \(what) at \(url)")
                }
                try await Task.sleep(for: .milliseconds(25))
            }
        }

        /// Goes to `url` and waits for the page to have loaded there.
        func open(_ url: String) async throws {
            try await send("Page.navigate", ["url": .string(url)])
            try await Task.sleep(for: .milliseconds(50))
            try await wait(for: "document.readyState === 'complete' && location.href !== 'about:blank'", "\(url) to load")
        }

        func key(_ key: String, code: Int, text: String? = nil) async throws {
            var down: [String: JSONValue] = ["type": "keyDown", "key": .string(key), "code": .string(key), "windowsVirtualKeyCode": .int(Int64(code))]
            if let text { down["text"] = .string(text) }
            try await send("Input.dispatchKeyEvent", down)
            try await send("Input.dispatchKeyEvent", ["type": "keyUp", "key": .string(key), "code": .string(key), "windowsVirtualKeyCode": .int(Int64(code))])
        }

        func type(_ text: String) async throws {
            try await send("Input.insertText", ["text": .string(text)])
        }

        /// A PNG of what a `width`×`height` screen shows (the whole page's height when `fullPage`).
        func screenshot(width: Int, height: Int, mobile: Bool, fullPage: Bool = true) async throws -> Data {
            try await send("Emulation.setDeviceMetricsOverride", ["width": .int(Int64(width)), "height": .int(Int64(height)), "deviceScaleFactor": 1, "mobile": .bool(mobile)])
            var parameters: [String: JSONValue] = ["format": "png"]
            if fullPage {
                let scrollHeight = try await evaluate("document.documentElement.scrollHeight").int ?? Int64(height)
                parameters["clip"] = ["x": 0, "y": 0, "width": .int(Int64(width)), "height": .int(max(Int64(height), scrollHeight)), "scale": 1]
                parameters["captureBeyondViewport"] = true
            }
            let shot = try await send("Page.captureScreenshot", parameters)
            guard let data = shot["data"]?.string.flatMap({ Data(base64Encoded: $0) }) else { throw Failure(description: "no screenshot") }
            return data
        }

        /// Every URL this tab asked for so far.
        var requestedURLs: [String] {
            browser.events.compactMap { event in
                guard event["sessionId"]?.string == session, event["method"]?.string == "Network.requestWillBeSent" else { return nil }
                return event["params"]?["request"]?["url"]?.string
            }
        }
    }
}
