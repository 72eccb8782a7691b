public import NIOCore
import Synchronization
public import SIP

/// What a client transaction tells its user.
public enum ClientTransactionEvent: Sendable {
    case response(SIPMessage)
    /// Timer B or F fired with no final response (RFC 3261 §17.1.1.2, §17.1.2.2).
    case timeout
    /// The request could not be sent (RFC 3261 §17.1.4): for a proxy, the target is unreachable.
    case transportError(TransportError)
}

/// One client transaction: sends a request, retransmits it over UDP, matches responses, ACKs
/// non-2xx final responses to INVITE, and reports a timeout.
public final class ClientTransaction: Sendable {
    public let key: TransactionKey
    public let request: SIPMessage
    public let eventLoop: any EventLoop
    private let layer: TransactionLayer
    private let state: Mutex<Inner>
    private let timers: TransactionTimerTable<ClientTransactionStateMachine.Timer>

    struct Inner {
        var machine: ClientTransactionStateMachine
        var target: Target
        /// The request as sent, for retransmissions; let go once a final response came (a UDP
        /// transaction then waits 5 s for stray retransmissions with nothing else to do).
        var requestBytes: ByteBuffer?
        /// The user, until nothing more will be told: let go once the transaction is completed or
        /// terminated. The proxy's handler holds its context, which holds this transaction: kept
        /// for good, the pair would never be freed (about 10 KB per proxied request).
        var handler: (@Sendable (ClientTransactionEvent) -> Void)?

        /// The handler for what the last event brought, let go when it is the last.
        mutating func handlerForLastEvent() -> (@Sendable (ClientTransactionEvent) -> Void)? {
            let current = handler
            switch machine.state {
            case .completed, .terminated:
                requestBytes = nil
                handler = nil
            case .accepted:
                // 2xx retransmissions still go to the user (RFC 6026 §7.2).
                requestBytes = nil
            default:
                break
            }
            return current
        }
    }

    enum Target {
        case destination(SIPDestination)
        case flow(SIPFlow)
    }

    init(key: TransactionKey, request: SIPMessage, target: Target, reliable: Bool, layer: TransactionLayer,
         eventLoop: any EventLoop, options: SIPMessage.SerializationOptions = SIPMessage.SerializationOptions(),
         handler: @escaping @Sendable (ClientTransactionEvent) -> Void) {
        self.key = key
        self.request = request
        self.layer = layer
        self.timers = TransactionTimerTable(wheels: layer.wheels)
        self.eventLoop = eventLoop
        let machine = ClientTransactionStateMachine(isInvite: request.method == .invite, reliable: reliable,
                                                    timers: layer.timers)
        self.state = Mutex(Inner(machine: machine, target: target, requestBytes: request.serialized(options: options), handler: handler))
    }

    public var machineState: ClientTransactionStateMachine.State {
        state.withLock { $0.machine.state }
    }

    /// The flow the request went out on, once sent.
    public var flow: SIPFlow? {
        if case .flow(let flow) = state.withLock({ $0.target }) { return flow }
        return nil
    }

    func handle(_ event: ClientTransactionStateMachine.Event, response: SIPMessage? = nil) {
        let (actions, handler) = state.withLock { inner in
            (inner.machine.handle(event), inner.handlerForLastEvent())
        }
        perform(actions, response: response, handler: handler)
    }

    private func perform(_ actions: ClientTransactionStateMachine.Actions, response: SIPMessage?,
                         handler: (@Sendable (ClientTransactionEvent) -> Void)?) {
        for action in actions {
            switch action {
            case .sendRequest:
                if let bytes = state.withLock({ $0.requestBytes }) { send(bytes) }
            case .sendACK:
                if let response { send(SIPMessage.ackForNon2xx(request: request, response: response).serialized()) }
            case .passResponseToUser:
                if let response { handler?(.response(response)) }
            case .startTimer(.k, let delay):
                // Completed: the table keeps the key alone for Timer K (``TransactionLayer/ClientEntry``).
                layer.keepCompleted(self, for: delay)
            case .startTimer(let timer, let delay):
                timers.start(timer, after: delay, on: eventLoop) { [self] in handle(.timerFired(timer)) }
            case .cancelTimer(let timer):
                timers.cancel(timer)
            case .reportTimeout:
                handler?(.timeout)
            case .reportTransportError:
                break // reported with the error itself in send(_:)
            case .terminate:
                timers.cancelAll()
                layer.remove(self)
            }
        }
    }

    private func send(_ bytes: ByteBuffer) {
        let target = state.withLock { $0.target }
        switch target {
        case .flow(let flow):
            send(bytes, over: flow)
        case .destination(let destination):
            // UDP to an address (most sends): the flow is known now; no future chain to wait on.
            if let flow = layer.sender.flowAtHand(for: destination) {
                state.withLock { $0.target = .flow(flow) }
                send(bytes, over: flow)
                return
            }
            layer.sender.send(bytes, to: destination).whenComplete { [self] result in
                switch result {
                case .success(let flow):
                    state.withLock { $0.target = .flow(flow) }
                case .failure(let error):
                    failed(error as? TransportError ?? .unresolvable(destination.host))
                }
            }
        }
    }

    private func send(_ bytes: ByteBuffer, over flow: SIPFlow) {
        guard case .datagram = flow else {
            // A connection's write can fail after it started (the peer reset it): that is heard.
            layer.sender.send(bytes, over: flow).whenFailure { [self] error in
                failed(error as? TransportError ?? .flowClosed(flow))
            }
            return
        }
        // A datagram that cannot leave is known before it is written (a closed listener, a
        // destination the kernel refuses, a size no datagram has); the write's own failure
        // (EHOSTUNREACH) is not waited for, and Timer B or F ends the transaction then.
        guard let error = layer.sender.sendUnconfirmed(bytes, over: flow) else { return }
        eventLoop.execute { [self] in failed(error) }
    }

    /// Reports a transport error once: checking that the transaction is live and ending it happen
    /// under one lock, so two failed sends (retransmissions under load) or a failure racing Timer F
    /// cannot both reach the user.
    private func failed(_ error: TransportError) {
        let outcome = state.withLock { inner -> (ClientTransactionStateMachine.Actions, (@Sendable (ClientTransactionEvent) -> Void)?)? in
            guard inner.machine.state != .terminated else { return nil }
            return (inner.machine.handle(.transportError), inner.handlerForLastEvent())
        }
        guard let (actions, handler) = outcome else { return }
        perform(actions, response: nil, handler: handler)
        handler?(.transportError(error))
    }
}

extension SIPMessage {
    /// The ACK a client transaction sends for a non-2xx final response (RFC 3261 §17.1.1.3): same
    /// Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, To from the response, and the
    /// INVITE's Route headers.
    public static func ackForNon2xx(request: SIPMessage, response: SIPMessage) -> SIPMessage {
        var headers: [(SIPHeaderName, String)] = []
        if let via = request.values(.via).first { headers.append((.via, via)) }
        headers.append((.maxForwards, "70"))
        for name in [SIPHeaderName.from] { if let value = request.firstValue(name) { headers.append((name, value)) } }
        if let to = response.firstValue(.to) { headers.append((.to, to)) }
        if let callID = request.callID { headers.append((.callID, callID)) }
        let sequence = (try? request.cseq())??.sequence ?? 1
        headers.append((.cseq, String(sequence) + " ACK"))
        for route in request.values(.route) { headers.append((.route, route)) }
        let uri = (try? request.requestURI()) ?? SIPURI(host: "invalid")
        return SIPMessage.request(method: .ack, uri: uri, headers: headers)
    }
}
