import Synchronization
import NIOCore

/// The running timers of one transaction by name: starting one replaces the earlier one of that
/// name, and a terminated transaction cancels them all. Every timer is an entry on its loop's
/// ``TimerWheel``s: retransmissions (under a second) on the fine one, the rest on the coarse one.
final class TransactionTimerTable<Timer: Equatable & Sendable>: Sendable {
    private struct Armed: Sendable {
        /// Which start this is: a wheel entry that fires after its timer was restarted or
        /// cancelled (already taken off the wheel when the cancel came) finds another id, and does nothing.
        let id: UInt64
        let wheel: TimerWheel
        var token: TimerWheel.Token?

        func cancel() {
            if let token { wheel.cancel(token) }
        }
    }

    /// A transaction runs two or three timers at most: a list searched in place costs less than a
    /// dictionary's storage and hashing, which showed in profiles of every transaction's start.
    private struct State {
        var armed: [(timer: Timer, entry: Armed)] = []
        var nextID: UInt64 = 0

        func index(of timer: Timer) -> Int? {
            armed.firstIndex { $0.timer == timer }
        }

        mutating func remove(_ timer: Timer) -> Armed? {
            guard let index = index(of: timer) else { return nil }
            return armed.remove(at: index).entry
        }
    }

    private let wheels: TimerWheels
    private let state = Mutex(State())

    init(wheels: TimerWheels) {
        self.wheels = wheels
    }

    func start(_ timer: Timer, after delay: TimeAmount, on loop: any EventLoop, fire: @escaping @Sendable () -> Void) {
        let wheel = delay >= .seconds(1) ? wheels.wheel(for: loop) : wheels.fineWheel(for: loop)
        // Recorded before the wheel has it, so that it can never fire unrecorded.
        let (id, replaced) = state.withLock { state -> (UInt64, Armed?) in
            state.nextID += 1
            let armed = Armed(id: state.nextID, wheel: wheel, token: nil)
            guard let index = state.index(of: timer) else {
                // Room for all of them at the first: growing from one to two was an allocation more.
                if state.armed.capacity == 0 { state.armed.reserveCapacity(3) }
                state.armed.append((timer, armed))
                return (state.nextID, nil)
            }
            defer { state.armed[index].entry = armed }
            return (state.nextID, state.armed[index].entry)
        }
        replaced?.cancel()
        let token = wheel.schedule(after: delay) { [self] in
            let current = state.withLock { state -> Bool in
                guard let index = state.index(of: timer), state.armed[index].entry.id == id else { return false }
                state.armed.remove(at: index)
                return true
            }
            if current { fire() }
        }
        state.withLock { state in
            if let index = state.index(of: timer), state.armed[index].entry.id == id { state.armed[index].entry.token = token }
        }
    }

    func cancel(_ timer: Timer) {
        state.withLock { $0.remove(timer) }?.cancel()
    }

    func cancelAll() {
        let all = state.withLock { state -> [Armed] in
            defer { state.armed.removeAll() }
            return state.armed.map(\.entry)
        }
        for entry in all { entry.cancel() }
    }
}
