public import NIOCore

/// The timer values of RFC 3261 §17 and Table 4 (and RFC 6026 for L and M), derived from T1, T2, T4.
public struct TransactionTimers: Sendable, Hashable {
    /// Round-trip estimate (default 500 ms).
    public var t1: TimeAmount
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    public var t2: TimeAmount
    /// Longest time a message stays in the network (default 5 s).
    public var t4: TimeAmount

    public init(t1: TimeAmount = .milliseconds(500), t2: TimeAmount = .seconds(4), t4: TimeAmount = .seconds(5)) {
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
    }

    /// Timers B, F, H, J, L, M: 64·T1.
    public var transactionTimeout: TimeAmount { t1 * 64 }
    /// Timer D: at least 32 s on unreliable transports, zero on reliable ones.
    public func timerD(reliable: Bool) -> TimeAmount { reliable ? .zero : max(.seconds(32), t1 * 64) }
    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    public func timerIK(reliable: Bool) -> TimeAmount { reliable ? .zero : t4 }
    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones.
    public func timerJ(reliable: Bool) -> TimeAmount { reliable ? .zero : t1 * 64 }
}
