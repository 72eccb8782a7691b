import CoreProxy
import NIOCore
import SIP
import Testing

/// OPTIONS to the server over every transport and address family gets 200 (RFC 3261 §11.2).
@Suite(.timeLimit(.minutes(1)))
struct OptionsEndToEndTests {
    static let cases: [(SIPTransportProtocol, Bool)] = SIPTransportProtocol.allCases
        .filter { $0 != .sctp }
        .flatMap { [($0, false), ($0, true)] }

    @Test(arguments: cases)
    func optionsGets200(transport: SIPTransportProtocol, ipv6: Bool) async throws {
        let host = ipv6 ? "::1" : "127.0.0.1"
        try await withTestServer(listeners: [ListenerSpec(transport: transport, host: host, port: 0)], tls: transport.isSecure) { server in
            let port = server.port(transport, ipv6: ipv6)
            #expect(port > 0)
            let client = try await TestSIPClient.connect(transport, host: host, port: port)
            let callID = SIPIdentifiers.callID()
            try await client.send(sipRequest("OPTIONS", transport: transport.viaToken, callID: callID))
            let response = try await client.receive()
            #expect(response.statusCode == 200)
            #expect(response.callID == callID)
            #expect(response.values(.allow).contains("OPTIONS"))
            #expect(response.firstValue(.accept) == "application/sdp")
            let via = try #require(try response.topVia())
            #expect(via.received == host)
            if transport == .udp, let rport = via.rport { #expect(rport != nil) }
            await client.close()
        }
    }
}
