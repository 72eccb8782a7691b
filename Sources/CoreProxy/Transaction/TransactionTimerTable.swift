import NIOConcurrencyHelpers
import NIOCore

/// The running timers of one transaction by name: starting one replaces the earlier one of that
/// name, and a terminated transaction cancels them all. Retransmission timers (under a second) are
/// NIO scheduled tasks; the long ones go on the loop's ``CoarseTimerWheel``.
final class TransactionTimerTable<Timer: Hashable & Sendable>: Sendable {
    private enum Armed: Sendable {
        case precise(Scheduled<Void>)
        case coarse(CoarseTimerWheel, CoarseTimerWheel.Token)

        func cancel() {
            switch self {
            case .precise(let task): task.cancel()
            case .coarse(let wheel, let token): wheel.cancel(token)
            }
        }
    }

    private let wheels: CoarseTimerWheels
    private let armed = NIOLockedValueBox<[Timer: Armed]>([:])

    init(wheels: CoarseTimerWheels) {
        self.wheels = wheels
    }

    func start(_ timer: Timer, after delay: TimeAmount, on loop: any EventLoop, fire: @escaping @Sendable () -> Void) {
        let entry: Armed
        if delay >= .seconds(1) {
            let wheel = wheels.wheel(for: loop)
            entry = .coarse(wheel, wheel.schedule(after: delay, fire))
        } else {
            entry = .precise(loop.scheduleTask(in: delay, fire))
        }
        armed.withLockedValue { $0.updateValue(entry, forKey: timer) }?.cancel()
    }

    func cancel(_ timer: Timer) {
        armed.withLockedValue { $0.removeValue(forKey: timer) }?.cancel()
    }

    func cancelAll() {
        let all = armed.withLockedValue { table -> [Armed] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for entry in all { entry.cancel() }
    }
}
