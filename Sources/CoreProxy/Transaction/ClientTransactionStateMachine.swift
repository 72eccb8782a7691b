public import NIOCore

/// The client transaction state machines of RFC 3261 §17.1 (with RFC 6026's Accepted state):
/// INVITE (Figure 5, amended) and non-INVITE (Figure 6). Pure: events in, actions out.
public struct ClientTransactionStateMachine: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        /// INVITE before any response.
        case calling
        /// non-INVITE before any response.
        case trying
        case proceeding
        case completed
        /// RFC 6026: INVITE after a 2xx, absorbing its retransmissions.
        case accepted
        case terminated
    }

    public enum Timer: Sendable, Hashable, CaseIterable {
        /// INVITE retransmission (UDP).
        case a
        /// INVITE transaction timeout.
        case b
        /// Wait for response retransmissions after a non-2xx final (INVITE).
        case d
        /// non-INVITE retransmission (UDP).
        case e
        /// non-INVITE transaction timeout.
        case f
        /// Wait for response retransmissions (non-INVITE).
        case k
        /// RFC 6026: wait for 2xx retransmissions.
        case m
    }

    public enum Event: Sendable, Hashable {
        /// The TU hands over the request: send it and start the timers.
        case start
        case response(statusCode: Int)
        case timerFired(Timer)
        case transportError
    }

    public enum Action: Sendable, Hashable {
        /// Send (or retransmit) the request.
        case sendRequest
        /// Send the ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
        case sendACK
        /// Hand the response to the TU.
        case passResponseToUser
        case startTimer(Timer, TimeAmount)
        case cancelTimer(Timer)
        /// Timer B or F fired: the TU sees a timeout (a 408 for a proxy, RFC 3261 §16.8).
        case reportTimeout
        case reportTransportError
        case terminate
    }

    public typealias Actions = TransactionActions<Action>

    public let isInvite: Bool
    public let reliable: Bool
    public let timers: TransactionTimers
    public private(set) var state: State
    private var retransmitInterval: TimeAmount

    public init(isInvite: Bool, reliable: Bool, timers: TransactionTimers) {
        self.isInvite = isInvite
        self.reliable = reliable
        self.timers = timers
        self.state = isInvite ? .calling : .trying
        self.retransmitInterval = timers.t1
    }

    public mutating func handle(_ event: Event) -> Actions {
        isInvite ? handleInvite(event) : handleNonInvite(event)
    }

    // MARK: - INVITE (RFC 3261 §17.1.1, RFC 6026 §7.2)

    private mutating func handleInvite(_ event: Event) -> Actions {
        switch (state, event) {
        case (.calling, .start):
            if reliable { return Actions(.sendRequest, .startTimer(.b, timers.transactionTimeout)) }
            return Actions(.sendRequest, .startTimer(.a, retransmitInterval), .startTimer(.b, timers.transactionTimeout))
        case (.calling, .timerFired(.a)):
            retransmitInterval = retransmitInterval * 2
            return Actions(.sendRequest, .startTimer(.a, retransmitInterval))
        case (.calling, .timerFired(.b)):
            state = .terminated
            return Actions(.cancelTimer(.a), .reportTimeout, .terminate)
        case (.calling, .response(let code)) where code < 200:
            state = .proceeding
            return Actions(.cancelTimer(.a), .passResponseToUser)
        case (.proceeding, .response(let code)) where code < 200:
            return Actions(.passResponseToUser)
        case (.calling, .response(let code)) where code < 300, (.proceeding, .response(let code)) where code < 300:
            state = .accepted
            return Actions(.cancelTimer(.a), .cancelTimer(.b), .passResponseToUser, .startTimer(.m, timers.transactionTimeout))
        case (.calling, .response), (.proceeding, .response):
            let timerD = timers.timerD(reliable: reliable)
            if timerD == .zero {
                state = .terminated
                return Actions(.cancelTimer(.a), .cancelTimer(.b), .sendACK, .passResponseToUser, .terminate)
            }
            state = .completed
            return Actions(.cancelTimer(.a), .cancelTimer(.b), .sendACK, .passResponseToUser, .startTimer(.d, timerD))
        case (.calling, .transportError), (.proceeding, .transportError):
            state = .terminated
            return Actions(.cancelTimer(.a), .cancelTimer(.b), .reportTransportError, .terminate)

        case (.completed, .response(let code)) where code >= 300:
            return Actions(.sendACK)
        case (.completed, .timerFired(.d)):
            state = .terminated
            return Actions(.terminate)
        case (.completed, .transportError):
            state = .terminated
            return Actions(.cancelTimer(.d), .reportTransportError, .terminate)

        case (.accepted, .response(let code)) where (200..<300).contains(code):
            // RFC 6026 §8.4: 2xx retransmissions (and forked 2xx) go to the TU.
            return Actions(.passResponseToUser)
        case (.accepted, .timerFired(.m)):
            state = .terminated
            return Actions(.terminate)

        default:
            return Actions()
        }
    }

    // MARK: - non-INVITE (RFC 3261 §17.1.2)

    private mutating func handleNonInvite(_ event: Event) -> Actions {
        switch (state, event) {
        case (.trying, .start):
            if reliable { return Actions(.sendRequest, .startTimer(.f, timers.transactionTimeout)) }
            return Actions(.sendRequest, .startTimer(.e, retransmitInterval), .startTimer(.f, timers.transactionTimeout))
        case (.trying, .timerFired(.e)):
            retransmitInterval = min(retransmitInterval * 2, timers.t2)
            return Actions(.sendRequest, .startTimer(.e, retransmitInterval))
        case (.proceeding, .timerFired(.e)):
            return Actions(.sendRequest, .startTimer(.e, timers.t2))
        case (.trying, .timerFired(.f)), (.proceeding, .timerFired(.f)):
            state = .terminated
            return Actions(.cancelTimer(.e), .reportTimeout, .terminate)
        case (.trying, .response(let code)) where code < 200, (.proceeding, .response(let code)) where code < 200:
            state = .proceeding
            return Actions(.passResponseToUser)
        case (.trying, .response), (.proceeding, .response):
            let timerK = timers.timerIK(reliable: reliable)
            if timerK == .zero {
                state = .terminated
                return Actions(.cancelTimer(.e), .cancelTimer(.f), .passResponseToUser, .terminate)
            }
            state = .completed
            return Actions(.cancelTimer(.e), .cancelTimer(.f), .passResponseToUser, .startTimer(.k, timerK))
        case (.trying, .transportError), (.proceeding, .transportError):
            state = .terminated
            return Actions(.cancelTimer(.e), .cancelTimer(.f), .reportTransportError, .terminate)
        case (.completed, .timerFired(.k)):
            state = .terminated
            return Actions(.terminate)
        default:
            return Actions()
        }
    }
}
