import CoreProxy
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Framing, retransmissions, keep-alives, limits and bad input over real loopback sockets.
@Suite(.timeLimit(.minutes(1)))
struct TransportEndToEndTests {
    /// Answers MESSAGE with 200 and counts how often it ran.
    final class CountingHandler: SIPRequestHandler {
        let methods: [SIPMethod] = [.message]
        let count = NIOLockedValueBox(0)
        func handle(_ transaction: ServerTransaction) {
            count.withLockedValue { $0 += 1 }
            transaction.respond(SIPStatus(200))
        }
    }

    @Test func udpRetransmissionGetsSameResponseWithoutReprocessing() async throws {
        let handler = CountingHandler()
        try await withTestServer(configure: { $0.pipeline.register(handler) }) { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let request = sipRequest("MESSAGE", body: "hello")
            try await client.send(request)
            let first = try await client.receive()
            try await client.send(request)
            let second = try await client.receive()
            #expect(first.statusCode == 200)
            #expect(first.serializedString == second.serializedString)
            #expect(handler.count.withLockedValue { $0 } == 1)
            await client.close()
        }
    }

    @Test func tcpMessageSplitOverManySegments() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            let request = ByteBuffer(string: sipRequest("OPTIONS", transport: "TCP"))
            // One byte per write and flush: every boundary of the message is a segment boundary.
            for index in 0..<request.readableBytes {
                try await client.send(request.getSlice(at: index, length: 1)!)
                if index % 50 == 0 { try await Task.sleep(for: .milliseconds(1)) }
            }
            let response = try await client.receive()
            #expect(response.statusCode == 200)
            await client.close()
        }
    }

    @Test func severalMessagesInOneSegment() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            let callIDs = (0..<5).map { "batch-\($0)" }
            let batch = callIDs.map { sipRequest("OPTIONS", transport: "TCP", callID: $0) }.joined()
                + "\r\n\r\n" + sipRequest("OPTIONS", transport: "TCP", callID: "after-ping")
            try await client.send(batch)
            var seen: [String] = []
            for _ in 0..<6 { seen.append(try await client.receive().callID ?? "") }
            #expect(seen == callIDs + ["after-ping"])
            await client.close()
        }
    }

    @Test func keepAlivePingGetsPong() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await client.send("\r\n\r\n")
            let pong = try #require(await client.receiveChunk())
            #expect(String(buffer: pong) == "\r\n", "RFC 5626 §3.5.1: CRLF pong")
            await client.close()
        }
    }

    @Test func garbageStreamClosesOnlyThatConnection() async throws {
        try await withTestServer { server in
            let port = server.port(.tcp)
            let victim = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: port)
            let bystander = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: port)
            var garbage = ByteBuffer()
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<(2 * 1024 * 1024 / 8) {
                // Printable noise without line breaks never completes a head: the size limit closes it.
                garbage.writeInteger(UInt64.random(in: 0x2121_2121_2121_2121...0x7E7E_7E7E_7E7E_7E7E, using: &generator))
            }
            try? await victim.send(garbage)
            let deadline = ContinuousClock.now + .seconds(10)
            while !victim.isClosed, ContinuousClock.now < deadline {
                _ = await victim.receiveChunk(timeout: .milliseconds(100))
            }
            #expect(victim.isClosed)
            try await bystander.send(sipRequest("OPTIONS", transport: "TCP"))
            #expect(try await bystander.receive().statusCode == 200)
            await bystander.close()
        }
    }

    @Test func connectionLimitClosesExtraConnections() async throws {
        try await withTestServer(maxConnections: 1) { server in
            let port = server.port(.tcp)
            let first = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: port)
            try await first.send(sipRequest("OPTIONS", transport: "TCP"))
            #expect(try await first.receive().statusCode == 200)
            let second = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: port)
            let deadline = ContinuousClock.now + .seconds(5)
            while !second.isClosed, ContinuousClock.now < deadline {
                _ = await second.receiveChunk(timeout: .milliseconds(50))
            }
            #expect(second.isClosed)
            #expect(server.server.transportLayer.connectionCount == 1)
            await first.close()
        }
    }

    @Test func responsesReturnOverTheRequestConnection() async throws {
        try await withTestServer { server in
            let port = server.port(.tcp)
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: port)
            // The Via names a host and port nobody listens on: the answer still comes back on this connection.
            try await client.send(sipRequest("OPTIONS", transport: "TCP").replacingOccurrences(of: "client.test:5060", with: "192.0.2.99:5999"))
            #expect(try await client.receive().statusCode == 200)
            await client.close()
        }
    }

    @Test func sendingOverAClosedFlowFails() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await client.send(sipRequest("OPTIONS", transport: "TCP"))
            _ = try await client.receive()
            let id = try #require(server.server.transportLayer.connectionIDs.first)
            await client.close()
            let deadline = ContinuousClock.now + .seconds(5)
            while server.server.transportLayer.connectionCount > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            await #expect(throws: TransportError.flowClosed(.connection(id))) {
                try await server.server.transportLayer.send(ByteBuffer(string: "x"), over: .connection(id)).get()
            }
        }
    }

    /// A send to an address with an open connection reuses it at once; a closed one is not offered.
    @Test func anOpenConnectionIsTheFlowAtHandUntilItCloses() async throws {
        let accepted = NIOLockedValueBox<[any Channel]>([])
        let peer = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { peer.close(promise: nil) }
        let port = try #require(peer.localAddress?.port)
        try await withTestServer { server in
            let transport = server.server.transportLayer
            let destination = SIPDestination(transport: .tcp, host: "127.0.0.1", port: port)
            #expect(transport.flowAtHand(for: destination) == nil)
            let opened = try await transport.send(ByteBuffer(string: "\r\n\r\n"), to: destination).get()
            #expect(transport.flowAtHand(for: destination) == opened)
            let again = try await transport.send(ByteBuffer(string: "\r\n\r\n"), to: destination).get()
            #expect(again == opened)
            #expect(accepted.withLockedValue { $0.count } == 1)
            for channel in accepted.withLockedValue({ $0 }) { try await channel.close() }
            let deadline = ContinuousClock.now + .seconds(5)
            while transport.flowAtHand(for: destination) != nil, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(transport.flowAtHand(for: destination) == nil)
        }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
