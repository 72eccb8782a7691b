import CoreProxy
import NIOCore
import NIOPosix
import SIP
import Testing

@Suite(.timeLimit(.minutes(1)))
struct LifecycleEndToEndTests {
    /// Answers INVITE with 200 after a delay, so a shutdown can start while it is pending.
    final class SlowInviteHandler: SIPRequestHandler {
        let methods: [SIPMethod] = [.invite]
        func handle(_ transaction: ServerTransaction) {
            transaction.eventLoop.scheduleTask(in: .milliseconds(400)) {
                transaction.respond(SIPStatus(486))
            }
        }
    }

    @Test func gracefulShutdownLetsPendingTransactionsFinish() async throws {
        let (answers, continuation) = AsyncStream.makeStream(of: Int.self)
        let clientBox = ClientBox()
        try await withTestServer(drainTimeout: .seconds(5), configure: { $0.pipeline.register(SlowInviteHandler()) }) { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            clientBox.client = client
            try await client.send(sipRequest("INVITE"))
            #expect(try await client.receive().statusCode == 100)
            // Leaving the body starts the graceful shutdown while the INVITE still waits for its answer.
            Task {
                let final = try? await client.receive(timeout: .seconds(5))
                continuation.yield(final?.statusCode ?? 0)
                continuation.finish()
            }
        }
        var iterator = answers.makeAsyncIterator()
        #expect(await iterator.next() == 486, "the pending INVITE was answered before the server stopped")
        await clientBox.client?.close()
    }

    final class ClientBox: @unchecked Sendable {
        var client: TestSIPClient?
    }

    @Test func idleConnectionsAreClosed() async throws {
        // 3 s: with 1 s, a loaded full run once closed the connection between connect and the first send.
        try await withTestServer(idleTimeout: .seconds(3)) { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await client.send(sipRequest("OPTIONS", transport: "TCP"))
            #expect(try await client.receive().statusCode == 200)
            let deadline = ContinuousClock.now + .seconds(10)
            while !client.isClosed, ContinuousClock.now < deadline {
                _ = await client.receiveChunk(timeout: .milliseconds(50))
            }
            #expect(client.isClosed)
            // The server forgets the connection when its close completes, just after the client sees it.
            while server.server.transportLayer.connectionCount > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(server.server.transportLayer.connectionCount == 0)
        }
    }

    @Test func listenersStopAcceptingOnShutdown() async throws {
        let port = try await withTestServer { server in server.port(.tcp) }
        await #expect(throws: (any Error).self) {
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
        }
    }
}
