public import NIOCore

/// The server transaction state machines of RFC 3261 §17.2 (with RFC 6026's Accepted state):
/// INVITE (Figure 7, amended) and non-INVITE (Figure 8). Pure: events in, actions out; the owner
/// performs the actions and schedules the timers.
public struct ServerTransactionStateMachine: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        // non-INVITE only
        case trying
        // both
        case proceeding
        case completed
        // INVITE only
        case confirmed
        case accepted
        case terminated
    }

    public enum Timer: Sendable, Hashable, CaseIterable {
        /// INVITE final-response retransmission (UDP).
        case g
        /// Wait for ACK.
        case h
        /// Absorb ACK retransmissions.
        case i
        /// Absorb non-INVITE request retransmissions.
        case j
        /// RFC 6026: absorb 2xx-related retransmissions.
        case l
    }

    public enum Event: Sendable, Hashable {
        /// The same request arrived again.
        case requestRetransmission
        /// The transaction user sends a response with this status code.
        case send(statusCode: Int)
        /// An ACK matching this INVITE transaction arrived.
        case ack
        case timerFired(Timer)
        case transportError
    }

    public enum Action: Sendable, Hashable {
        /// Send the response the TU just gave.
        case sendResponse
        /// Send the most recent response again.
        case resendLastResponse
        case startTimer(Timer, TimeAmount)
        case cancelTimer(Timer)
        /// RFC 6026 §7.1: an ACK for a 2xx goes up to the TU.
        case passACKToUser
        /// Timer H fired: no ACK ever came (RFC 3261 §17.2.1).
        case reportTimeout
        case reportTransportError
        case terminate
    }

    public typealias Actions = TransactionActions<Action>

    public let isInvite: Bool
    public let reliable: Bool
    public let timers: TransactionTimers
    public private(set) var state: State
    private var timerGInterval: TimeAmount

    public init(isInvite: Bool, reliable: Bool, timers: TransactionTimers) {
        self.isInvite = isInvite
        self.reliable = reliable
        self.timers = timers
        self.state = isInvite ? .proceeding : .trying
        self.timerGInterval = timers.t1
    }

    public mutating func handle(_ event: Event) -> Actions {
        isInvite ? handleInvite(event) : handleNonInvite(event)
    }

    // MARK: - INVITE (RFC 3261 §17.2.1, RFC 6026 §7.1)

    private mutating func handleInvite(_ event: Event) -> Actions {
        switch (state, event) {
        case (.proceeding, .requestRetransmission):
            return Actions(.resendLastResponse)
        case (.proceeding, .send(let code)) where code < 200:
            return Actions(.sendResponse)
        case (.proceeding, .send(let code)) where code < 300:
            state = .accepted
            return Actions(.sendResponse, .startTimer(.l, timers.transactionTimeout))
        case (.proceeding, .send):
            state = .completed
            if reliable { return Actions(.sendResponse, .startTimer(.h, timers.transactionTimeout)) }
            return Actions(.sendResponse, .startTimer(.g, timerGInterval), .startTimer(.h, timers.transactionTimeout))
        case (.proceeding, .transportError), (.completed, .transportError):
            state = .terminated
            return Actions(.reportTransportError, .terminate)

        case (.accepted, .send(let code)) where (200..<300).contains(code):
            return Actions(.sendResponse)
        case (.accepted, .ack):
            return Actions(.passACKToUser)
        case (.accepted, .requestRetransmission), (.accepted, .transportError):
            return Actions()
        case (.accepted, .timerFired(.l)):
            state = .terminated
            return Actions(.terminate)

        case (.completed, .requestRetransmission):
            return Actions(.resendLastResponse)
        case (.completed, .timerFired(.g)):
            timerGInterval = min(timerGInterval * 2, timers.t2)
            return Actions(.resendLastResponse, .startTimer(.g, timerGInterval))
        case (.completed, .timerFired(.h)):
            state = .terminated
            return Actions(.cancelTimer(.g), .reportTimeout, .terminate)
        case (.completed, .ack):
            state = .confirmed
            let timerI = timers.timerIK(reliable: reliable)
            if timerI == .zero {
                state = .terminated
                return Actions(.cancelTimer(.g), .cancelTimer(.h), .terminate)
            }
            return Actions(.cancelTimer(.g), .cancelTimer(.h), .startTimer(.i, timerI))

        case (.confirmed, .ack), (.confirmed, .requestRetransmission):
            return Actions()
        case (.confirmed, .timerFired(.i)):
            state = .terminated
            return Actions(.terminate)

        default:
            return Actions()
        }
    }

    // MARK: - non-INVITE (RFC 3261 §17.2.2)

    private mutating func handleNonInvite(_ event: Event) -> Actions {
        switch (state, event) {
        case (.trying, .requestRetransmission):
            return Actions()
        case (.trying, .send(let code)) where code < 200:
            state = .proceeding
            return Actions(.sendResponse)
        case (.proceeding, .send(let code)) where code < 200:
            return Actions(.sendResponse)
        case (.trying, .send), (.proceeding, .send):
            state = .completed
            let timerJ = timers.timerJ(reliable: reliable)
            if timerJ == .zero {
                state = .terminated
                return Actions(.sendResponse, .terminate)
            }
            return Actions(.sendResponse, .startTimer(.j, timerJ))
        case (.proceeding, .requestRetransmission), (.completed, .requestRetransmission):
            return Actions(.resendLastResponse)
        case (.trying, .transportError), (.proceeding, .transportError), (.completed, .transportError):
            state = .terminated
            return Actions(.reportTransportError, .terminate)
        case (.completed, .timerFired(.j)):
            state = .terminated
            return Actions(.terminate)
        default:
            return Actions()
        }
    }
}
