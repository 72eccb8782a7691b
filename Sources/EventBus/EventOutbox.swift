import DequeModule
import Foundation
import Metrics

/// Events waiting for the broker. Bounded: when it is full, the configured policy drops the oldest
/// or the newest event, or spills to the embedded store (read back, in order, as the outbox
/// empties). Every drop is counted (never silent). Producers (SIP event loops) never wait; the
/// publisher thread takes batches and puts back what the broker did not confirm.
public final class EventOutbox: @unchecked Sendable {
    public enum OverflowPolicy: String, Sendable, CaseIterable {
        case dropOldest = "drop_oldest"
        case dropNewest = "drop_newest"
        case spill
    }

    public let capacity: Int
    public let policy: OverflowPolicy
    private let spillStore: EventSpillStore?
    private let condition = NSCondition()
    /// A deque, not NIO's CircularBuffer: taking the first event moves it out, where
    /// CircularBuffer copies it and then destroys the original (a retain and a release of a
    /// payload another core made, per event).
    private var events = Deque<TernEvent>()
    /// Events in the spill store. While there are any, new events go there too, behind them.
    private var spilled: Int
    private var droppedCount = 0
    private var spilledCount = 0
    /// The publisher sleeps in ``waitForEvents(timeout:)``: only then does an enqueue wake it, so
    /// a busy producer does not pay a wake-up per event.
    private var consumerWaiting = false
    private let dropped = Counter(label: "tern.events.dropped")
    private let spilledCounter = Counter(label: "tern.events.spilled")
    private let depthGauge = Gauge(label: "tern.events.outbox_depth")
    private let spillDepthGauge = Gauge(label: "tern.events.spill_depth")

    /// - Parameter spill: where `spill` puts what does not fit (required for that policy; events
    ///   already in it from an earlier run are published first).
    public init(capacity: Int, policy: OverflowPolicy, spill: EventSpillStore? = nil) {
        self.capacity = max(1, capacity)
        self.policy = spill == nil && policy == .spill ? .dropNewest : policy
        self.spillStore = spill
        self.spilled = spill?.initialCount ?? 0
        // Small: the ring's ends walk round all of it, so a large one touches cold memory on
        // every enqueue; it doubles when the broker is away and events pile up.
        events.reserveCapacity(min(self.capacity, 1024))
    }

    /// Adds an event; returns false when it (or, by policy, an older one) was dropped.
    @discardableResult
    public func enqueue(_ event: consuming TernEvent) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if let spillStore, spilled > 0 || events.count >= capacity {
            guard spillStore.append(event) else {
                droppedCount += 1
                dropped.increment()
                return false
            }
            spilled += 1
            spilledCount += 1
            spilledCounter.increment()
            spillDepthGauge.record(spilled)
            return true
        }
        var kept = true
        if events.count >= capacity {
            droppedCount += 1
            dropped.increment()
            kept = false
            switch policy {
            case .dropNewest, .spill: return false
            case .dropOldest: events.removeFirst()
            }
        }
        events.append(event)
        depthGauge.record(events.count)
        if consumerWaiting { condition.signal() }
        return kept
    }

    /// Up to `max` events, waiting at most `timeout` for the first.
    public func take(max: Int, timeout: Double) -> [TernEvent] {
        if timeout > 0 { _ = waitForEvents(timeout: timeout) }
        condition.lock()
        defer { condition.unlock() }
        let count = Swift.min(max, events.count)
        var batch: [TernEvent] = []
        batch.reserveCapacity(count)
        // Moved straight from the deque into the batch: bound to a name first, each event was
        // copied and the original destroyed.
        for _ in 0..<count { batch.append(events.removeFirst()) }
        depthGauge.record(events.count)
        return batch
    }

    /// Sleeps until there is an event or `timeout` seconds pass; true when there is one.
    public func waitForEvents(timeout: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if events.isEmpty {
            consumerWaiting = true
            _ = condition.wait(until: Date(timeIntervalSinceNow: timeout))
            consumerWaiting = false
        }
        return !events.isEmpty
    }

    /// Moves the oldest spilled events back into memory once half of it is free (the publisher
    /// thread calls this; the store read blocks).
    public func refillFromSpill() {
        guard let spillStore else { return }
        condition.lock()
        let room = spilled > 0 && events.count <= capacity / 2 ? capacity - events.count : 0
        condition.unlock()
        guard room > 0 else { return }
        let loaded = spillStore.takeOldest(max: Swift.min(room, 1000))
        condition.lock()
        defer { condition.unlock() }
        events.append(contentsOf: loaded)
        // The store is empty when nothing came back (a spill write that failed was counted there).
        spilled = loaded.isEmpty ? 0 : Swift.max(0, spilled - loaded.count)
        depthGauge.record(events.count)
        spillDepthGauge.record(spilled)
    }

    /// Puts unconfirmed events back in front, in their order, for republishing. What no longer
    /// fits is dropped by the policy like any overflow; with `spill`, the outbox holds them beyond
    /// its capacity (at most one publisher window), since the spilled events are all newer.
    public func putBack(_ returned: [TernEvent]) {
        condition.lock()
        defer { condition.unlock() }
        for event in returned.reversed() {
            if events.count >= capacity, policy != .spill {
                droppedCount += 1
                dropped.increment()
                if policy == .dropNewest { continue }
                events.removeLast()
            }
            events.prepend(event)
        }
        depthGauge.record(events.count)
        if consumerWaiting { condition.signal() }
    }

    /// Events in memory.
    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return events.count
    }

    /// Events waiting in the spill store.
    public var spillDepth: Int {
        condition.lock()
        defer { condition.unlock() }
        return spilled
    }

    /// Events dropped so far because the outbox was full.
    public var droppedTotal: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedCount
    }

    /// Events that went to the spill store so far.
    public var spilledTotal: Int {
        condition.lock()
        defer { condition.unlock() }
        return spilledCount
    }
}
