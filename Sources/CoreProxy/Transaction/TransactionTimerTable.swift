import NIOConcurrencyHelpers
import NIOCore

/// The running timers of one transaction by name: starting one replaces the earlier one of that
/// name, and a terminated transaction cancels them all.
final class TransactionTimerTable<Timer: Hashable & Sendable>: Sendable {
    private let scheduled = NIOLockedValueBox<[Timer: Scheduled<Void>]>([:])

    func start(_ timer: Timer, after delay: TimeAmount, on loop: any EventLoop, fire: @escaping @Sendable () -> Void) {
        let task = loop.scheduleTask(in: delay, fire)
        scheduled.withLockedValue { $0.updateValue(task, forKey: timer) }?.cancel()
    }

    func cancel(_ timer: Timer) {
        scheduled.withLockedValue { $0.removeValue(forKey: timer) }?.cancel()
    }

    func cancelAll() {
        let all = scheduled.withLockedValue { table -> [Scheduled<Void>] in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for task in all { task.cancel() }
    }
}
