public import NIOCore
import NIOConcurrencyHelpers
public import Logging
import Metrics
public import SIP
#if canImport(Glibc)
import Glibc
#endif

/// What happened to a binding; other modules (presence, messaging, IMS, the event bus) observe these.
///
/// A class: every observer gets each event, and handing a binding (a dozen strings and arrays) to
/// each observer as a value copied and released all of it each time (1.6% of a REGISTER with the
/// event bus on).
public final class BindingEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case added, refreshed, removed, expired

        /// Where the kind is in `allCases`, without comparing raw values.
        public var position: Int {
            switch self {
            case .added: 0
            case .refreshed: 1
            case .removed: 2
            case .expired: 3
            }
        }
    }

    public let kind: Kind
    public let binding: Binding

    public init(kind: Kind, binding: Binding) {
        self.kind = kind
        self.binding = binding
    }

    public static func == (lhs: BindingEvent, rhs: BindingEvent) -> Bool {
        lhs.kind == rhs.kind && lhs.binding == rhs.binding
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(binding)
    }
}

/// Receives every binding change, on whatever thread made it. Must not block.
public protocol LocationObserver: AnyObject, Sendable {
    func locationChanged(_ event: BindingEvent)
}

/// Where bindings survive a restart (write-behind: memory is the truth while running).
public protocol BindingStore: Sendable {
    func save(_ binding: Binding)
    func delete(aor: String, key: String)
    /// Every binding still valid at `now` (milliseconds).
    func loadAll(validAt now: Int64) async throws -> [Binding]
    func flush() async throws
    func close() async
}

/// A store that other nodes write too (MongoDB): bindings this node does not hold can be read.
public protocol SharedBindingStore: BindingStore {
    /// The unexpired bindings of `aor` held by other nodes, completing on `loop`.
    func bindings(for aor: String, validAt now: Int64, on loop: any EventLoop) -> EventLoopFuture<[Binding]>
}

/// Wall-clock milliseconds, injectable so expiry is tested without waiting.
public protocol LocationClock: Sendable {
    func nowMilliseconds() -> Int64
}

public struct SystemLocationClock: LocationClock {
    public init() {}
    public func nowMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// The location service: bindings per AOR in memory, sharded by AOR, each shard behind its own
/// lock; changes go to observers and, write-behind, to the ``BindingStore``.
public final class LocationService: Sendable {
    public let clock: any LocationClock
    private let store: (any BindingStore)?
    /// The store when other nodes share it: requests for users with no binding here look there.
    public let sharedStore: (any SharedBindingStore)?
    private let logger: Logger
    private let shards: [NIOLockedValueBox<Shard>]
    private let observers = NIOLockedValueBox<[any LocationObserver]>([])
    private let expiryTask = NIOLockedValueBox<RepeatedTask?>(nil)
    private let bindingGauge = Gauge(label: "tern.location.bindings")
    /// Running count of bindings, kept by the change events (counting the shards would be O(n) per change).
    private let liveCount = NIOLockedValueBox(0)
    /// Flow of each registered contact (normalized), for in-dialog requests sent to a Contact.
    private let flowsByContact = NIOLockedValueBox<[String: SIPFlow]>([:])
    /// Changes counted by kind, in ``BindingEvent/Kind/allCases`` order: an array read by the
    /// kind's position, where a dictionary keyed by the kind hashed its raw-value string per change.
    private let changeCounters: [Counter]

    public init(store: (any BindingStore)?, clock: any LocationClock = SystemLocationClock(), logger: Logger,
                shardCount: Int = 32) {
        self.store = store
        self.sharedStore = store as? any SharedBindingStore
        self.clock = clock
        self.logger = logger
        self.shards = (0..<max(1, shardCount)).map { _ in NIOLockedValueBox(Shard()) }
        self.changeCounters = BindingEvent.Kind.allCases.map { kind in
            Counter(label: "tern.location.changes", dimensions: [("kind", kind.rawValue)])
        }
    }

    /// One lock's share of the AORs.
    private struct Shard {
        var table: [PrehashedString: [Binding]] = [:]
        /// No binding in the shard lapses before this (it may be earlier than the first that does:
        /// removals do not move it): the sweep passes a shard whose time has not come.
        var nextExpiry = Int64.max

        mutating func noteExpiries(of bindings: [Binding]) {
            for binding in bindings where binding.expiresAt < nextExpiry { nextExpiry = binding.expiresAt }
        }
    }

    private func shard(_ aor: PrehashedString) -> NIOLockedValueBox<Shard> {
        shards[Int(UInt(bitPattern: aor.hashCode) % UInt(shards.count))]
    }

    public func addObserver(_ observer: any LocationObserver) {
        observers.withLockedValue { $0.append(observer) }
    }

    // MARK: - Reading

    /// The unexpired bindings of an AOR, highest q first.
    public func bindings(for aor: String) -> [Binding] {
        let now = clock.nowMilliseconds()
        let key = PrehashedString(aor)
        let stored = shard(key).withLockedValue { $0.table[key] ?? [] }
        // Most AORs have one binding, unexpired: handed back as stored, with no array made.
        if stored.count <= 1, stored.allSatisfy({ $0.expiresAt > now }) { return stored }
        var valid = stored.filter { $0.expiresAt > now }
        valid.sort { $0.q > $1.q }
        return valid
    }

    /// Every unexpired binding (management, tests).
    public var allBindings: [Binding] {
        let now = clock.nowMilliseconds()
        return shards.flatMap { shard in shard.withLockedValue { Array($0.table.values.joined()) } }.filter { $0.expiresAt > now }
    }

    public var bindingCount: Int { liveCount.withLockedValue { $0 } }

    /// The flow to use for a Contact URI a device registered (a dialog's remote target), if it needs one.
    public func flow(forContact uri: SIPURI) -> SIPFlow? {
        flowsByContact.withLockedValue { $0[ContactKey.normalized(uri)] }
    }

    // MARK: - Changing

    /// Changes an AOR's bindings atomically: `body` gets them (lapsed ones already dropped) and may
    /// edit them; the differences become events and store writes. When `body` throws, nothing changes.
    ///
    /// - Returns: what `body` returns.
    public func update<T, E: Error>(aor: String, _ body: (inout [Binding]) throws(E) -> T) throws(E) -> T {
        let now = clock.nowMilliseconds()
        let key = PrehashedString(aor)
        let (result, events) = shard(key).withLockedValue { shard -> (Result<T, E>, [BindingEvent]) in
            let before = shard.table[key] ?? []
            var current = before.filter { $0.expiresAt > now }
            let result = Result { () throws(E) -> T in try body(&current) }
            guard case .success = result else { return (result, []) }
            shard.table[key] = current.isEmpty ? nil : current
            shard.noteExpiries(of: current)
            return (result, Self.diff(before: before, after: current, now: now))
        }
        publish(events)
        return try result.get()
    }

    /// Removes every binding whose flow is this connection (RFC 5626 §5: a dead flow).
    public func removeBindings(on connection: ConnectionID) {
        // A device that can be woken by a push keeps its binding: it closed the connection to sleep (RFC 8599).
        let gone: @Sendable (Binding) -> Bool = { $0.flow == .connection(connection) && $0.push == nil }
        for shard in shards {
            let removed = shard.withLockedValue { shard -> [Binding] in
                var removed: [Binding] = []
                for (aor, bindings) in shard.table where bindings.contains(where: gone) {
                    let kept = bindings.filter { !gone($0) }
                    removed += bindings.filter(gone)
                    shard.table[aor] = kept.isEmpty ? nil : kept
                }
                return removed
            }
            publish(removed.map { BindingEvent(kind: .removed, binding: $0) })
        }
    }

    /// Removes one binding (a dead target found by the proxy, or a management command).
    public func remove(aor: String, key: String) {
        update(aor: aor) { bindings in bindings.removeAll { $0.key == key } }
    }

    /// Drops every binding that lapsed by now and reports it as expired.
    ///
    /// Only shards whose earliest expiry has come are walked: walking all of them every second
    /// was 0.5 % of the CPU of 30,000 registrations, none of them due.
    public func expireDue() {
        let now = clock.nowMilliseconds()
        for shard in shards {
            let expired = shard.withLockedValue { shard -> [Binding] in
                guard shard.nextExpiry <= now else { return [] }
                var expired: [Binding] = []
                var nextExpiry = Int64.max
                for (aor, bindings) in shard.table {
                    guard bindings.contains(where: { $0.expiresAt <= now }) else {
                        for binding in bindings { nextExpiry = min(nextExpiry, binding.expiresAt) }
                        continue
                    }
                    expired += bindings.filter { $0.expiresAt <= now }
                    let kept = bindings.filter { $0.expiresAt > now }
                    for binding in kept { nextExpiry = min(nextExpiry, binding.expiresAt) }
                    shard.table[aor] = kept.isEmpty ? nil : kept
                }
                shard.nextExpiry = nextExpiry
                return expired
            }
            publish(expired.map { BindingEvent(kind: .expired, binding: $0) })
        }
    }

    /// Starts the periodic expiry sweep (every `interval`, default 1 s).
    public func startExpiry(on loop: any EventLoop, interval: TimeAmount = .seconds(1)) {
        let task = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in expireDue() }
        expiryTask.withLockedValue { $0 = task }
    }

    /// Loads what the store kept across a restart.
    public func restore() async throws {
        guard let store else { return }
        let now = clock.nowMilliseconds()
        let loaded = try await store.loadAll(validAt: now)
        for binding in loaded {
            let key = PrehashedString(binding.aor)
            shard(key).withLockedValue { shard in
                var bindings = shard.table[key] ?? []
                bindings.removeAll { $0.key == binding.key }
                bindings.append(binding)
                shard.table[key] = bindings
                shard.noteExpiries(of: [binding])
            }
        }
        liveCount.withLockedValue { $0 = loaded.count }
        flowsByContact.withLockedValue { table in
            for binding in loaded where binding.routesOverFlow {
                if let flow = binding.flow { table[ContactKey.normalized(binding.contact)] = flow }
            }
        }
        bindingGauge.record(loaded.count)
        logger.notice("restored bindings", metadata: ["count": "\(loaded.count)"])
    }

    /// Stops the sweep and writes what is pending.
    public func shutdown() async {
        expiryTask.withLockedValue { $0 }?.cancel()
        if let store {
            try? await store.flush()
            await store.close()
        }
    }

    // MARK: - Events

    private static func diff(before: [Binding], after: [Binding], now: Int64) -> [BindingEvent] {
        var events: [BindingEvent] = []
        // An AOR has a few bindings (32 at most), each keeping its key: compared in place, they
        // cost less than two dictionaries, or two arrays of keys, per REGISTER.
        for old in before where !after.contains(where: { $0.key == old.key }) {
            events.append(BindingEvent(kind: old.expiresAt <= now ? .expired : .removed, binding: old))
        }
        for new in after {
            let old = before.last { $0.key == new.key }
            if let old, old.expiresAt > now {
                if old != new { events.append(BindingEvent(kind: .refreshed, binding: new)) }
            } else {
                // A lapsed binding the sweep has not reached yet ends before its successor starts.
                if let old { events.append(BindingEvent(kind: .expired, binding: old)) }
                events.append(BindingEvent(kind: .added, binding: new))
            }
        }
        return events
    }

    private func publish(_ events: [BindingEvent]) {
        guard !events.isEmpty else { return }
        var delta = 0
        for event in events {
            changeCounters[event.kind.position].increment()
            let flow: SIPFlow?
            switch event.kind {
            case .added, .refreshed:
                if event.kind == .added { delta += 1 }
                store?.save(event.binding)
                flow = event.binding.routesOverFlow ? event.binding.flow : nil
            case .removed, .expired:
                delta -= 1
                store?.delete(aor: event.binding.aor, key: event.binding.key)
                flow = nil
            }
            flowsByContact.withLockedValue { table in
                // Most devices need no flow (plain UDP, no NAT): nothing to record, nothing to forget.
                guard flow != nil || !table.isEmpty else { return }
                table[ContactKey.normalized(event.binding.contact)] = flow
            }
        }
        let count = liveCount.withLockedValue { count -> Int in
            count += delta
            return count
        }
        bindingGauge.record(count)
        let observers = observers.withLockedValue { $0 }
        for observer in observers {
            for event in events { observer.locationChanged(event) }
        }
    }
}
