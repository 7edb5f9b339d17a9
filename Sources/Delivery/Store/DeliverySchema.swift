import Kernel

/// What the kernel's `AggregateStore` needs to keep delivery sessions: the load queries, row
/// decoding, the difference between two versions as statements, and the events a change emits.
public struct DeliverySchema: AggregateSchema {
    public typealias Aggregate = DeliveryAggregate

    public init() {}

    public var versionQuery: String { DeliverySQL.versionQuery }
    public var loadQueries: [String] { DeliverySQL.loadQueries }
    public func decode(_ results: [[SQLRow]]) throws -> DeliveryAggregate? { try DeliverySQL.decode(results) }

    public func id(of aggregate: DeliveryAggregate) -> String { aggregate.id }
    public func version(of aggregate: DeliveryAggregate) -> Int64 { aggregate.version }
    public func setVersion(_ version: Int64, of aggregate: inout DeliveryAggregate) { aggregate.session.version = version }

    /// Every change appends an audit entry; a call that changes nothing appends none.
    public func changed(from before: DeliveryAggregate, to after: DeliveryAggregate) -> Bool {
        after.audit.count != before.audit.count
    }

    public func changes(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [SQLStatement] {
        DeliverySQL.changes(from: before, to: after)
    }

    public func events(from before: DeliveryAggregate?, to after: DeliveryAggregate) -> [NewEvent] {
        DeliveryEvents.events(from: before, to: after)
    }

    public func notFound(_ id: String) -> any Error { DeliveryError.sessionNotFound(id) }
}

public typealias DeliveryStore = AggregateStore<DeliverySchema>
