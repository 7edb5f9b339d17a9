import Foundation
import Kernel

/// The delivery module's SQL, identical on SQLite and PostgreSQL: schema, the queries that load a
/// session, row decoding, and the statements that save the difference between two versions.
enum DeliverySQL {
    static let sessionColumns = """
        session_id, user_id, name, status, version, created_at, started_at, paused_at, completed_at, archived_at,
        was_reused, reuse_count, packages_total, packages_delivered, packages_failed, total_revenue_cents,
        total_cost_cents, financial_snapshot
        """
    static let addressColumns = "address_id, address_key, street, number, district, city, state, postal_code, latitude, longitude"
    static let delivererColumns = """
        deliverer_id, name, base_salary_cents, commission_per_delivery_cents, packages_assigned, packages_delivered,
        packages_failed, position
        """
    static let packageColumns = """
        package_id, barcode, delivery_status, value_cents, recipient, address_id, assigned_deliverer_id, picked_up_at,
        delivered_at, failed_at, failure_reason, created_at, position
        """
    static let auditColumns = "seq, action, actor_id, details, created_at, prev_hash, hash"

    static let versionQuery = "SELECT version FROM delivery_sessions WHERE session_id = ?"
    static let auditQuery = "SELECT \(auditColumns) FROM delivery_audit WHERE session_id = ? ORDER BY seq"

    /// One query per table, each taking the session id: no N+1, whatever the session's size.
    static let loadQueries = [
        "SELECT \(sessionColumns) FROM delivery_sessions WHERE session_id = ?",
        "SELECT \(addressColumns) FROM delivery_addresses WHERE session_id = ? ORDER BY address_id",
        "SELECT \(delivererColumns) FROM delivery_deliverers WHERE session_id = ? ORDER BY position",
        "SELECT \(packageColumns) FROM delivery_packages WHERE session_id = ? ORDER BY position",
        auditQuery,
    ]

    static func listQuery(userID: String, status: SessionStatus?, barcode: String? = nil, after cursor: String?, limit: Int) -> (String, [SQLValue]) {
        var sql = "SELECT \(sessionColumns) FROM delivery_sessions WHERE user_id = ?"
        var binds: [SQLValue] = [.text(userID)]
        if let status {
            sql += " AND status = ?"
            binds.append(.text(status.rawValue))
        } else {
            // Archived sessions leave the default listing; `status=archived` shows them.
            sql += " AND status <> 'archived'"
        }
        if let barcode, !barcode.isEmpty {
            // Holding a package whose barcode contains the text (ASCII case ignored, the same on both databases).
            sql += """
                 AND EXISTS (SELECT 1 FROM delivery_packages p WHERE p.session_id = delivery_sessions.session_id
                 AND UPPER(p.barcode) LIKE UPPER(?) ESCAPE '!')
                """
            binds.append(.text(SQLLike.containing(barcode)))
        }
        if let cursor {
            sql += " AND session_id < ?"
            binds.append(.text(cursor))
        }
        sql += " ORDER BY session_id DESC LIMIT ?"
        binds.append(.int(Int64(limit)))
        return (sql, binds)
    }

    // MARK: decoding

    static func decode(_ results: [[SQLRow]]) throws -> DeliveryAggregate? {
        guard let sessionRow = results[0].first else { return nil }
        var aggregate = DeliveryAggregate(
            session: try session(sessionRow),
            addresses: try results[1].map(address),
            deliverers: try results[2].map(deliverer),
            packages: try results[3].map(package),
            audit: try results[4].map(auditEntry))
        aggregate.recalculate()
        return aggregate
    }

    static func timestamp(_ row: SQLRow, _ index: Int) throws -> Timestamp? {
        try row.optionalInt(index).map(Timestamp.init(milliseconds:))
    }

    @Sendable static func session(_ row: SQLRow) throws -> DeliverySession {
        DeliverySession(
            id: try row.string(0), userID: try row.string(1), name: try row.optionalString(2),
            status: SessionStatus(rawValue: try row.string(3)) ?? .open, version: try row.int(4),
            createdAt: Timestamp(milliseconds: try row.int(5)), startedAt: try timestamp(row, 6), pausedAt: try timestamp(row, 7),
            completedAt: try timestamp(row, 8), archivedAt: try timestamp(row, 9), wasReused: try row.bool(10),
            reuseCount: Int(try row.int(11)), packagesTotal: Int(try row.int(12)), packagesDelivered: Int(try row.int(13)),
            packagesFailed: Int(try row.int(14)), totalRevenueCents: try row.int(15), totalCostCents: try row.int(16),
            financialSnapshot: try row.optionalString(17).map { try JSONDecoder().decode(FinancialSnapshot.self, from: Data($0.utf8)) })
    }

    static func address(_ row: SQLRow) throws -> Address {
        Address(
            id: try row.string(0), key: try row.string(1), street: try row.string(2), number: try row.optionalString(3),
            district: try row.optionalString(4), city: try row.optionalString(5), state: try row.optionalString(6),
            postalCode: try row.optionalString(7), latitude: try row.optionalDouble(8), longitude: try row.optionalDouble(9))
    }

    static func deliverer(_ row: SQLRow) throws -> SessionDeliverer {
        SessionDeliverer(
            id: try row.string(0), name: try row.optionalString(1), baseSalaryCents: try row.int(2),
            commissionPerDeliveryCents: try row.int(3), packagesAssigned: Int(try row.int(4)),
            packagesDelivered: Int(try row.int(5)), packagesFailed: Int(try row.int(6)), position: Int(try row.int(7)))
    }

    static func package(_ row: SQLRow) throws -> Package {
        Package(
            id: try row.string(0), barcode: try row.string(1), status: PackageStatus(rawValue: try row.string(2)) ?? .pending,
            valueCents: try row.int(3), recipient: try row.optionalString(4), addressID: try row.optionalString(5),
            assignedDelivererID: try row.optionalString(6), pickedUpAt: try timestamp(row, 7), deliveredAt: try timestamp(row, 8),
            failedAt: try timestamp(row, 9), failureReason: try row.optionalString(10),
            createdAt: Timestamp(milliseconds: try row.int(11)), position: Int(try row.int(12)))
    }

    @Sendable static func auditEntry(_ row: SQLRow) throws -> AuditEntry {
        AuditEntry(
            seq: try row.int(0), action: try row.string(1), actorID: try row.optionalString(2), details: try row.string(3),
            createdAt: Timestamp(milliseconds: try row.int(4)), prevHash: try row.string(5), hash: try row.string(6))
    }

    // MARK: saving

    /// The statements that turn `before` into `after`, in foreign-key order. The session update
    /// is guarded by the version `before` was read at.
    static func changes(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [SQLStatement] {
        var statements: [SQLStatement] = []
        let id = SQLValue.text(after.id)
        let session = after.session
        let snapshot = session.financialSnapshot.map { String(buffer: JSONResponse.encode($0)) }
        let sessionValues: [SQLValue] = [
            .text(session.userID), SQLValue(session.name), .text(session.status.rawValue), .int(session.version),
            .int(session.createdAt.milliseconds), SQLValue(session.startedAt?.milliseconds), SQLValue(session.pausedAt?.milliseconds),
            SQLValue(session.completedAt?.milliseconds), SQLValue(session.archivedAt?.milliseconds), .bool(session.wasReused),
            .int(Int64(session.reuseCount)), .int(Int64(session.packagesTotal)), .int(Int64(session.packagesDelivered)),
            .int(Int64(session.packagesFailed)), .int(session.totalRevenueCents), .int(session.totalCostCents), SQLValue(snapshot),
        ]
        if let before {
            statements.append(
                SQLStatement(
                    """
                    UPDATE delivery_sessions SET user_id = ?, name = ?, status = ?, version = ?, created_at = ?, started_at = ?,
                    paused_at = ?, completed_at = ?, archived_at = ?, was_reused = ?, reuse_count = ?, packages_total = ?,
                    packages_delivered = ?, packages_failed = ?, total_revenue_cents = ?, total_cost_cents = ?,
                    financial_snapshot = ? WHERE session_id = ? AND version = ?
                    """,
                    sessionValues + [id, .int(before.version)], expectedChanges: 1))
        } else {
            statements.append(
                SQLStatement(
                    "INSERT INTO delivery_sessions (\(sessionColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [id] + sessionValues))
        }

        // Addresses are only ever appended: the new ones are the tail.
        for address in after.addresses.dropFirst(before?.addresses.count ?? 0) {
            statements.append(
                SQLStatement(
                    "INSERT INTO delivery_addresses (\(addressColumns), session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        .text(address.id), .text(address.key), .text(address.street), SQLValue(address.number),
                        SQLValue(address.district), SQLValue(address.city), SQLValue(address.state), SQLValue(address.postalCode),
                        SQLValue(address.latitude), SQLValue(address.longitude), id,
                    ]))
        }

        // Deliverers and packages keep their order, so a write that adds or removes none compares
        // them position by position; only when the ids no longer line up is a lookup built.
        let oldDeliverers = before?.deliverers ?? []
        let delivererLookup: [String: SessionDeliverer]? =
            Self.sameIDs(oldDeliverers, after.deliverers, id: \.id) ? nil : Dictionary(uniqueKeysWithValues: oldDeliverers.map { ($0.id, $0) })
        for (index, deliverer) in after.deliverers.enumerated() {
            let counts: [SQLValue] = [
                .int(Int64(deliverer.packagesAssigned)), .int(Int64(deliverer.packagesDelivered)),
                .int(Int64(deliverer.packagesFailed)), .int(deliverer.totalEarnedCents),
            ]
            let old = delivererLookup.map { $0[deliverer.id] } ?? oldDeliverers[index]
            if let old {
                guard old != deliverer else { continue }
                statements.append(
                    SQLStatement(
                        """
                        UPDATE delivery_deliverers SET packages_assigned = ?, packages_delivered = ?, packages_failed = ?,
                        total_earned_cents = ? WHERE session_id = ? AND deliverer_id = ?
                        """,
                        counts + [id, .text(deliverer.id)]))
            } else {
                statements.append(
                    SQLStatement(
                        """
                        INSERT INTO delivery_deliverers (session_id, deliverer_id, name, base_salary_cents,
                        commission_per_delivery_cents, position, packages_assigned, packages_delivered, packages_failed,
                        total_earned_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            id, .text(deliverer.id), SQLValue(deliverer.name), .int(deliverer.baseSalaryCents),
                            .int(deliverer.commissionPerDeliveryCents), .int(Int64(deliverer.position)),
                        ] + counts))
            }
        }

        let oldPackages = before?.packages ?? []
        if Self.samePackageIDs(oldPackages, after.packages) {
            // Elements are compared in place (no copies: this runs on every write, over every package).
            for index in after.packages.indices where oldPackages[index] != after.packages[index] {
                let reassigned = oldPackages[index].assignedDelivererID != after.packages[index].assignedDelivererID
                statements.append(updatePackage(after.packages[index], reassigned: reassigned))
            }
        } else {
            let lookup = Dictionary(uniqueKeysWithValues: oldPackages.map { ($0.id, $0) })
            let remaining = Set(after.packages.map(\.id))
            for old in oldPackages where !remaining.contains(old.id) {
                statements.append(SQLStatement("DELETE FROM delivery_packages WHERE package_id = ?", [.text(old.id)]))
            }
            for package in after.packages {
                switch lookup[package.id] {
                case .some(let old) where old == package: continue
                case .some(let old): statements.append(updatePackage(package, reassigned: old.assignedDelivererID != package.assignedDelivererID))
                case .none: statements.append(insertPackage(package, sessionID: id))
                }
            }
        }

        let lastSeq = before?.audit.last?.seq ?? 0
        for entry in after.audit where entry.seq > lastSeq {
            statements.append(
                SQLStatement(
                    "INSERT INTO delivery_audit (session_id, \(auditColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        id, .int(entry.seq), .text(entry.action), SQLValue(entry.actorID), .text(entry.details),
                        .int(entry.createdAt.milliseconds), .text(entry.prevHash), .text(entry.hash),
                    ]))
        }
        return statements
    }

    static func packageState(_ package: Package) -> [SQLValue] {
        [
            .text(package.status.rawValue), SQLValue(package.assignedDelivererID), SQLValue(package.pickedUpAt?.milliseconds),
            SQLValue(package.deliveredAt?.milliseconds), SQLValue(package.failedAt?.milliseconds), SQLValue(package.failureReason),
        ]
    }

    /// Sets `assigned_deliverer_id` only when it changed: setting it, even to the same value, makes
    /// SQLite rewrite its index entry, one more page to write on every delivery.
    static func updatePackage(_ package: Package, reassigned: Bool) -> SQLStatement {
        let progress: [SQLValue] = [
            .text(package.status.rawValue), SQLValue(package.pickedUpAt?.milliseconds), SQLValue(package.deliveredAt?.milliseconds),
            SQLValue(package.failedAt?.milliseconds), SQLValue(package.failureReason),
        ]
        if reassigned {
            return SQLStatement(
                """
                UPDATE delivery_packages SET delivery_status = ?, picked_up_at = ?, delivered_at = ?, failed_at = ?,
                failure_reason = ?, assigned_deliverer_id = ? WHERE package_id = ?
                """,
                progress + [SQLValue(package.assignedDelivererID), .text(package.id)])
        }
        return SQLStatement(
            """
            UPDATE delivery_packages SET delivery_status = ?, picked_up_at = ?, delivered_at = ?, failed_at = ?,
            failure_reason = ? WHERE package_id = ?
            """,
            progress + [.text(package.id)])
    }

    static func insertPackage(_ package: Package, sessionID: SQLValue) -> SQLStatement {
        SQLStatement(
            """
            INSERT INTO delivery_packages (delivery_status, assigned_deliverer_id, picked_up_at, delivered_at,
            failed_at, failure_reason, package_id, session_id, barcode, value_cents, recipient, address_id,
            created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            packageState(package) + [
                .text(package.id), sessionID, .text(package.barcode), .int(package.valueCents), SQLValue(package.recipient),
                SQLValue(package.addressID), .int(package.createdAt.milliseconds), .int(Int64(package.position)),
            ])
    }

    static func samePackageIDs(_ lhs: [Package], _ rhs: [Package]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for index in lhs.indices where lhs[index].id != rhs[index].id { return false }
        return true
    }

    /// Whether two lists hold the same ids in the same order.
    static func sameIDs<Element>(_ lhs: [Element], _ rhs: [Element], id: (Element) -> String) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for index in lhs.indices where id(lhs[index]) != id(rhs[index]) { return false }
        return true
    }

    // MARK: schema

    static let migrations = [
        Migration(
            version: 101, name: "delivery sessions",
            shared: [
                """
                CREATE TABLE delivery_sessions (
                    session_id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    name TEXT,
                    status TEXT NOT NULL CHECK (status IN ('open', 'active', 'paused', 'completed', 'archived')),
                    version BIGINT NOT NULL,
                    created_at BIGINT NOT NULL,
                    started_at BIGINT,
                    paused_at BIGINT,
                    completed_at BIGINT,
                    archived_at BIGINT,
                    was_reused BOOLEAN NOT NULL DEFAULT FALSE,
                    reuse_count INTEGER NOT NULL DEFAULT 0,
                    packages_total INTEGER NOT NULL DEFAULT 0,
                    packages_delivered INTEGER NOT NULL DEFAULT 0,
                    packages_failed INTEGER NOT NULL DEFAULT 0,
                    total_revenue_cents BIGINT NOT NULL DEFAULT 0,
                    total_cost_cents BIGINT NOT NULL DEFAULT 0,
                    financial_snapshot TEXT
                )
                """,
                "CREATE INDEX delivery_sessions_user ON delivery_sessions (user_id, session_id)",
                "CREATE INDEX delivery_sessions_user_status ON delivery_sessions (user_id, status, session_id)",
                """
                CREATE TABLE delivery_addresses (
                    address_id TEXT PRIMARY KEY,
                    session_id TEXT NOT NULL REFERENCES delivery_sessions (session_id),
                    address_key TEXT NOT NULL,
                    street TEXT NOT NULL,
                    number TEXT,
                    district TEXT,
                    city TEXT,
                    state TEXT,
                    postal_code TEXT,
                    latitude DOUBLE PRECISION,
                    longitude DOUBLE PRECISION,
                    UNIQUE (session_id, address_key)
                )
                """,
                """
                CREATE TABLE delivery_deliverers (
                    session_id TEXT NOT NULL REFERENCES delivery_sessions (session_id),
                    deliverer_id TEXT NOT NULL,
                    name TEXT,
                    base_salary_cents BIGINT NOT NULL CHECK (base_salary_cents >= 0),
                    commission_per_delivery_cents BIGINT NOT NULL CHECK (commission_per_delivery_cents >= 0),
                    position INTEGER NOT NULL,
                    packages_assigned INTEGER NOT NULL DEFAULT 0,
                    packages_delivered INTEGER NOT NULL DEFAULT 0,
                    packages_failed INTEGER NOT NULL DEFAULT 0,
                    total_earned_cents BIGINT NOT NULL DEFAULT 0,
                    PRIMARY KEY (session_id, deliverer_id)
                )
                """,
                """
                CREATE TABLE delivery_packages (
                    package_id TEXT PRIMARY KEY,
                    session_id TEXT NOT NULL REFERENCES delivery_sessions (session_id),
                    barcode TEXT NOT NULL,
                    delivery_status TEXT NOT NULL CHECK (delivery_status IN ('pending', 'picked_up', 'delivered', 'failed')),
                    value_cents BIGINT NOT NULL DEFAULT 0 CHECK (value_cents >= 0),
                    recipient TEXT,
                    address_id TEXT REFERENCES delivery_addresses (address_id),
                    assigned_deliverer_id TEXT,
                    picked_up_at BIGINT,
                    delivered_at BIGINT,
                    failed_at BIGINT,
                    failure_reason TEXT,
                    created_at BIGINT NOT NULL,
                    position INTEGER NOT NULL,
                    UNIQUE (session_id, barcode),
                    FOREIGN KEY (session_id, assigned_deliverer_id) REFERENCES delivery_deliverers (session_id, deliverer_id)
                )
                """,
                "CREATE INDEX delivery_packages_session_position ON delivery_packages (session_id, position)",
                "CREATE INDEX delivery_packages_address ON delivery_packages (address_id)",
                "CREATE INDEX delivery_packages_deliverer ON delivery_packages (session_id, assigned_deliverer_id)",
                """
                CREATE TABLE delivery_audit (
                    session_id TEXT NOT NULL REFERENCES delivery_sessions (session_id),
                    seq BIGINT NOT NULL,
                    action TEXT NOT NULL,
                    actor_id TEXT,
                    details TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    prev_hash TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    PRIMARY KEY (session_id, seq)
                )
                """,
            ],
            // The audit trail is append-only at the database level, whoever connects to it.
            sqlite: [
                """
                CREATE TRIGGER delivery_audit_no_update BEFORE UPDATE ON delivery_audit
                BEGIN SELECT RAISE(ABORT, 'delivery_audit is append-only'); END
                """,
                """
                CREATE TRIGGER delivery_audit_no_delete BEFORE DELETE ON delivery_audit
                BEGIN SELECT RAISE(ABORT, 'delivery_audit is append-only'); END
                """,
            ],
            postgres: [
                """
                CREATE FUNCTION delivery_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'delivery_audit is append-only'; END $$
                """,
                """
                CREATE TRIGGER delivery_audit_no_update_or_delete BEFORE UPDATE OR DELETE ON delivery_audit
                FOR EACH ROW EXECUTE FUNCTION delivery_audit_refuse_change()
                """,
                """
                CREATE TRIGGER delivery_audit_no_truncate BEFORE TRUNCATE ON delivery_audit
                FOR EACH STATEMENT EXECUTE FUNCTION delivery_audit_refuse_change()
                """,
            ])
    ]
}
