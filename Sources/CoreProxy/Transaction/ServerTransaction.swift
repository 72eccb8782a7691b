public import NIOCore
import Synchronization
public import SIP
import Metrics

/// One server transaction: the request, the responses sent for it, and its timers.
///
/// The transaction user answers through ``respond(_:)``; retransmitted requests are answered here
/// from the last response and never reach the user again.
public final class ServerTransaction: Sendable {
    public let key: TransactionKey
    public let inbound: InboundMessage
    public let eventLoop: any EventLoop
    /// The To tag for responses this server generates itself (RFC 3261 §8.2.6.2), written out
    /// when asked for: a proxied request's transaction usually never answers itself.
    public var localTag: String { SIPIdentifiers.hex(localTagValue) }
    private let localTagValue: UInt64
    /// Whether the request is answered without keeping the transaction (its method is one the
    /// layer answers statelessly): a retransmission reaches the transaction user again.
    public let isStateless: Bool
    /// ``RequestMark`` of the request when it is answered statelessly (a retransmission gets the
    /// same mark), else nil: computed once, as the To tag, the registrar and digest all use it.
    public let requestMark: Int?
    private let layer: TransactionLayer
    private let responseFlow: SIPFlow
    private let state: Mutex<Inner>
    private let timers: TransactionTimerTable<ServerTransactionStateMachine.Timer>

    struct Inner {
        var machine: ServerTransactionStateMachine
        var lastResponse: ByteBuffer?
        var lastStatus: Int?
        /// What validation parsed of the request, for the transaction user while it works on it; let
        /// go with the final response, since a completed transaction lives on for 32 s (Timer J)
        /// with nothing to do but answer retransmissions.
        var parsedHeaders: ParsedHeaders?
    }

    init(key: TransactionKey, inbound: InboundMessage, layer: TransactionLayer, eventLoop: any EventLoop) {
        self.key = key
        var kept = inbound
        let parsed = kept.message.parsed
        kept.message.parsed = nil
        self.inbound = kept
        self.layer = layer
        self.timers = TransactionTimerTable(wheels: layer.wheels)
        self.eventLoop = eventLoop
        let stateless = layer.statelessMethods.contains(inbound.message.method ?? .ack)
        self.isStateless = stateless
        // RFC 3261 §8.2.7: a stateless UAS gives the same request the same To tag every time, so a
        // retransmission's response matches the original's.
        let mark = stateless ? RequestMark.of(inbound.message) : nil
        self.requestMark = mark
        self.localTagValue = mark.map(RequestMark.tagValue(mark:)) ?? RandomPool.next()
        self.responseFlow = ResponseRouting.flow(for: inbound)
        let machine = ServerTransactionStateMachine(
            isInvite: inbound.message.method == .invite,
            // A method answered statelessly ends like one over a reliable transport: at once.
            reliable: inbound.transport.isReliable || stateless,
            timers: layer.timers
        )
        self.state = Mutex(Inner(machine: machine, parsedHeaders: parsed))
    }

    public var request: SIPMessage {
        var message = inbound.message
        message.parsed = state.withLock { $0.parsedHeaders }
        return message
    }

    public var machineState: ServerTransactionStateMachine.State {
        state.withLock { $0.machine.state }
    }

    /// The status of the last response sent, nil before any.
    public var lastStatusCode: Int? { state.withLock { $0.lastStatus } }

    /// Whether a final response has been sent.
    public var isAnsweredFinally: Bool { (lastStatusCode ?? 0) >= 200 }

    /// Sends a response through the transaction.
    public func respond(_ response: SIPMessage) {
        guard let code = response.statusCode else { return }
        let bytes: ByteBuffer
        if let tuner = layer.tuner, tuner.tunesResponses {
            var tuned = response
            let options = tuner.tune(&tuned, for: requester)
            bytes = tuned.serialized(options: options)
        } else {
            bytes = response.serialized()
        }
        let actions = state.withLock { inner -> ServerTransactionStateMachine.Actions in
            let actions = inner.machine.handle(.send(statusCode: code))
            if actions.contains(.sendResponse) {
                inner.lastResponse = bytes
                inner.lastStatus = code
            }
            if code >= 200 { inner.parsedHeaders = nil }
            return actions
        }
        if actions.contains(.sendResponse) { SIPTrafficMetrics.shared.responseSent(code) }
        perform(actions, response: bytes)
    }

    /// Builds and sends a response with this status, with our To tag for anything but 100.
    public func respond(_ status: SIPStatus, headers: [(SIPHeaderName, String)] = [], body: ByteBuffer? = nil,
                        contentType: SIPMediaType? = nil) {
        var response = SIPMessage.response(to: request, status: status, toTag: status.code == 100 ? nil : localTag)
        for (name, value) in headers { response.appendHeader(name, value) }
        if let body { response.setBody(body, contentType: contentType) }
        respond(response)
    }

    /// Who gets the responses, for tuning: the request's source and what the request says it takes.
    private var requester: TuningPeer {
        TuningPeer(addresses: inbound.source.peerIP.map { [$0] } ?? [], userAgent: request.firstValue(.userAgent),
                   acceptsGzip: request.acceptEncodings.contains("gzip"))
    }

    func handle(_ event: ServerTransactionStateMachine.Event) {
        let actions = state.withLock { $0.machine.handle(event) }
        perform(actions, response: nil)
    }

    private func perform(_ actions: ServerTransactionStateMachine.Actions, response: ByteBuffer?) {
        for action in actions {
            switch action {
            case .sendResponse:
                if let response { send(response) }
            case .resendLastResponse:
                layer.metrics.retransmissionsAbsorbed.increment()
                if let last = state.withLock({ $0.lastResponse }) { send(last) }
            case .startTimer(.j, let delay):
                // Answered: the table keeps the answer alone for Timer J (``TransactionLayer/ServerEntry``).
                if let last = response ?? state.withLock({ $0.lastResponse }) {
                    layer.keepAnswer(of: self, response: last, flow: responseFlow, for: delay)
                }
            case .startTimer(let timer, let delay):
                timers.start(timer, after: delay, on: eventLoop) { [self] in handle(.timerFired(timer)) }
            case .cancelTimer(let timer):
                timers.cancel(timer)
            case .passACKToUser:
                break
            case .reportTimeout:
                layer.user?.serverTransactionTimedOut(self)
            case .reportTransportError:
                layer.user?.serverTransactionTransportFailed(self)
            case .terminate:
                timers.cancelAll()
                layer.remove(self)
            }
        }
    }

    private func send(_ bytes: ByteBuffer) {
        guard layer.sender.sendUnconfirmed(bytes, over: responseFlow) != nil else { return }
        // Once the actions of this step are done (a send fails while they run, and the step
        // may still table the answer for Timer J).
        eventLoop.execute { [self] in handle(.transportError) }
    }
}
