import NIOConcurrencyHelpers
import NIOCore

/// A hashed timer wheel with 100 ms ticks for the long transaction timers (B, D, F, H, I, J, K, L,
/// M: seconds long, needing no millisecond precision). Under load most transactions only ever arm
/// these, and one tick task per event loop is far cheaper than one scheduled task each.
final class CoarseTimerWheel: Sendable {
    static let tick = TimeAmount.milliseconds(100)
    private static let slots = 1_024  // 102.4 s: longer than any transaction timer

    struct Token: Hashable, Sendable {
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
        var buckets: [[UInt64: Entry]] = Array(repeating: [:], count: CoarseTimerWheel.slots)
        var nextID: UInt64 = 1
        var currentTick: Int64 = 0
        var started = false
    }

    private let loop: any EventLoop
    private let origin: NIODeadline
    private let state = NIOLockedValueBox(State())

    init(loop: any EventLoop) {
        self.loop = loop
        self.origin = loop.now
    }

    /// Arms `fire` to run on the wheel's loop `delay` from now, rounded up to the next tick.
    func schedule(after delay: TimeAmount, _ fire: @escaping @Sendable () -> Void) -> Token {
        let elapsed = loop.now - origin
        let due = (elapsed + delay).nanoseconds
        let dueTick = (due + Self.tick.nanoseconds - 1) / Self.tick.nanoseconds
        let (token, start) = state.withLockedValue { state -> (Token, Bool) in
            let id = state.nextID
            state.nextID += 1
            let slot = Int(dueTick % Int64(Self.slots))
            state.buckets[slot][id] = Entry(id: id, dueTick: dueTick, fire: fire)
            let start = !state.started
            state.started = true
            return (Token(id: id, slot: slot), start)
        }
        if start {
            loop.execute { [self] in
                _ = loop.scheduleRepeatedTask(initialDelay: Self.tick, delay: Self.tick) { [self] _ in advance() }
            }
        }
        return token
    }

    func cancel(_ token: Token) {
        state.withLockedValue { state in
            _ = state.buckets[token.slot].removeValue(forKey: token.id)
            if state.buckets[token.slot].isEmpty { state.buckets[token.slot] = [:] }
        }
    }

    private func advance() {
        let nowTick = (loop.now - origin).nanoseconds / Self.tick.nanoseconds
        let due = state.withLockedValue { state -> [Entry] in
            var due: [Entry] = []
            while state.currentTick <= nowTick {
                let slot = Int(state.currentTick % Int64(Self.slots))
                if !state.buckets[slot].isEmpty {
                    let tick = state.currentTick
                    let ready = state.buckets[slot].values.filter { $0.dueTick <= tick }
                    for entry in ready { state.buckets[slot][entry.id] = nil }
                    // A burst leaves a large table behind; an empty slot gives its storage back.
                    if state.buckets[slot].isEmpty { state.buckets[slot] = [:] }
                    due += ready
                }
                state.currentTick += 1
            }
            return due
        }
        for entry in due { entry.fire() }
    }
}

/// One wheel per event loop, made on first use.
final class CoarseTimerWheels: Sendable {
    private let wheels = NIOLockedValueBox<[ObjectIdentifier: CoarseTimerWheel]>([:])

    func wheel(for loop: any EventLoop) -> CoarseTimerWheel {
        wheels.withLockedValue { table in
            let key = ObjectIdentifier(loop as AnyObject)
            if let wheel = table[key] { return wheel }
            let wheel = CoarseTimerWheel(loop: loop)
            table[key] = wheel
            return wheel
        }
    }
}
