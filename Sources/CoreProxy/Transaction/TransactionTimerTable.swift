import NIOConcurrencyHelpers
import NIOCore

/// The running timers of one transaction by name: starting one replaces the earlier one of that
/// name, and a terminated transaction cancels them all. Every timer is an entry on its loop's
/// ``TimerWheel``s: retransmissions (under a second) on the fine one, the rest on the coarse one.
final class TransactionTimerTable<Timer: Hashable & Sendable>: Sendable {
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

    private struct State {
        var armed: [Timer: Armed] = [:]
        var nextID: UInt64 = 0
    }

    private let wheels: TimerWheels
    private let state = NIOLockedValueBox(State())

    init(wheels: TimerWheels) {
        self.wheels = wheels
    }

    func start(_ timer: Timer, after delay: TimeAmount, on loop: any EventLoop, fire: @escaping @Sendable () -> Void) {
        let wheel = delay >= .seconds(1) ? wheels.wheel(for: loop) : wheels.fineWheel(for: loop)
        // Recorded before the wheel has it, so that it can never fire unrecorded.
        let (id, replaced) = state.withLockedValue { state -> (UInt64, Armed?) in
            state.nextID += 1
            return (state.nextID, state.armed.updateValue(Armed(id: state.nextID, wheel: wheel, token: nil), forKey: timer))
        }
        replaced?.cancel()
        let token = wheel.schedule(after: delay) { [self] in
            let current = state.withLockedValue { state -> Bool in
                guard state.armed[timer]?.id == id else { return false }
                state.armed[timer] = nil
                return true
            }
            if current { fire() }
        }
        state.withLockedValue { state in
            if state.armed[timer]?.id == id { state.armed[timer]?.token = token }
        }
    }

    func cancel(_ timer: Timer) {
        state.withLockedValue { $0.armed.removeValue(forKey: timer) }?.cancel()
    }

    func cancelAll() {
        let all = state.withLockedValue { state -> [Armed] in
            defer { state.armed.removeAll() }
            return Array(state.armed.values)
        }
        for entry in all { entry.cancel() }
    }
}
