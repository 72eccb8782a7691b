import CoreProxy
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import SIP
import Testing

/// The transaction layer on an `EmbeddedEventLoop`: its clock is advanced by hand, so timers A–K
/// fire exactly when the RFC says, without sleeping. What goes to the wire is recorded.
@Suite struct TransactionLayerTimerTests {
    /// Records what the layer sends; stands in for the sockets only because this test is about time.
    final class RecordingSender: SIPMessageSender {
        let loop: EmbeddedEventLoop
        let sent = NIOLockedValueBox<[(bytes: String, flow: SIPFlow)]>([])
        let peer = try! SocketAddress(ipAddress: "192.0.2.10", port: 5070)

        init(loop: EmbeddedEventLoop) { self.loop = loop }

        func send(_ bytes: ByteBuffer, over flow: SIPFlow) -> EventLoopFuture<Void> {
            sent.withLockedValue { $0.append((String(buffer: bytes), flow)) }
            return loop.makeSucceededVoidFuture()
        }

        func send(_ bytes: ByteBuffer, to destination: SIPDestination) -> EventLoopFuture<SIPFlow> {
            let flow = SIPFlow.datagram(listener: ListenerID(1), remote: peer)
            sent.withLockedValue { $0.append((String(buffer: bytes), flow)) }
            return loop.makeSucceededFuture(flow)
        }

        var startLines: [String] { sent.withLockedValue { $0.map { String($0.bytes.prefix { $0 != "\r\n" }) } } }
    }

    /// A sender whose every send fails, as a closed connection does.
    final class FailingSender: SIPMessageSender {
        let loop: EmbeddedEventLoop
        init(loop: EmbeddedEventLoop) { self.loop = loop }
        func send(_ bytes: ByteBuffer, over flow: SIPFlow) -> EventLoopFuture<Void> {
            loop.makeFailedFuture(TransportError.flowClosed(flow))
        }
        func sendUnconfirmed(_ bytes: ByteBuffer, over flow: SIPFlow) -> TransportError? {
            .flowClosed(flow)
        }
        func send(_ bytes: ByteBuffer, to destination: SIPDestination) -> EventLoopFuture<SIPFlow> {
            loop.makeFailedFuture(TransportError.unresolvable(destination.host))
        }
    }

    final class User: TransactionUser {
        let transportFailures = NIOLockedValueBox(0)
        let requests = NIOLockedValueBox(0)
        let acks = NIOLockedValueBox(0)
        let timeouts = NIOLockedValueBox(0)
        let status: Int

        init(answering status: Int) { self.status = status }

        func handleRequest(_ transaction: ServerTransaction) {
            requests.withLockedValue { $0 += 1 }
            transaction.respond(SIPStatus(status))
        }
        func handleCancel(_ transaction: ServerTransaction, invite: ServerTransaction?) {}
        func handleACK(_ ack: InboundMessage, transaction: ServerTransaction?) { acks.withLockedValue { $0 += 1 } }
        func handleStrayResponse(_ response: InboundMessage) {}
        func serverTransactionTimedOut(_ transaction: ServerTransaction) { timeouts.withLockedValue { $0 += 1 } }
        func serverTransactionTransportFailed(_ transaction: ServerTransaction) { transportFailures.withLockedValue { $0 += 1 } }
    }

    func inbound(_ text: String) throws -> InboundMessage {
        let message = try SIPMessageParser().parse(text)
        let source = try SocketAddress(ipAddress: "192.0.2.10", port: 5070)
        let local = try SocketAddress(ipAddress: "192.0.2.1", port: 5060)
        return InboundMessage(message: message, transport: .udp, source: source, local: local,
                              flow: .datagram(listener: ListenerID(1), remote: source), listener: ListenerID(1))
    }

    @Test func inviteServerRetransmitsFinalResponseUntilACK() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = User(answering: 486)
        layer.setUser(user)
        let branch = SIPIdentifiers.branch()
        let invite = sipRequest("INVITE", branch: branch, callID: "call-1")
        layer.receive(try inbound(invite), on: loop)
        #expect(sender.startLines == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"])
        loop.advanceTime(by: .milliseconds(499))
        #expect(sender.startLines.count == 2)
        loop.advanceTime(by: .milliseconds(1))
        #expect(sender.startLines.count == 3, "Timer G at T1")
        loop.advanceTime(by: .seconds(1))
        #expect(sender.startLines.count == 4, "Timer G at 2·T1")
        // A retransmitted INVITE is answered from the transaction and never reaches the user again.
        layer.receive(try inbound(invite), on: loop)
        #expect(sender.startLines.count == 5)
        #expect(user.requests.withLockedValue { $0 } == 1)
        // The ACK for the 486 is absorbed (RFC 3261 §17.2.1): no more retransmissions, not passed up.
        let ack = sipRequest("ACK", branch: branch, callID: "call-1")
        layer.receive(try inbound(ack), on: loop)
        #expect(user.acks.withLockedValue { $0 } == 0)
        loop.advanceTime(by: .seconds(4))
        #expect(sender.startLines.count == 5)
        #expect(layer.serverTransactionCount == 1, "Timer I keeps it to absorb ACK retransmissions")
        loop.advanceTime(by: .seconds(1))
        #expect(layer.serverTransactionCount == 0, "Timer I = T4 ends it")
    }

    @Test func inviteServerTimerHReportsMissingACK() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = User(answering: 404)
        layer.setUser(user)
        layer.receive(try inbound(sipRequest("INVITE")), on: loop)
        loop.advanceTime(by: .seconds(32))
        #expect(user.timeouts.withLockedValue { $0 } == 1)
        #expect(layer.serverTransactionCount == 0)
        // G fired at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s: 100 + 486 + 10 retransmissions.
        #expect(sender.startLines.count == 12)
    }

    @Test func nonInviteServerAbsorbsRetransmissionsForTimerJ() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = User(answering: 200)
        layer.setUser(user)
        let options = sipRequest("OPTIONS")
        layer.receive(try inbound(options), on: loop)
        layer.receive(try inbound(options), on: loop)
        loop.advanceTime(by: .seconds(31))
        layer.receive(try inbound(options), on: loop)
        #expect(user.requests.withLockedValue { $0 } == 1)
        #expect(sender.startLines == Array(repeating: "SIP/2.0 200 OK", count: 3))
        let bodies = sender.sent.withLockedValue { $0.map(\.bytes) }
        #expect(Set(bodies).count == 1, "a retransmission gets the same bytes")
        loop.advanceTime(by: .seconds(1))
        #expect(layer.serverTransactionCount == 0)
    }

    @Test func nonInviteClientRetransmitsThenCompletes() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let events = NIOLockedValueBox<[String]>([])
        let branch = SIPIdentifiers.branch()
        let request = try SIPMessageParser().parse(sipRequest("OPTIONS", branch: branch))
        try layer.sendRequest(request, to: SIPDestination(transport: .udp, host: "192.0.2.10", port: 5070), on: loop) { event in
            switch event {
            case .response(let response): events.withLockedValue { $0.append("response \(response.statusCode ?? 0)") }
            case .timeout: events.withLockedValue { $0.append("timeout") }
            case .transportError: events.withLockedValue { $0.append("transport error") }
            }
        }
        #expect(sender.startLines.count == 1)
        loop.advanceTime(by: .milliseconds(500))
        loop.advanceTime(by: .seconds(1))
        loop.advanceTime(by: .seconds(2))
        #expect(sender.startLines.count == 4, "Timer E at 0.5, 1.5, 3.5 s")
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP client.test:5060;branch=\(branch)\r\n"
            + "From: <sip:alice@tern.test>;tag=1\r\nTo: <sip:bob@tern.test>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
            + "Content-Length: 0\r\n\r\n"
        layer.receive(try inbound(response), on: loop)
        layer.receive(try inbound(response), on: loop)
        #expect(events.withLockedValue { $0 } == ["response 200"], "the retransmitted 200 is absorbed in Completed")
        loop.advanceTime(by: .seconds(10))
        #expect(sender.startLines.count == 4, "no retransmission after the final response")
        #expect(layer.clientTransactionCount == 0, "Timer K ended it")
    }

    @Test func clientTimerFReportsTimeout() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender, timers: TransactionTimers(t1: .milliseconds(100)))
        let events = NIOLockedValueBox<[String]>([])
        let request = try SIPMessageParser().parse(sipRequest("MESSAGE"))
        try layer.sendRequest(request, to: SIPDestination(transport: .udp, host: "192.0.2.10", port: 5070), on: loop) { event in
            if case .timeout = event { events.withLockedValue { $0.append("timeout") } }
        }
        loop.advanceTime(by: .milliseconds(6_399))
        #expect(events.withLockedValue { $0 }.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(events.withLockedValue { $0 } == ["timeout"], "Timer F = 64·T1")
    }

    @Test func inviteClientACKsNon2xxFinal() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let branch = SIPIdentifiers.branch()
        let request = try SIPMessageParser().parse(sipRequest("INVITE", branch: branch, callID: "c-ack",
                                                              extraHeaders: ["Route: <sip:edge.test;lr>"]))
        try layer.sendRequest(request, to: SIPDestination(transport: .udp, host: "192.0.2.10", port: 5070), on: loop) { _ in }
        let busy = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP client.test:5060;branch=\(branch)\r\n"
            + "From: <sip:alice@tern.test>;tag=1\r\nTo: <sip:bob@tern.test>;tag=callee\r\nCall-ID: c-ack\r\nCSeq: 1 INVITE\r\n"
            + "Content-Length: 0\r\n\r\n"
        layer.receive(try inbound(busy), on: loop)
        let ackText = try #require(sender.sent.withLockedValue { $0.last?.bytes })
        let ack = try SIPMessageParser().parse(ackText)
        #expect(ack.method == .ack)
        #expect(try ack.requestURI().host == "tern.test")
        #expect(try ack.topVia()?.branch == branch, "same branch as the INVITE (RFC 3261 §17.1.1.3)")
        #expect(try ack.to()?.tag == "callee")
        #expect(try ack.cseq() == SIPCSeq(1, .ack))
        #expect(ack.values(.route) == ["<sip:edge.test;lr>"])
        // A retransmitted 486 is ACKed again; Timer D then ends the transaction.
        layer.receive(try inbound(busy), on: loop)
        #expect(sender.startLines.filter { $0.hasPrefix("ACK") }.count == 2)
        loop.advanceTime(by: .seconds(32))
        #expect(layer.clientTransactionCount == 0)
    }

    @Test func rfc2543RequestsMatchWithoutMagicCookie() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = User(answering: 200)
        layer.setUser(user)
        // An RFC 2543 client: branch without the magic cookie (RFC 3261 §17.2.3 fallback matching).
        let legacy = sipRequest("OPTIONS", branch: "legacy-1", callID: "old-client")
        layer.receive(try inbound(legacy), on: loop)
        layer.receive(try inbound(legacy), on: loop)
        #expect(user.requests.withLockedValue { $0 } == 1)
        #expect(sender.startLines == ["SIP/2.0 200 OK", "SIP/2.0 200 OK"])
        // Another CSeq is another transaction.
        layer.receive(try inbound(sipRequest("OPTIONS", branch: "legacy-1", callID: "old-client", cseq: 2)), on: loop)
        #expect(user.requests.withLockedValue { $0 } == 2)
    }

    @Test func responseThatCannotBeSentIsReportedToTheUser() throws {
        let loop = EmbeddedEventLoop()
        let layer = TransactionLayer(sender: FailingSender(loop: loop))
        let user = User(answering: 200)
        layer.setUser(user)
        layer.receive(try inbound(sipRequest("OPTIONS")), on: loop)
        // Reported once the step that sent is done, on the transaction's loop.
        loop.run()
        #expect(user.transportFailures.withLockedValue { $0 } == 1)
        #expect(layer.serverTransactionCount == 0)
    }

    /// Remembers, without keeping it alive, the last transaction it answered.
    final class ForgetfulUser: TransactionUser {
        struct Weak { weak var transaction: ServerTransaction? }
        let last = NIOLockedValueBox(Weak())
        let strays = NIOLockedValueBox(0)

        func handleRequest(_ transaction: ServerTransaction) {
            last.withLockedValue { $0.transaction = transaction }
            transaction.respond(SIPStatus(200))
        }
        func handleCancel(_ transaction: ServerTransaction, invite: ServerTransaction?) {}
        func handleACK(_ ack: InboundMessage, transaction: ServerTransaction?) {}
        func handleStrayResponse(_ response: InboundMessage) { strays.withLockedValue { $0 += 1 } }
        func serverTransactionTimedOut(_ transaction: ServerTransaction) {}
        func serverTransactionTransportFailed(_ transaction: ServerTransaction) {}
    }

    @Test func anAnsweredRequestLeavesOnlyItsAnswerForTimerJ() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = ForgetfulUser()
        layer.setUser(user)
        let branch = SIPIdentifiers.branch()
        let message = sipRequest("MESSAGE", branch: branch, callID: "answered-1")
        layer.receive(try inbound(message), on: loop)
        #expect(sender.startLines == ["SIP/2.0 200 OK"])
        // The transaction itself is gone: nothing of its request, timers or lock is kept for 32 s.
        #expect(user.last.withLockedValue { $0.transaction } == nil)
        #expect(layer.serverTransaction(try TransactionKey.server(for: try SIPMessageParser().parse(message))) == nil)
        #expect(layer.serverTransactionCount == 1)
        // A retransmission still gets the same response, byte for byte, and never reaches the user.
        loop.advanceTime(by: .seconds(20))
        layer.receive(try inbound(message), on: loop)
        let sent = sender.sent.withLockedValue { $0.map(\.bytes) }
        #expect(sent.count == 2)
        #expect(sent.first == sent.last)
        #expect(user.last.withLockedValue { $0.transaction } == nil)
        // Timer J (64·T1) ends it; the same request afterwards is new again.
        loop.advanceTime(by: .seconds(12))
        #expect(layer.serverTransactionCount == 0)
        layer.receive(try inbound(message), on: loop)
        #expect(user.last.withLockedValue { $0.transaction } == nil)
        #expect(sender.startLines.count == 3)
        #expect(layer.serverTransactionCount == 1)
    }

    @Test func aCompletedClientTransactionLeavesOnlyItsKeyForTimerK() throws {
        let loop = EmbeddedEventLoop()
        let sender = RecordingSender(loop: loop)
        let layer = TransactionLayer(sender: sender)
        let user = ForgetfulUser()
        layer.setUser(user)
        let responses = NIOLockedValueBox(0)
        let branch = SIPIdentifiers.branch()
        weak var started: ClientTransaction?
        do {
            let request = try SIPMessageParser().parse(sipRequest("MESSAGE", branch: branch))
            started = try layer.sendRequest(request, to: SIPDestination(transport: .udp, host: "192.0.2.10", port: 5070), on: loop) { event in
                if case .response = event { responses.withLockedValue { $0 += 1 } }
            }
        }
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP client.test:5060;branch=\(branch)\r\n"
            + "From: <sip:alice@tern.test>;tag=1\r\nTo: <sip:bob@tern.test>;tag=2\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n"
            + "Content-Length: 0\r\n\r\n"
        layer.receive(try inbound(ok), on: loop)
        #expect(responses.withLockedValue { $0 } == 1)
        #expect(started == nil, "nothing keeps the completed transaction")
        #expect(layer.clientTransactionCount == 1)
        // A retransmitted 200 is absorbed: neither passed up nor forwarded as a stray response.
        layer.receive(try inbound(ok), on: loop)
        #expect(responses.withLockedValue { $0 } == 1)
        #expect(user.strays.withLockedValue { $0 } == 0)
        loop.advanceTime(by: .seconds(5))
        #expect(layer.clientTransactionCount == 0, "Timer K ended it")
        layer.receive(try inbound(ok), on: loop)
        #expect(user.strays.withLockedValue { $0 } == 1, "after Timer K the response matches nothing")
    }
}
