import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Starts a release `sessiond` on a fresh database, seeds it through the HTTP API, and drives load
/// at it with `wrk` from a second process on 127.0.0.1. Reports requests/s, p50, p99 and the
/// server's peak RSS for each workload, and the goals they are held to.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessiond-bench",
        abstract: "Measure sessiond: /health, authentication alone, the big session read, and durable deliveries over 1,000 active sessions, with a key on every request.")

    @Option(help: "Path of the sessiond binary (build it with -c release).")
    var server = ".build/release/sessiond"

    @Option(help: "Database for the server: sqlite:PATH (default: a fresh temporary file) or a postgres:// URL of an empty database.")
    var database: String?

    @Option(help: "Port for the server.")
    var port = 18080

    @Option(help: "wrk threads.")
    var threads = 2

    @Option(help: "wrk connections.")
    var connections = 32

    @Option(help: "Seconds per workload.")
    var duration = 5

    @Option(help: "Active sessions for the delivery workload.")
    var sessions = 1000

    @Option(help: "Packages in each of those sessions (enough that no delivery repeats): a third for each delivery workload.")
    var packagesPerSession = 100

    @Option(help: "Live-stream clients (each follows one active session's events) during the last delivery workload.")
    var streamClients = 1000

    @Flag(help: "On PostgreSQL: connect the live-stream clients to a second server on the same database (the writes go to the first), so events cross servers through LISTEN/NOTIFY.")
    var streamsOnSecondServer = false

    @Option(help: "Chatbot conversations for the turns workload (0 leaves it out).")
    var conversations = 1000

    @Flag(inversion: .prefixedNo, help: "Measure webhooks: a receiver in this process gets every delivery.package.delivered event, at rest and under the write load.")
    var webhooks = true

    @Flag(inversion: .prefixedNo, help: "Measure Telegram bots in webhook mode: updates handled per second, update to reply leaving (a fake Bot API in this process).")
    var telegram = true

    @Flag(help: "Run the Telegram workload only.")
    var telegramOnly = false

    @Option(help: "Bots (channels) in the Telegram workload, 8 owner chats each.")
    var telegramBots = 8

    @Option(help: "Server log level during the run.")
    var logLevel = "warning"

    @Option(help: "Server log format during the run (json or text).")
    var logFormat = "json"

    @Option(help: "Also write the report (markdown) to this file.")
    var output: String?

    func run() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let databaseURL = database ?? "sqlite:\(scratch.appendingPathComponent("bench.sqlite").path)"
        let serverProcess = Process()
        serverProcess.executableURL = URL(fileURLWithPath: server)
        serverProcess.arguments = ["serve", "--port", String(port), "--database", databaseURL, "--log-level", logLevel, "--log-format", logFormat]
        serverProcess.standardOutput = FileHandle.nullDevice
        // Every request but /health carries a key. The rate limiter stays on (its bookkeeping is
        // part of each request's cost) with a budget no workload reaches.
        let adminKey = "bench-admin-" + UUID().uuidString
        let telegramAPI = BenchTelegram()
        await telegramAPI.start()
        defer { telegramAPI.stop() }
        var secretKey = [UInt8](repeating: 0, count: 32)
        for index in secretKey.indices { secretKey[index] = UInt8.random(in: 0...255) }
        serverProcess.environment = ProcessInfo.processInfo.environment.merging(
            [
                "ADMIN_API_KEY": adminKey, "RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000", "WEBHOOK_ALLOW_PRIVATE": "true",
                "TELEGRAM_API_URL": telegramAPI.url, "CHANNELS_SECRET_KEY": Data(secretKey).base64EncodedString(), "PUBLIC_BASE_URL": "http://127.0.0.1:\(port)",
            ]) { _, new in new }
        try serverProcess.run()
        defer { serverProcess.terminate() }
        let base = "http://127.0.0.1:\(port)"
        let admin = Client(base: base, key: adminKey)
        try await admin.waitUntilReady()
        // Owner keys, looked up in the database on every request like any non-admin key.
        let reader = Client(base: base, key: try await admin.createKey(role: "owner", user: "bench-reader"))
        let client = Client(base: base, key: try await admin.createKey(role: "owner", user: "bench-writer"))
        log("server pid \(serverProcess.processIdentifier) ready on \(databaseURL.hasPrefix("postgres") ? "PostgreSQL" : "SQLite")")
        let databaseName = databaseURL.hasPrefix("postgres") ? "PostgreSQL" : "SQLite (WAL, synchronous=FULL)"
        if telegramOnly {
            let (row, line) = try await telegramWorkload(base: base, admin: admin, server: serverProcess, telegram: telegramAPI, scratch: scratch)
            let report = Self.report(rows: [row], database: databaseName, settings: "wrk -t\(threads) -c\(connections) -d\(duration)s --latency, server log level \(logLevel) (\(logFormat))")
                + "\n" + line
            print(report)
            if let output { try report.write(toFile: output, atomically: true, encoding: .utf8) }
            return
        }

        // Seed: one session with 200 packages for the read; `sessions` active sessions for writes.
        let bigID = try await reader.createSession(user: "bench-reader")
        try await reader.addPackages(bigID, prefix: "BIG", count: 200)
        try await reader.start(bigID, deliverers: ["r1", "r2", "r3", "r4"])
        let big = try await reader.get("/api/sessions/\(bigID)")
        log("big session: \(big.count) bytes")

        // `sessions` active sessions for the delivery workloads, and a quarter as many more for the
        // webhook workload (so the other workloads stay as they were without webhooks).
        let webhookSessions = webhooks ? max(sessions / 4, 1) : 0
        var targets: [[(String, String, String)]] = Array(repeating: [], count: sessions + webhookSessions)
        let seedStart = Date()
        try await withThrowingTaskGroup(of: (Int, [(String, String, String)]).self) { group in
            var next = 0
            func launch(_ index: Int) {
                group.addTask {
                    let id = try await client.createSession(user: "bench-writer")
                    try await client.addPackages(id, prefix: "W\(index)-", count: packagesPerSession)
                    try await client.start(id, deliverers: ["a", "b", "c", "d"])
                    return (index, try await client.assignments(id).map { (id, $0.0, $0.1) })
                }
            }
            while next < min(8, targets.count) { launch(next); next += 1 }
            while let (index, items) = try await group.next() {
                targets[index] = items
                if next < targets.count { launch(next); next += 1 }
            }
        }
        log("seeded \(targets.count) active sessions × \(packagesPerSession) packages in \(String(format: "%.1f", Date().timeIntervalSince(seedStart))) s")
        let webhookTargets = Array(targets[sessions...])
        targets = Array(targets[..<sessions])

        // Three delivery workloads on different packages of the same sessions (a third each), so no
        // delivery repeats: spread (consecutive requests go to different sessions), concentrated
        // (5 sessions at a time: the 32 requests in flight all hit those 5), and spread again with
        // live-stream clients connected. The webhook workload has sessions of its own.
        let third = packagesPerSession / 3
        func spread(_ rounds: Range<Int>) -> [(String, String, String)] {
            var list: [(String, String, String)] = []
            for round in rounds {
                for session in targets where round < session.count { list.append(session[round]) }
            }
            return list
        }
        var concentrated: [(String, String, String)] = []
        for group in stride(from: 0, to: targets.count, by: 5) {
            let sessions = targets[group..<min(group + 5, targets.count)]
            for round in third..<(2 * third) {
                for session in sessions where round < session.count { concentrated.append(session[round]) }
            }
        }
        func script(_ name: String, _ list: [(String, String, String)]) throws -> String {
            let path = scratch.appendingPathComponent("\(name).lua")
            try Self.deliveryScript(list, threads: threads, dataPath: scratch.appendingPathComponent("\(name).tsv").path, key: client.key)
                .write(to: path, atomically: true, encoding: .utf8)
            return path.path
        }

        var rows: [Row] = []
        rows.append(try run(name: "GET /health (no key)", url: base + "/health", server: serverProcess))
        rows.append(try run(name: "GET /api/auth/whoami (owner key: authentication alone)", url: base + "/api/auth/whoami", key: reader.key, server: serverProcess))
        rows.append(try run(name: "GET /api/sessions/{id} (200 packages, \(big.count / 1024) KB, owner key)", url: base + "/api/sessions/\(bigID)", key: reader.key, server: serverProcess))
        // The dashboard: the same session's live page, rendered for a browser logged in with the API-key form.
        let cookie = try Self.loginCookie(base: base, key: reader.key ?? "")
        rows.append(try run(
            name: "GET /sessions/{id} (its live page, HTML, login cookie)", url: base + "/sessions/\(bigID)", headers: ["Cookie: \(cookie)"], server: serverProcess))
        rows.append(try run(name: "POST delivery/complete over \(sessions) active sessions (owner key)", url: base, script: try script("spread", spread(0..<third)), server: serverProcess))
        rows.append(try run(name: "POST delivery/complete concentrated on 5 sessions at a time (owner key)", url: base, script: try script("concentrated", concentrated), server: serverProcess))

        var streamLine = ""
        if streamClients > 0 {
            let watched = targets.prefix(streamClients).compactMap { $0.first?.0 }
            var streamPort = port
            var second: Process?
            if streamsOnSecondServer, databaseURL.hasPrefix("postgres") {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: server)
                process.arguments = ["serve", "--port", String(port + 1), "--database", databaseURL, "--log-level", logLevel, "--log-format", logFormat]
                process.standardOutput = FileHandle.nullDevice
                process.environment = serverProcess.environment
                try process.run()
                try await Client(base: "http://127.0.0.1:\(port + 1)", key: nil).waitUntilReady()
                streamPort = port + 1
                second = process
            }
            defer { second?.terminate() }
            let clients = try StreamClients(port: streamPort, paths: watched.map { "/api/sessions/\($0)/events" }, key: client.key ?? "")
            try await Task.sleep(for: .seconds(2))
            clients.reset()
            rows.append(try run(
                name: "POST delivery/complete over \(sessions) sessions, \(watched.count) SSE clients following them\(second == nil ? "" : " on a second server")", url: base,
                script: try script("streamed", spread((2 * third)..<packagesPerSession)), server: serverProcess))
            try await Task.sleep(for: .seconds(1))
            clients.stop()
            let (count, latencies) = clients.results
            func percentile(_ p: Double) -> Int { latencies.isEmpty ? -1 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            let place = second == nil ? "on the server that writes" : "on a second server (writes on the first; NOTIFY between them)"
            streamLine = "Live streams: \(watched.count) clients \(place), each following one session, received \(count) events; from the change "
                + "(its created_at, taken before the commit) to the client p50 \(percentile(0.5)) ms, p99 \(percentile(0.99)) ms, "
                + "max \(latencies.last ?? -1) ms (goal p99 < 100 ms).\n"
        }

        var webhookLine = ""
        if webhooks {
            let receiver = BenchReceiver()
            await receiver.start()
            defer { receiver.stop() }
            _ = try await admin.json("POST", "/api/webhooks", ["url": receiver.url, "events": ["delivery.package.delivered"]])
            var rest: [(String, String, String)] = []
            for round in 0..<packagesPerSession {
                for session in webhookTargets where round < session.count { rest.append(session[round]) }
            }
            // At rest: one delivery every 50 ms, each alone in the system.
            for (session, package, deliverer) in rest.prefix(100) {
                _ = try await client.json("POST", "/api/sessions/\(session)/delivery/complete", ["package_id": package, "deliverer_id": deliverer])
                try await Task.sleep(for: .milliseconds(50))
            }
            try await Task.sleep(for: .seconds(1))
            let idle = receiver.results
            receiver.reset()
            // Under load: the write workload, then until the queue is empty.
            rows.append(try run(
                name: "POST delivery/complete over \(webhookSessions) other sessions, each event sent to a webhook receiver", url: base,
                script: try script("webhooks", Array(rest.dropFirst(100))), server: serverProcess))
            let written = Date().timeIntervalSince1970
            for _ in 0..<600 {
                let stats = try await admin.json("GET", "/api/webhooks/stats")
                if ((stats["totals"] as? [String: Any])?["pending"] as? Int) == 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let load = receiver.results
            // Sending alone: every event of that workload queued again at once (a replay), and
            // sent with no writes competing for the CPU.
            let endpoint = ((try await admin.json("GET", "/api/webhooks"))["items"] as? [[String: Any]])?.first?["endpoint_id"] as? String ?? ""
            receiver.reset()
            let replayStart = Date()
            let queued = try await admin.json("POST", "/api/webhooks/\(endpoint)/replay", ["since": Self.rfc3339(Date(timeIntervalSince1970: written - Double(duration) - 1))])["queued"] as? Int ?? 0
            log("webhooks: replay of \(queued) events")
            while receiver.results.arrivals.count < queued, Date().timeIntervalSince(replayStart) < 120 {
                try await Task.sleep(for: .milliseconds(100))
            }
            let replayed = receiver.results.arrivals
            _ = try await admin.request("DELETE", "/api/webhooks/\(endpoint)")
            let replaySeconds = (replayed.max() ?? 0) - replayStart.timeIntervalSince1970
            func percentile(_ values: [Double], _ p: Double) -> String {
                values.isEmpty ? "?" : String(format: "%.0f", values[min(values.count - 1, Int(Double(values.count) * p))])
            }
            let first = load.arrivals.min() ?? 0
            let last = load.arrivals.max() ?? 0
            let rate = last > first ? Double(load.arrivals.count) / (last - first) : 0
            let drained = max(0, last - written)
            webhookLine = "Webhooks: at rest (one delivery every 50 ms, \(idle.latencies.count) events) from the change (its created_at, before the commit) to the receiver "
                + "p50 \(percentile(idle.latencies, 0.5)) ms, p99 \(percentile(idle.latencies, 0.99)) ms (goal p50 < 50 ms). Under the write load above: "
                + "\(load.arrivals.count) events delivered at \(String(format: "%.0f", rate))/s (first to last arrival; goal ≥ 2,000/s on SQLite), "
                + "the queue empty \(String(format: "%.1f", drained)) s after the writes stopped; change to arrival p50 \(percentile(load.latencies, 0.5)) ms, "
                + "p99 \(percentile(load.latencies, 0.99)) ms. Sending alone (a replay of \(queued) of those events, queued at once): \(replayed.count) delivered in "
                + "\(String(format: "%.1f", replaySeconds)) s, \(String(format: "%.0f", replaySeconds > 0 ? Double(replayed.count) / replaySeconds : 0))/s (goal ≥ 2,000/s on SQLite).\n"
        }

        // After the webhook workload, whose endpoint is deleted by then: the turns run alone.
        if conversations > 0 {
            // Chatbot turns: `conversations` live conversations with consent; each wrk request is
            // the next turn of the next conversation (one user message), so none conflicts.
            var ids: [String] = []
            for index in 0..<conversations {
                let id = try await client.json("POST", "/api/conversations", ["channel": "whatsapp", "contact": "55119\(String(format: "%08d", index))", "user_id": "bench"])["conversation_id"] as? String ?? ""
                _ = try await client.json("POST", "/api/conversations/\(id)/consent", ["given": true])
                ids.append(id)
            }
            let path = scratch.appendingPathComponent("turns.lua")
            try Self.turnScript(ids, threads: threads, dataPath: scratch.appendingPathComponent("conversations.txt").path, key: client.key)
                .write(to: path, atomically: true, encoding: .utf8)
            rows.append(try run(name: "POST /api/conversations/{id}/turns over \(conversations) conversations (durable, in order per conversation)", url: base, script: path.path, server: serverProcess))
        }

        var telegramLine = ""
        if telegram {
            let (row, line) = try await telegramWorkload(base: base, admin: admin, server: serverProcess, telegram: telegramAPI, scratch: scratch)
            rows.append(row)
            telegramLine = line
        }

        let delivered = try await client.deliveredCount(targets.prefix(50).map { $0.first?.0 ?? "" })
        log("check: \(delivered) packages delivered in the first 50 sessions")

        var report = Self.report(rows: rows, database: databaseName, settings: "wrk -t\(threads) -c\(connections) -d\(duration)s --latency, server log level \(logLevel) (\(logFormat))")
        report += streamLine.isEmpty ? "" : "\n" + streamLine
        report += telegramLine.isEmpty ? "" : "\n" + telegramLine
        report += webhookLine.isEmpty ? "" : "\n" + webhookLine
        // The file first: printing into a closed pipe ends the process.
        if let output { try report.write(toFile: output, atomically: true, encoding: .utf8) }
        print(report)
    }

    struct Row {
        var name: String
        var requestsPerSecond: Double
        var p50: String
        var p99: String
        var non2xx: Int
        var peakRSSMB: Double
        /// The server's CPU time (user + system) per request during the run, in microseconds.
        var cpuMicrosPerRequest: Double
    }

    /// The server's CPU time so far, in seconds (user + system, from /proc).
    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3, utime 14 and stime 15 (1-based), in clock ticks.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// `sessiond_session=…` from the dashboard's API-key login form (curl: the 303 is not followed).
    static func loginCookie(base: String, key: String) throws -> String {
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-s", "-o", "/dev/null", "-D", "-", "-X", "POST", base + "/auth/login", "-H", "Origin: \(base)", "--data-urlencode", "api_key=\(key)"]
        let pipe = Pipe()
        curl.standardOutput = pipe
        try curl.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        curl.waitUntilExit()
        let headers = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
        guard let line = headers.first(where: { $0.lowercased().hasPrefix("set-cookie: sessiond_session=") }) else {
            throw BenchError("the login form gave no cookie: \(headers.first ?? "")")
        }
        return String(line.dropFirst("set-cookie: ".count).prefix { $0 != ";" })
    }

    func run(name: String, url: String, script: String? = nil, key: String? = nil, headers: [String] = [], server: Process) throws -> Row {
        log("load: \(name)")
        let wrk = Process()
        wrk.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        var arguments = ["wrk", "-t\(threads)", "-c\(connections)", "-d\(duration)s", "--latency"]
        if let script { arguments += ["-s", script] }
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        for header in headers { arguments += ["-H", header] }
        wrk.arguments = arguments + [url]
        let pipe = Pipe()
        wrk.standardOutput = pipe
        let cpuBefore = Self.cpuSeconds(pid: server.processIdentifier)
        try wrk.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        wrk.waitUntilExit()
        let cpu = Self.cpuSeconds(pid: server.processIdentifier) - cpuBefore
        let text = String(decoding: data, as: UTF8.self)
        func field(_ prefix: String) -> String? {
            text.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(prefix) }
                .map { $0.trimmingCharacters(in: .whitespaces).dropFirst(prefix.count).trimmingCharacters(in: .whitespaces) }
        }
        let rps = Double(field("Requests/sec:") ?? "0") ?? 0
        let non2xx = Int(field("Non-2xx or 3xx responses:") ?? "0") ?? 0
        return Row(
            name: name, requestsPerSecond: rps, p50: field("50%") ?? "?", p99: field("99%") ?? "?", non2xx: non2xx,
            peakRSSMB: Self.peakRSS(pid: server.processIdentifier),
            cpuMicrosPerRequest: rps > 0 ? cpu / (rps * Double(duration)) * 1_000_000 : 0)
    }

    static func peakRSS(pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kilobytes / 1024
    }

    /// The part every POST workload's wrk script shares: each thread numbers itself, takes lines n,
    /// n + threads, … of a data file (a Lua table literal this big exceeds Lua's constant limit),
    /// handing each to `keep` (Lua that stores `line`), and sends JSON with the key.
    static func postScript(dataPath: String, threads: Int, key: String?, tables: [String], keep: String, request: String) -> String {
        """
        local counter = 0
        function setup(thread)
          thread:set("id", counter)
          counter = counter + 1
        end
        function init(args)
        \(tables.map { "  \($0) = {}" }.joined(separator: "\n"))
          local n = 0
          for line in io.lines("\(dataPath)") do
            if n % \(threads) == id then
              \(keep)
            end
            n = n + 1
          end
          index = 1
          wrk.method = "POST"
          wrk.headers["Content-Type"] = "application/json"
          wrk.headers["Authorization"] = "Bearer \(key ?? "")"
        end
        \(request)
        """
    }

    /// A wrk script that sends each delivery once.
    static func deliveryScript(_ deliveries: [(String, String, String)], threads: Int, dataPath: String, key: String?) throws -> String {
        var lines = ""
        for (session, package, deliverer) in deliveries {
            lines += "/api/sessions/\(session)/delivery/complete\t{\"package_id\":\"\(package)\",\"deliverer_id\":\"\(deliverer)\"}\n"
        }
        try lines.write(toFile: dataPath, atomically: true, encoding: .utf8)
        return postScript(
            dataPath: dataPath, threads: threads, key: key, tables: ["paths", "bodies"],
            keep: """
                local tab = string.find(line, "\\t")
                      table.insert(paths, string.sub(line, 1, tab - 1))
                      table.insert(bodies, string.sub(line, tab + 1))
                """,
            request: """
                function request()
                  local i = index
                  index = index + 1
                  if index > #paths then index = 1 end
                  return wrk.format(nil, paths[i], nil, bodies[i])
                end
                """)
    }

    /// A wrk script that sends turn 1, 2, 3… of each conversation in turn, each with one user message.
    static func turnScript(_ ids: [String], threads: Int, dataPath: String, key: String?) throws -> String {
        try (ids.joined(separator: "\n") + "\n").write(toFile: dataPath, atomically: true, encoding: .utf8)
        return postScript(
            dataPath: dataPath, threads: threads, key: key, tables: ["ids", "turns"],
            keep: """
                table.insert(ids, line)
                      table.insert(turns, 0)
                """,
            request: """
                function request()
                  -- wrk builds one request per thread that it may never send: that one must not
                  -- use up a turn number (the conversation would then see turn n+1 before n).
                  if not primed then
                    primed = true
                    return wrk.format("GET", "/health")
                  end
                  local i = index
                  index = index + 1
                  if index > #ids then index = 1 end
                  turns[i] = turns[i] + 1
                  local body = '{"turn_id":' .. turns[i] .. ',"messages":[{"role":"user","content":"mensagem ' .. turns[i] .. '"}]}'
                  return wrk.format(nil, "/api/conversations/" .. ids[i] .. "/turns", nil, body)
                end
                """)
    }

    static func report(rows: [Row], database: String, settings: String) -> String {
        var text = "| workload (\(database)) | requests/s | p50 | p99 | non-2xx | server CPU per request | server peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        for row in rows {
            text += "| \(row.name) | \(String(format: "%.0f", row.requestsPerSecond)) | \(row.p50) | \(row.p99) | \(row.non2xx) | \(String(format: "%.0f", row.cpuMicrosPerRequest)) µs | \(String(format: "%.1f", row.peakRSSMB)) MB |\n"
        }
        if rows.count >= 5, rows[0].requestsPerSecond > 0, rows[1].requestsPerSecond > 0 {
            let ratio = rows[2].requestsPerSecond / rows[0].requestsPerSecond * 100
            // Both cores are busy in both runs, so the extra CPU per request is 2 cores × the
            // difference of the per-request times.
            let authMicros = 2 * (1 / rows[1].requestsPerSecond - 1 / rows[0].requestsPerSecond) * 1_000_000
            let concentration = rows[4].requestsPerSecond / rows[3].requestsPerSecond * 100
            text += "\nBig read at \(String(format: "%.0f", ratio))% of /health (goal ≥ 40%). "
            text += "Durable deliveries \(String(format: "%.0f", rows[3].requestsPerSecond))/s, p99 \(rows[3].p99) (goal ≥ 5,000/s, p99 < 20 ms on SQLite; ≥ 4,000/s on PostgreSQL); "
            text += "concentrated on 5 sessions \(String(format: "%.0f", rows[4].requestsPerSecond))/s, \(String(format: "%.0f", concentration))% of spread (goal: within 20%).\n"
            text += "Authentication (an owner key: parse, hash, one indexed read of api_keys, rate-limit bucket) costs about \(String(format: "%.0f", authMicros)) µs of server CPU per request (whoami against /health, both cores busy).\n"
        }
        text += "\nSettings: \(settings).\n"
        return text
    }

    static func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
    }
}

/// The few calls seeding needs, over URLSession.
struct Client: Sendable {
    let base: String
    var key: String?

    func request(_ method: String, _ path: String, _ body: Any? = nil) async throws -> (Int, Data) {
        guard let url = URL(string: base + path) else { throw BenchError("bad URL \(base + path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func json(_ method: String, _ path: String, _ body: Any? = nil) async throws -> [String: Any] {
        let (status, data) = try await request(method, path, body)
        guard (200..<300).contains(status), let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BenchError("\(method) \(path) → \(status): \(String(decoding: data, as: UTF8.self).prefix(300))")
        }
        return object
    }

    func get(_ path: String) async throws -> Data { try await request("GET", path).1 }

    func waitUntilReady() async throws {
        for _ in 0..<200 {
            if let (status, _) = try? await request("GET", "/ready"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("server did not become ready")
    }

    func createKey(role: String, user: String) async throws -> String {
        guard let key = try await json("POST", "/api/keys", ["name": "bench \(user)", "role": role, "user_id": user])["key"] as? String else {
            throw BenchError("no key")
        }
        return key
    }

    func createSession(user: String) async throws -> String {
        guard let id = try await json("POST", "/api/sessions/create", ["user_id": user])["session_id"] as? String else { throw BenchError("no session_id") }
        return id
    }

    func addPackages(_ id: String, prefix: String, count: Int) async throws {
        let packages: [[String: Any]] = (0..<count).map { index in
            [
                "barcode": "\(prefix)\(index)", "value_cents": 1000 + index, "recipient": "Cliente \(index)",
                "address": ["street": "Rua \(index % 40)", "number": String(index), "district": "Centro", "city": "São Paulo", "state": "SP", "postal_code": "01000-000"],
            ]
        }
        _ = try await json("POST", "/api/sessions/\(id)/packages", ["packages": packages])
    }

    func start(_ id: String, deliverers: [String]) async throws {
        _ = try await json("POST", "/api/sessions/\(id)/start", ["deliverers": deliverers.map { ["deliverer_id": $0, "base_salary_cents": 8000, "commission_per_delivery_cents": 300] }])
    }

    func assignments(_ id: String) async throws -> [(String, String)] {
        let session = try await json("GET", "/api/sessions/\(id)")
        return (session["packages"] as? [[String: Any]] ?? []).compactMap { package in
            guard let packageID = package["package_id"] as? String, let deliverer = package["assigned_deliverer_id"] as? String else { return nil }
            return (packageID, deliverer)
        }
    }

    func deliveredCount(_ ids: [String]) async throws -> Int {
        var total = 0
        for id in ids where !id.isEmpty { total += try await json("GET", "/api/sessions/\(id)")["packages_delivered"] as? Int ?? 0 }
        return total
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
