import CoreProxy
import NIOCore
import SIP
import Testing

@Suite(.timeLimit(.minutes(1)))
struct TLSAndLimitsEndToEndTests {
    @Test(arguments: [SIPTransportProtocol.tls, .wss])
    func requiredClientCertificateIsChecked(_ transport: SIPTransportProtocol) async throws {
        try await withTestServer(listeners: [ListenerSpec(transport: transport, host: "127.0.0.1", port: 0)],
                                 tls: true, clientCertificates: .required) { server in
            let port = server.port(transport)
            let trusted = try await TestSIPClient.connect(transport, host: "127.0.0.1", port: port, presentCertificate: true)
            try await trusted.send(sipRequest("OPTIONS", transport: transport.viaToken))
            #expect(try await trusted.receive().statusCode == 200)
            await trusted.close()
            // Without a certificate the handshake fails and nothing is answered.
            let anonymous = try? await TestSIPClient.connect(transport, host: "127.0.0.1", port: port)
            if let anonymous {
                try? await anonymous.send(sipRequest("OPTIONS", transport: transport.viaToken))
                #expect(await anonymous.receiveIfAny(timeout: .milliseconds(500)) == nil)
                await anonymous.close()
            }
        }
    }

    @Test func optionalClientCertificateAcceptsAnonymousClients() async throws {
        try await withTestServer(listeners: [ListenerSpec(transport: .tls, host: "127.0.0.1", port: 0)],
                                 tls: true, clientCertificates: .optional) { server in
            let client = try await TestSIPClient.connect(.tls, host: "127.0.0.1", port: server.port(.tls))
            try await client.send(sipRequest("OPTIONS", transport: "TLS"))
            #expect(try await client.receive().statusCode == 200)
            await client.close()
        }
    }

    @Test func oversizedDatagramGets513() async throws {
        try await withTestServer(maxMessageSize: 2_048) { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await client.send(sipRequest("MESSAGE", body: String(repeating: "x", count: 3_000)))
            let response = try await client.receive()
            #expect(response.statusCode == 513)
            try await client.send(sipRequest("OPTIONS"))
            #expect(try await client.receive().statusCode == 200)
            await client.close()
        }
    }

    @Test func oversizedStreamMessageClosesTheConnection() async throws {
        try await withTestServer(maxMessageSize: 2_048) { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await client.send(sipRequest("MESSAGE", transport: "TCP", body: String(repeating: "x", count: 3_000)))
            let deadline = ContinuousClock.now + .seconds(5)
            while !client.isClosed, ContinuousClock.now < deadline {
                _ = await client.receiveChunk(timeout: .milliseconds(50))
            }
            #expect(client.isClosed)
        }
    }

    @Test func webSocketPingIsAnsweredAndFragmentsAreJoined() async throws {
        try await withTestServer(listeners: [ListenerSpec(transport: .ws, host: "127.0.0.1", port: 0)]) { server in
            let client = try await TestSIPClient.connect(.ws, host: "127.0.0.1", port: server.port(.ws))
            // A ping (opcode 9) gets a pong (opcode 10) with the same payload.
            try await client.channel.writeAndFlush(ByteBuffer(bytes: [0x89, 0x82, 1, 2, 3, 4, 0x61 ^ 1, 0x62 ^ 2]))
            let pong = try #require(await client.receiveChunk())
            #expect(Array(pong.readableBytesView) == [0x8A, 0x02, 0x61, 0x62])
            // One SIP message split over a text frame and a continuation frame.
            let message = ByteBuffer(string: sipRequest("OPTIONS", transport: "WS"))
            let half = message.readableBytes / 2
            var first = WebSocketTestCodec.maskedTextFrame(message.getSlice(at: 0, length: half)!)
            first.setInteger(UInt8(0x01), at: 0)  // text, not final
            var second = WebSocketTestCodec.maskedTextFrame(message.getSlice(at: half, length: message.readableBytes - half)!)
            second.setInteger(UInt8(0x80), at: 0)  // continuation, final
            try await client.channel.writeAndFlush(first)
            try await client.channel.writeAndFlush(second)
            #expect(try await client.receive().statusCode == 200)
            await client.close()
        }
    }

    @Test func webSocketWithoutSipSubprotocolIsRefused() async throws {
        try await withTestServer(listeners: [ListenerSpec(transport: .ws, host: "127.0.0.1", port: 0)]) { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.ws))
            try await client.send("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            let answer = String(buffer: try #require(await client.receiveChunk()))
            #expect(!answer.hasPrefix("HTTP/1.1 101"))
            await client.close()
        }
    }

    @Test func destinationFromURIFollowsTransportParameters() throws {
        #expect(SIPDestination(uri: try SIPURI(parsing: "sip:a@192.0.2.1")) == SIPDestination(transport: .udp, host: "192.0.2.1", port: 5060))
        #expect(SIPDestination(uri: try SIPURI(parsing: "sip:a@h.test:5070;transport=tcp")) == SIPDestination(transport: .tcp, host: "h.test", port: 5070))
        #expect(SIPDestination(uri: try SIPURI(parsing: "sips:a@h.test")) == SIPDestination(transport: .tls, host: "h.test", port: 5061))
        #expect(SIPDestination(uri: try SIPURI(parsing: "sip:a@[2001:db8::1];transport=ws")) == SIPDestination(transport: .ws, host: "[2001:db8::1]", port: 80))
        #expect(SIPDestination(uri: try SIPURI(parsing: "sip:a@h.test;maddr=192.0.2.9")) == SIPDestination(transport: .udp, host: "192.0.2.9", port: 5060))
    }

    @Test func namedDestinationsResolveOffTheEventLoop() async throws {
        try await withTestServer { server in
            let peer = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let peerPort = try #require(peer.channel.localAddress?.port)
            // "localhost" goes through getaddrinfo on the blocking pool, never on an event loop.
            let flow = try await server.server.transportLayer.send(ByteBuffer(string: "ping"),
                to: SIPDestination(transport: .udp, host: "localhost", port: peerPort)).get()
            guard case .datagram(_, let remote) = flow else {
                Issue.record("expected a datagram flow")
                return
            }
            #expect(remote.port == peerPort)
            #expect(String(buffer: try #require(await peer.receiveChunk())) == "ping")
            await #expect(throws: TransportError.unresolvable("no-such-host.invalid")) {
                try await server.server.transportLayer.send(ByteBuffer(string: "x"),
                    to: SIPDestination(transport: .udp, host: "no-such-host.invalid", port: 5060)).get()
            }
            await peer.close()
        }
    }
}
