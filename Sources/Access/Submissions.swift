import Kernel
import Logging
import ServiceLifecycle

/// An automation that submissions run (`package-import`, `session-report`, `barcode-scan`). Automations are
/// given by the composition root, which knows the domain services they call.
public protocol Automation: Sendable {
    var slug: String { get }
    /// Checks the payload and the caller's right to run it, when it is submitted (422/404/403).
    func accept(_ payload: JSONValue, caller: Caller) async throws
    /// Runs the job. An automation that changes data commits `job.success(result)` in the same
    /// transaction as its change and answers `.committed`; one that only computes answers
    /// `.succeeded`; a job that cannot be done answers `.failed` with what was wrong.
    func run(_ job: SubmissionJob) async throws -> AutomationOutcome
}

public enum AutomationOutcome: Sendable {
    case committed
    case succeeded(JSONValue)
    case failed(JSONValue)
}

/// A submission being run by a worker that holds its lease.
public struct SubmissionJob: Sendable {
    public let id: String
    public let payload: JSONValue
    /// The principal that submitted it; the job acts as it.
    public let caller: Caller
    let worker: String
    let now: @Sendable () -> Timestamp

    /// The statement that marks the job a success; fenced by the worker's lease, so a worker that
    /// lost its lease to another cannot commit.
    public func success(_ result: JSONValue) -> SQLStatement {
        success(json: result.canonicalText())
    }

    /// The same, with the result already written as JSON text.
    public func success(json result: String) -> SQLStatement {
        SQLStatement(
            """
            UPDATE submissions SET status = 'success', result = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL
            WHERE id = ? AND status = 'processing' AND lease_owner = ?
            """,
            [.text(result), .int(now().milliseconds), .text(id), .text(worker)], expectedChanges: 1)
    }

    func failure(_ error: JSONValue) -> SQLStatement {
        SQLStatement(
            """
            UPDATE submissions SET status = 'error', error = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL
            WHERE id = ? AND status = 'processing' AND lease_owner = ?
            """,
            [.text(error.canonicalText()), .int(now().milliseconds), .text(id), .text(worker)], expectedChanges: 1)
    }
}

/// Submissions: accepted at once, run in the background by `SubmissionWorker`.
public struct SubmissionService: Sendable {
    let storage: Storage
    let access: AccessService
    let automations: [String: any Automation]
    let clock: WallClock
    let ids: IDGenerator
    let wakeUp: AsyncStream<Void>.Continuation?

    public init(storage: Storage, access: AccessService, automations: [any Automation], clock: WallClock, ids: IDGenerator, wakeUp: AsyncStream<Void>.Continuation? = nil) {
        self.storage = storage
        self.access = access
        self.automations = Dictionary(automations.map { ($0.slug, $0) }, uniquingKeysWith: { first, _ in first })
        self.clock = clock
        self.ids = ids
        self.wakeUp = wakeUp
    }

    public func submit(slug: String, payload: JSONValue, caller: Caller, ip: String? = nil) async throws -> Submission {
        guard caller.isAdmin || caller.role == AccessRole.owner.rawValue || caller.role == AccessRole.channel.rawValue else {
            throw AccessError.forbidden("Only an admin or an owner submits automations.")
        }
        guard let automation = automations[slug] else {
            throw AccessError.invalid(
                field: "automation_slug", detail: "automation_slug must be one of \(automations.keys.sorted().joined(separator: ", ")).")
        }
        guard case .object = payload else { throw AccessError.invalid(field: "payload", detail: "payload must be an object.") }
        try await automation.accept(payload, caller: caller)
        let now = clock.now()
        let submission = Submission(
            id: ids.make(), automationSlug: slug, status: .pending, payload: payload, result: nil, error: nil, caller: caller,
            createdAt: now, updatedAt: now, attempts: 0)
        try await storage.write([
            SQLStatement(
                """
                INSERT INTO submissions (id, automation_slug, status, payload, user_id, principal, created_at, updated_at, attempts)
                VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, 0)
                """,
                [
                    .text(submission.id), .text(slug), .text(payload.canonicalText()), SQLValue(caller.userID),
                    .text(AccessSQL.principalText(caller)), .int(now.milliseconds), .int(now.milliseconds),
                ]),
            access.audit(AuditAction.automationSubmitted, .success, userID: caller.userID, caller: caller, details: ["submission_id": .string(submission.id), "automation_slug": .string(slug)], at: now, ip: ip),
        ], answering: submission)
        wakeUp?.yield()
        return submission
    }

    /// One submission; someone else's is a 404, as a missing one.
    public func submission(_ id: String, caller: Caller) async throws -> Submission {
        let rows = try await storage.query("SELECT \(AccessSQL.submissionColumns), user_id FROM submissions WHERE id = ?", [.text(id)])
        guard let row = rows.first, let submission = try? AccessSQL.submission(row), visible(userID: try row.optionalString(10), submission, to: caller) else {
            throw AccessError.notFound("Submission \(id) does not exist.")
        }
        return submission
    }

    /// Admins see every submission; owners, viewers and channel keys their tenant's; nobody else any.
    func visible(userID: String?, _ submission: Submission, to caller: Caller) -> Bool {
        if caller.isAdmin { return true }
        guard let tenant = Self.readsTenant(caller) else { return false }
        return userID == tenant
    }

    static func readsTenant(_ caller: Caller) -> String? {
        switch caller.accessRole {
        case .owner, .viewer, .channel: caller.userID
        case .admin, .deliverer, nil: nil
        }
    }

    public func submissions(status: String?, slug: String?, after cursor: String?, limit: Int, caller: Caller) async throws -> (items: [Submission], next: String?) {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let status {
            guard SubmissionStatus(rawValue: status) != nil else {
                throw AccessError.invalid(field: "status", detail: "status must be one of \(SubmissionStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            conditions.append("status = ?")
            binds.append(.text(status))
        }
        if let slug { conditions.append("automation_slug = ?"); binds.append(.text(slug)) }
        if !caller.isAdmin {
            guard let userID = Self.readsTenant(caller) else { return ([], nil) }
            conditions.append("user_id = ?")
            binds.append(.text(userID))
        }
        if let cursor { conditions.append("id < ?"); binds.append(.text(cursor)) }
        var sql = "SELECT \(AccessSQL.submissionColumns) FROM submissions"
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY id DESC LIMIT ?"
        binds.append(.int(Int64(limit + 1)))
        let rows = try await storage.query(sql, binds).map(AccessSQL.submission)
        let items = Array(rows.prefix(limit))
        return (items, rows.count > limit ? items.last?.id : nil)
    }
}

/// Runs submissions one at a time: `pending` → `processing` → `success` | `error`. A worker holds
/// a lease on the job it runs; a job left `processing` by a server that died is taken up again
/// once its lease has expired, here or on any other server on the database.
public struct SubmissionWorker: Service {
    let service: SubmissionService
    let wakeUps: AsyncStream<Void>
    let name: String
    let leaseMilliseconds: Int64
    let pollInterval: Duration
    let logger: Logger
    static let maxAttempts = 3

    public init(service: SubmissionService, wakeUps: AsyncStream<Void>, name: String, leaseSeconds: Int64, pollInterval: Duration = .seconds(1), logger: Logger) {
        self.service = service
        self.wakeUps = wakeUps
        self.name = name
        self.leaseMilliseconds = max(leaseSeconds, 1) * 1000
        self.pollInterval = pollInterval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            // Wake-ups from this server's submissions, or a poll for other servers' and for leases
            // that expired.
            try await withThrowingTaskGroup(of: Void.self) { group in
                let (ticks, tick) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                group.addTask {
                    for await _ in wakeUps { tick.yield() }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: pollInterval)
                        tick.yield()
                    }
                }
                group.addTask {
                    for await _ in ticks {
                        // A failing database must not end the worker (nor, with it, the server):
                        // log, and try again at the next tick.
                        do {
                            while try await runNext() {}
                        } catch {
                            logger.error("submission worker could not run a job", metadata: ["error": "\(error)"])
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Claims and runs one job; false when there was none.
    @discardableResult
    public func runNext() async throws -> Bool {
        let storage = service.storage
        let now = service.clock.now()
        let candidates = try await storage.query(
            """
            SELECT id FROM submissions
            WHERE status = 'pending' OR (status = 'processing' AND lease_until <= ?)
            ORDER BY created_at, id LIMIT 5
            """, [.int(now.milliseconds)])
        for row in candidates {
            let id = try row.string(0)
            do {
                try await storage.write([
                    SQLStatement(
                        """
                        UPDATE submissions SET status = 'processing', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
                        WHERE id = ? AND (status = 'pending' OR (status = 'processing' AND lease_until <= ?))
                        """,
                        [.text(name), .int(now.milliseconds + leaseMilliseconds), .int(now.milliseconds), .text(id), .int(now.milliseconds)],
                        expectedChanges: 1)
                ])
            } catch StorageError.conflict {
                continue  // another worker took it
            }
            try await execute(id)
            return true
        }
        return false
    }

    func execute(_ id: String) async throws {
        let storage = service.storage
        guard let row = try await storage.query("SELECT \(AccessSQL.submissionColumns) FROM submissions WHERE id = ?", [.text(id)]).first else { return }
        let submission = try AccessSQL.submission(row)
        let clock = service.clock
        let job = SubmissionJob(id: id, payload: submission.payload, caller: submission.caller, worker: name, now: { clock.now() })
        var logger = logger
        logger[metadataKey: "submission_id"] = .string(id)
        guard let automation = service.automations[submission.automationSlug] else {
            try await finish(job.failure(["message": .string("No automation \(submission.automationSlug) on this server.")]))
            return
        }
        do {
            switch try await automation.run(job) {
            case .committed: break
            case .succeeded(let result): try await finish(job.success(result))
            case .failed(let error): try await finish(job.failure(error))
            }
            logger.info("submission finished", metadata: ["automation": .string(submission.automationSlug)])
        } catch StorageError.conflict {
            logger.warning("submission lease lost; another worker has it")
        } catch {
            let problem = (error as? Problem) ?? (error as? any ProblemConvertible)?.problem
            if let problem {
                try await finish(job.failure(["type": .string(problem.type), "message": .string(problem.detail)]))
            } else if submission.attempts >= Self.maxAttempts {
                logger.error("submission failed", metadata: ["error": "\(error)"])
                try await finish(job.failure(["message": "The automation failed; the error is logged on the server."]))
            } else {
                // Left `processing`: taken up again when the lease expires.
                logger.warning("submission attempt failed; will retry", metadata: ["error": "\(error)", "attempt": "\(submission.attempts)"])
            }
        }
    }

    private func finish(_ statement: SQLStatement) async throws {
        do {
            try await service.storage.write([statement])
        } catch StorageError.conflict {
            logger.warning("submission lease lost before its status was stored")
        }
    }
}
