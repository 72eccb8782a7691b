import NIOConcurrencyHelpers
public import NIOCore

/// A hashed timer wheel on one event loop: timers that need no better precision than a tick,
/// kept out of NIO's scheduled-task heap. Each loop has two (``TimerWheels``): a coarse one
/// (100 ms ticks) for the long transaction timers (B, C, D, F, H, I, J, K, L, M: seconds long),
/// and a fine one (10 ms ticks) for retransmissions (A, E, G) and NOTIFY throttling.
///
/// Under load these are most of a server's timers. In NIO's heap each costs a task, a heap insert
/// and a heap removal that copies tasks along the way (with 20,000 timers pending, 13% of a
/// presence server's CPU), and a cancel searches the whole heap; here a timer is an entry in a
/// slot's table, a cancel is one removal, and one tick task per wheel fires what is due. A wheel
/// with nothing armed stops ticking.
public final class TimerWheel: Sendable {
    public struct Token: Hashable, Sendable {
        let id: UInt64
        let slot: Int
    }

    private struct Entry {
        let id: UInt64
        let dueTick: Int64
        let fire: @Sendable () -> Void
    }

    private struct State {
        /// By id within each slot: a cancel (every answered transaction's Timer F) is one removal,
        /// not a scan of everything due in that tick.
        var buckets: [[UInt64: Entry]]
        var armed = 0
        var nextID: UInt64 = 1
        var currentTick: Int64 = 0
        var ticking = false

        /// An emptied slot keeps a small table for the timers that come to it next turn (made
        /// again and grown step by step, it was an allocation per proxied request), but gives a
        /// burst's large one back.
        mutating func releaseIfLarge(_ slot: Int) {
            if buckets[slot].capacity > 64 { buckets[slot] = [:] }
        }
    }

    let tick: TimeAmount
    private let slots: Int
    private let loop: any EventLoop
    private let origin: NIODeadline
    private let state: NIOLockedValueBox<State>

    /// - Parameters:
    ///   - tick: the precision: a timer fires on the first tick at or after its due time.
    ///   - slots: ticks in one turn; a timer further away waits in its slot for later turns.
    init(loop: any EventLoop, tick: TimeAmount, slots: Int) {
        self.loop = loop
        self.tick = tick
        self.slots = slots
        self.origin = loop.now
        self.state = NIOLockedValueBox(State(buckets: Array(repeating: [:], count: slots)))
    }

    /// Arms `fire` to run on the wheel's loop `delay` from now, rounded up to the next tick.
    @discardableResult
    public func schedule(after delay: TimeAmount, _ fire: @escaping @Sendable () -> Void) -> Token {
        let elapsed = loop.now - origin
        let due = (elapsed + delay).nanoseconds
        let dueTick = (due + tick.nanoseconds - 1) / tick.nanoseconds
        let (token, start) = state.withLockedValue { state -> (Token, Bool) in
            // Never behind the tick the wheel will look at next (a zero delay on a tick's edge).
            let dueTick = max(dueTick, state.currentTick)
            let id = state.nextID
            state.nextID += 1
            let slot = Int(dueTick % Int64(slots))
            state.buckets[slot][id] = Entry(id: id, dueTick: dueTick, fire: fire)
            state.armed += 1
            let start = !state.ticking
            state.ticking = true
            return (Token(id: id, slot: slot), start)
        }
        if start {
            loop.execute { [self] in
                _ = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] task in advance(task) }
            }
        }
        return token
    }

    public func cancel(_ token: Token) {
        state.withLockedValue { state in
            guard state.buckets[token.slot].removeValue(forKey: token.id) != nil else { return }
            state.armed -= 1
            if state.buckets[token.slot].isEmpty { state.releaseIfLarge(token.slot) }
        }
    }

    private func advance(_ task: RepeatedTask) {
        let nowTick = (loop.now - origin).nanoseconds / tick.nanoseconds
        let (due, stop) = state.withLockedValue { state -> ([Entry], Bool) in
            var due: [Entry] = []
            while state.currentTick <= nowTick, state.armed > 0 {
                let slot = Int(state.currentTick % Int64(slots))
                if !state.buckets[slot].isEmpty {
                    let tick = state.currentTick
                    let ready = state.buckets[slot].values.filter { $0.dueTick <= tick }
                    for entry in ready { state.buckets[slot][entry.id] = nil }
                    if state.buckets[slot].isEmpty { state.releaseIfLarge(slot) }
                    state.armed -= ready.count
                    due += ready
                }
                state.currentTick += 1
            }
            guard state.armed == 0 else { return (due, false) }
            // Nothing armed: skip the idle ticks, and stop until something is armed again.
            state.currentTick = max(state.currentTick, nowTick + 1)
            state.ticking = false
            return (due, true)
        }
        if stop { task.cancel() }
        for entry in due { entry.fire() }
    }
}

/// Two wheels per event loop, made on first use.
public final class TimerWheels: Sendable {
    private let wheels = NIOLockedValueBox<[ObjectIdentifier: (coarse: TimerWheel, fine: TimerWheel)]>([:])

    public init() {}

    /// 100 ms ticks, 102.4 s a turn: longer than any transaction timer.
    public func wheel(for loop: any EventLoop) -> TimerWheel { wheels(for: loop).coarse }

    /// 10 ms ticks, 2.56 s a turn.
    public func fineWheel(for loop: any EventLoop) -> TimerWheel { wheels(for: loop).fine }

    private func wheels(for loop: any EventLoop) -> (coarse: TimerWheel, fine: TimerWheel) {
        wheels.withLockedValue { table in
            let key = ObjectIdentifier(loop as AnyObject)
            if let pair = table[key] { return pair }
            let pair = (coarse: TimerWheel(loop: loop, tick: .milliseconds(100), slots: 1_024),
                        fine: TimerWheel(loop: loop, tick: .milliseconds(10), slots: 256))
            table[key] = pair
            return pair
        }
    }
}
