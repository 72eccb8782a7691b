import NIOConcurrencyHelpers
public import NIOCore

/// Spaces sends so that no more than `rate` leave per second: each caller gets the next free
/// slot (no bursts), so 500 stored messages reach a phone that wakes up at a pace it and the
/// radio network can take.
public final class DeliveryThrottle: Sendable {
    private let interval: TimeAmount
    private let nextFree = NIOLockedValueBox<NIODeadline>(.uptimeNanoseconds(0))

    /// - Parameter rate: sends per second; 0 or less means no limit.
    public init(rate: Double) {
        interval = rate > 0 ? .nanoseconds(Int64(1_000_000_000 / rate)) : .zero
    }

    /// Reserves the next slot; returns how long to wait before using it.
    public func reserve(now: NIODeadline = .now()) -> TimeAmount {
        nextFree.withLockedValue { next in
            let slot = max(now, next)
            next = slot + interval
            return slot - now
        }
    }
}
