import NIOConcurrencyHelpers
import NIOCore

/// The running timers of one transaction by name: starting one replaces the earlier one of that
/// name, and a terminated transaction cancels them all. Retransmission timers (under a second) are
/// NIO scheduled tasks; the long ones go on the loop's ``CoarseTimerWheel``.
final class TransactionTimerTable<Timer: Hashable & Sendable>: Sendable {
    private enum Armed: Sendable {
        /// A short timer: the NIO task is left to fire, and does nothing unless its id is still the
        /// armed one. (Cancelling a NIO scheduled task searches the loop's whole task heap: with
        /// thousands of subscriptions' throttle tasks waiting there, every answered NOTIFY paid a scan.)
        case precise(id: UInt64)
        case coarse(CoarseTimerWheel, CoarseTimerWheel.Token)

        func cancel() {
            if case .coarse(let wheel, let token) = self { wheel.cancel(token) }
        }
    }

    private struct State {
        var armed: [Timer: Armed] = [:]
        var nextID: UInt64 = 1
    }

    private let wheels: CoarseTimerWheels
    private let state = NIOLockedValueBox(State())

    init(wheels: CoarseTimerWheels) {
        self.wheels = wheels
    }

    func start(_ timer: Timer, after delay: TimeAmount, on loop: any EventLoop, fire: @escaping @Sendable () -> Void) {
        if delay >= .seconds(1) {
            let wheel = wheels.wheel(for: loop)
            let entry = Armed.coarse(wheel, wheel.schedule(after: delay, fire))
            state.withLockedValue { $0.armed.updateValue(entry, forKey: timer) }?.cancel()
            return
        }
        let (id, replaced) = state.withLockedValue { state -> (UInt64, Armed?) in
            let id = state.nextID
            state.nextID += 1
            return (id, state.armed.updateValue(.precise(id: id), forKey: timer))
        }
        replaced?.cancel()
        loop.scheduleTask(in: delay) { [self] in
            let current = state.withLockedValue { state -> Bool in
                guard case .precise(let armedID)? = state.armed[timer], armedID == id else { return false }
                state.armed[timer] = nil
                return true
            }
            if current { fire() }
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
