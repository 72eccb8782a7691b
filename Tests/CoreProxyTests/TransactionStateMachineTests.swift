import CoreProxy
import NIOCore
import Testing

/// The transaction state machines, driven event by event without sleeping: each row is a path
/// through RFC 3261 §17 (Figures 5–8, amended by RFC 6026) with the actions and state expected.
@Suite struct TransactionStateMachineTests {
    static let timers = TransactionTimers(t1: .milliseconds(500), t2: .seconds(4), t4: .seconds(5))

    typealias ServerStep = (event: ServerTransactionStateMachine.Event,
                            actions: [ServerTransactionStateMachine.Action],
                            state: ServerTransactionStateMachine.State)

    struct ServerPath: Sendable, CustomTestStringConvertible {
        let name: String
        let invite: Bool
        let reliable: Bool
        let steps: [ServerStep]
        var testDescription: String { name }
    }

    static let serverPaths: [ServerPath] = [
        ServerPath(name: "INVITE/UDP: 100, 486, retransmit by G, ACK, Timer I", invite: true, reliable: false, steps: [
            (.send(statusCode: 100), [.sendResponse], .proceeding),
            (.requestRetransmission, [.resendLastResponse], .proceeding),
            (.send(statusCode: 486), [.sendResponse, .startTimer(.g, .milliseconds(500)), .startTimer(.h, .seconds(32))], .completed),
            (.timerFired(.g), [.resendLastResponse, .startTimer(.g, .seconds(1))], .completed),
            (.timerFired(.g), [.resendLastResponse, .startTimer(.g, .seconds(2))], .completed),
            (.timerFired(.g), [.resendLastResponse, .startTimer(.g, .seconds(4))], .completed),
            (.timerFired(.g), [.resendLastResponse, .startTimer(.g, .seconds(4))], .completed),
            (.requestRetransmission, [.resendLastResponse], .completed),
            (.ack, [.cancelTimer(.g), .cancelTimer(.h), .startTimer(.i, .seconds(5))], .confirmed),
            (.ack, [], .confirmed),
            (.timerFired(.i), [.terminate], .terminated),
        ]),
        ServerPath(name: "INVITE/UDP: no ACK, Timer H", invite: true, reliable: false, steps: [
            (.send(statusCode: 404), [.sendResponse, .startTimer(.g, .milliseconds(500)), .startTimer(.h, .seconds(32))], .completed),
            (.timerFired(.h), [.cancelTimer(.g), .reportTimeout, .terminate], .terminated),
        ]),
        ServerPath(name: "INVITE/TCP: final, ACK ends at once", invite: true, reliable: true, steps: [
            (.send(statusCode: 487), [.sendResponse, .startTimer(.h, .seconds(32))], .completed),
            (.ack, [.cancelTimer(.g), .cancelTimer(.h), .terminate], .terminated),
        ]),
        ServerPath(name: "INVITE: 2xx goes to Accepted (RFC 6026), Timer L", invite: true, reliable: false, steps: [
            (.send(statusCode: 180), [.sendResponse], .proceeding),
            (.send(statusCode: 200), [.sendResponse, .startTimer(.l, .seconds(32))], .accepted),
            (.requestRetransmission, [], .accepted),
            (.send(statusCode: 200), [.sendResponse], .accepted),
            (.ack, [.passACKToUser], .accepted),
            (.timerFired(.l), [.terminate], .terminated),
        ]),
        ServerPath(name: "INVITE: transport error", invite: true, reliable: false, steps: [
            (.transportError, [.reportTransportError, .terminate], .terminated),
        ]),
        ServerPath(name: "non-INVITE/UDP: retransmissions absorbed, Timer J", invite: false, reliable: false, steps: [
            (.requestRetransmission, [], .trying),
            (.send(statusCode: 100), [.sendResponse], .proceeding),
            (.requestRetransmission, [.resendLastResponse], .proceeding),
            (.send(statusCode: 200), [.sendResponse, .startTimer(.j, .seconds(32))], .completed),
            (.requestRetransmission, [.resendLastResponse], .completed),
            (.send(statusCode: 500), [], .completed),
            (.timerFired(.j), [.terminate], .terminated),
        ]),
        ServerPath(name: "non-INVITE/TCP: final ends at once", invite: false, reliable: true, steps: [
            (.send(statusCode: 200), [.sendResponse, .terminate], .terminated),
        ]),
    ]

    @Test(arguments: serverPaths)
    func serverTransaction(_ path: ServerPath) {
        var machine = ServerTransactionStateMachine(isInvite: path.invite, reliable: path.reliable, timers: Self.timers)
        #expect(machine.state == (path.invite ? .proceeding : .trying))
        for (index, step) in path.steps.enumerated() {
            let actions = machine.handle(step.event)
            #expect(Array(actions) == step.actions, "step \(index): \(step.event)")
            #expect(machine.state == step.state, "step \(index): \(step.event)")
        }
    }

    typealias ClientStep = (event: ClientTransactionStateMachine.Event,
                            actions: [ClientTransactionStateMachine.Action],
                            state: ClientTransactionStateMachine.State)

    struct ClientPath: Sendable, CustomTestStringConvertible {
        let name: String
        let invite: Bool
        let reliable: Bool
        let steps: [ClientStep]
        var testDescription: String { name }
    }

    static let clientPaths: [ClientPath] = [
        ClientPath(name: "INVITE/UDP: Timer A doubles, 180, 486 ACKed, Timer D", invite: true, reliable: false, steps: [
            (.start, [.sendRequest, .startTimer(.a, .milliseconds(500)), .startTimer(.b, .seconds(32))], .calling),
            (.timerFired(.a), [.sendRequest, .startTimer(.a, .seconds(1))], .calling),
            (.timerFired(.a), [.sendRequest, .startTimer(.a, .seconds(2))], .calling),
            (.timerFired(.a), [.sendRequest, .startTimer(.a, .seconds(4))], .calling),
            (.timerFired(.a), [.sendRequest, .startTimer(.a, .seconds(8))], .calling),
            (.response(statusCode: 180), [.cancelTimer(.a), .passResponseToUser], .proceeding),
            (.response(statusCode: 486), [.cancelTimer(.a), .cancelTimer(.b), .sendACK, .passResponseToUser,
                                          .startTimer(.d, .seconds(32))], .completed),
            (.response(statusCode: 486), [.sendACK], .completed),
            (.timerFired(.d), [.terminate], .terminated),
        ]),
        ClientPath(name: "INVITE/UDP: Timer B", invite: true, reliable: false, steps: [
            (.start, [.sendRequest, .startTimer(.a, .milliseconds(500)), .startTimer(.b, .seconds(32))], .calling),
            (.timerFired(.b), [.cancelTimer(.a), .reportTimeout, .terminate], .terminated),
        ]),
        ClientPath(name: "INVITE/TCP: no retransmission, 2xx to Accepted, Timer M", invite: true, reliable: true, steps: [
            (.start, [.sendRequest, .startTimer(.b, .seconds(32))], .calling),
            (.response(statusCode: 200), [.cancelTimer(.a), .cancelTimer(.b), .passResponseToUser,
                                          .startTimer(.m, .seconds(32))], .accepted),
            (.response(statusCode: 200), [.passResponseToUser], .accepted),
            (.timerFired(.m), [.terminate], .terminated),
        ]),
        ClientPath(name: "INVITE/TCP: non-2xx ends at once (Timer D = 0)", invite: true, reliable: true, steps: [
            (.start, [.sendRequest, .startTimer(.b, .seconds(32))], .calling),
            (.response(statusCode: 503), [.cancelTimer(.a), .cancelTimer(.b), .sendACK, .passResponseToUser, .terminate], .terminated),
        ]),
        ClientPath(name: "non-INVITE/UDP: Timer E capped at T2, provisional, final, Timer K", invite: false, reliable: false, steps: [
            (.start, [.sendRequest, .startTimer(.e, .milliseconds(500)), .startTimer(.f, .seconds(32))], .trying),
            (.timerFired(.e), [.sendRequest, .startTimer(.e, .seconds(1))], .trying),
            (.timerFired(.e), [.sendRequest, .startTimer(.e, .seconds(2))], .trying),
            (.timerFired(.e), [.sendRequest, .startTimer(.e, .seconds(4))], .trying),
            (.timerFired(.e), [.sendRequest, .startTimer(.e, .seconds(4))], .trying),
            (.response(statusCode: 100), [.passResponseToUser], .proceeding),
            (.timerFired(.e), [.sendRequest, .startTimer(.e, .seconds(4))], .proceeding),
            (.response(statusCode: 200), [.cancelTimer(.e), .cancelTimer(.f), .passResponseToUser,
                                          .startTimer(.k, .seconds(5))], .completed),
            (.response(statusCode: 200), [], .completed),
            (.timerFired(.k), [.terminate], .terminated),
        ]),
        ClientPath(name: "non-INVITE: Timer F", invite: false, reliable: false, steps: [
            (.start, [.sendRequest, .startTimer(.e, .milliseconds(500)), .startTimer(.f, .seconds(32))], .trying),
            (.timerFired(.f), [.cancelTimer(.e), .reportTimeout, .terminate], .terminated),
        ]),
        ClientPath(name: "non-INVITE: transport error", invite: false, reliable: true, steps: [
            (.start, [.sendRequest, .startTimer(.f, .seconds(32))], .trying),
            (.transportError, [.cancelTimer(.e), .cancelTimer(.f), .reportTransportError, .terminate], .terminated),
        ]),
    ]

    @Test(arguments: clientPaths)
    func clientTransaction(_ path: ClientPath) {
        var machine = ClientTransactionStateMachine(isInvite: path.invite, reliable: path.reliable, timers: Self.timers)
        for (index, step) in path.steps.enumerated() {
            let actions = machine.handle(step.event)
            #expect(Array(actions) == step.actions, "step \(index): \(step.event)")
            #expect(machine.state == step.state, "step \(index): \(step.event)")
        }
    }
}
