import Foundation
import Metrics
import NIOCore

/// Events waiting for the broker. Bounded: when it is full, the configured policy drops the oldest
/// or the newest event, and every drop is counted (never silent). Producers (SIP event loops)
/// never wait; the publisher thread takes batches and puts back what the broker did not confirm.
public final class EventOutbox: @unchecked Sendable {
    public enum OverflowPolicy: String, Sendable, CaseIterable {
        case dropOldest = "drop_oldest"
        case dropNewest = "drop_newest"
    }

    public let capacity: Int
    public let policy: OverflowPolicy
    private let condition = NSCondition()
    private var events = CircularBuffer<TernEvent>()
    private var droppedCount = 0
    private let dropped = Counter(label: "tern.events.dropped")
    private let depthGauge = Gauge(label: "tern.events.outbox_depth")

    public init(capacity: Int, policy: OverflowPolicy) {
        self.capacity = max(1, capacity)
        self.policy = policy
        events.reserveCapacity(min(self.capacity, 65_536))
    }

    /// Adds an event; returns false when it (or, by policy, an older one) was dropped.
    @discardableResult
    public func enqueue(_ event: TernEvent) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        var kept = true
        if events.count >= capacity {
            droppedCount += 1
            dropped.increment()
            kept = false
            switch policy {
            case .dropNewest: return false
            case .dropOldest: events.removeFirst()
            }
        }
        events.append(event)
        depthGauge.record(events.count)
        condition.signal()
        return kept
    }

    /// Up to `max` events, waiting at most `timeout` for the first.
    public func take(max: Int, timeout: Double) -> [TernEvent] {
        condition.lock()
        defer { condition.unlock() }
        if events.isEmpty, timeout > 0 { _ = condition.wait(until: Date(timeIntervalSinceNow: timeout)) }
        var batch: [TernEvent] = []
        while batch.count < max, let event = events.popFirst() { batch.append(event) }
        depthGauge.record(events.count)
        return batch
    }

    /// Puts unconfirmed events back in front, in their order, for republishing. What no longer
    /// fits is dropped by the policy like any overflow.
    public func putBack(_ returned: [TernEvent]) {
        condition.lock()
        defer { condition.unlock() }
        for event in returned.reversed() {
            if events.count >= capacity {
                droppedCount += 1
                dropped.increment()
                if policy == .dropNewest { continue }
                events.removeLast()
            }
            events.prepend(event)
        }
        depthGauge.record(events.count)
        condition.signal()
    }

    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return events.count
    }

    /// Events dropped so far because the outbox was full.
    public var droppedTotal: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedCount
    }
}
