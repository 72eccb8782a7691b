@testable import CoreProxy
import NIOCore
import SIP
import Testing

/// Where a response over UDP goes (RFC 3261 §18.2.2, RFC 3581 §4): to the source when the top Via
/// names it or asks for rport, else to the Via's received or sent-by address and port.
struct ResponseRoutingTests {
    private func inbound(via: String, from source: String = "192.0.2.10", port: Int = 5070) throws -> InboundMessage {
        let text = "MESSAGE sip:bob@tern.test SIP/2.0\r\nVia: SIP/2.0/UDP \(via)\r\nMax-Forwards: 70\r\n"
            + "From: <sip:alice@tern.test>;tag=1\r\nTo: <sip:bob@tern.test>\r\nCall-ID: r1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        let address = try SocketAddress(ipAddress: source, port: port)
        return InboundMessage(message: try SIPMessageParser().parse(text), transport: .udp, source: address,
                              local: try SocketAddress(ipAddress: "192.0.2.1", port: 5060),
                              flow: .datagram(listener: ListenerID(1), remote: address), listener: ListenerID(1))
    }

    private func remote(_ flow: SIPFlow) -> SocketAddress? {
        guard case .datagram(_, let remote) = flow else { return nil }
        return remote
    }

    @Test func aViaNamingTheSourceIsAnsweredAtTheSource() throws {
        let request = try inbound(via: "192.0.2.10:5070;branch=z9hG4bK1")
        #expect(ResponseRouting.flow(for: request) == request.flow)
    }

    @Test func anotherPortInTheViaIsWhereTheAnswerGoes() throws {
        let request = try inbound(via: "192.0.2.10:5080;branch=z9hG4bK1")
        #expect(remote(ResponseRouting.flow(for: request)) == (try SocketAddress(ipAddress: "192.0.2.10", port: 5080)))
    }

    @Test func anotherHostInTheViaIsWhereTheAnswerGoes() throws {
        let request = try inbound(via: "192.0.2.99:5070;branch=z9hG4bK1")
        #expect(remote(ResponseRouting.flow(for: request)) == (try SocketAddress(ipAddress: "192.0.2.99", port: 5070)))
    }

    @Test func receivedWinsOverSentBy() throws {
        let request = try inbound(via: "192.0.2.10:5070;received=198.51.100.7;branch=z9hG4bK1")
        #expect(remote(ResponseRouting.flow(for: request)) == (try SocketAddress(ipAddress: "198.51.100.7", port: 5070)))
    }

    @Test func rportAnswersAtTheSource() throws {
        let request = try inbound(via: "10.0.0.5:5060;rport;branch=z9hG4bK1")
        #expect(ResponseRouting.flow(for: request) == request.flow)
    }

    @Test func noPortInTheViaMeans5060() throws {
        let request = try inbound(via: "192.0.2.10;branch=z9hG4bK1")
        #expect(remote(ResponseRouting.flow(for: request)) == (try SocketAddress(ipAddress: "192.0.2.10", port: 5060)))
    }
}
