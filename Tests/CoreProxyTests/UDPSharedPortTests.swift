@testable import CoreProxy
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// A UDP listener has one socket per event loop on one port (`limits.udp_sockets`), so that many
/// peers' traffic spreads over the cores; sends are flushed once per burst (sendmmsg) whether they
/// answer a read or come from a timer.
@Suite(.timeLimit(.minutes(1)))
struct UDPSharedPortTests {
    /// Answers every datagram with `echo:` and the datagram, at once or after `delay` (a send from
    /// a timer, outside any read), and records the event loop each one arrived on.
    final class EchoReceiver: TransportReceiver {
        let layer: NIOLockedValueBox<TransportLayer?> = NIOLockedValueBox(nil)
        let loops = NIOLockedValueBox<Set<ObjectIdentifier>>([])
        let delay: TimeAmount?

        init(delay: TimeAmount?) { self.delay = delay }

        func received(_ bytes: ByteBuffer, from meta: InboundMeta) {
            loops.withLockedValue { _ = $0.insert(ObjectIdentifier(meta.eventLoop as AnyObject)) }
            guard let layer = layer.withLockedValue({ $0 }) else { return }
            var reply = ByteBuffer(string: "echo:")
            reply.writeImmutableBuffer(bytes)
            let answer: @Sendable () -> Void = { [reply] in _ = layer.send(reply, over: meta.flow) }
            if let delay {
                meta.eventLoop.scheduleTask(in: delay) { answer() }
            } else {
                answer()
            }
        }
    }

    static func start(sockets: Int, delay: TimeAmount? = nil, port: Int = 0,
                              group: MultiThreadedEventLoopGroup) async throws -> (TransportLayer, EchoReceiver, Int) {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .critical
        let layer = try TransportLayer(configuration: TransportLayer.Configuration(
            listeners: [ListenerSpec(transport: .udp, host: "127.0.0.1", port: port)], udpSocketsPerListener: sockets),
                                       group: group, logger: logger)
        let receiver = EchoReceiver(delay: delay)
        receiver.layer.withLockedValue { $0 = layer }
        layer.setReceiver(receiver)
        let bound = try await layer.start()
        return (layer, receiver, try #require(bound.first).port)
    }

    /// Each of `clients` sockets sends `perClient` datagrams at once; every one is answered.
    static func expectEveryDatagramAnswered(port: Int, clients: Int, perClient: Int) async throws {
        var sockets: [TestSIPClient] = []
        for _ in 0..<clients { sockets.append(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: port)) }
        for (index, client) in sockets.enumerated() {
            for sequence in 0..<perClient { try await client.send("ping \(index).\(sequence)") }
        }
        for (index, client) in sockets.enumerated() {
            var answered = Set<String>()
            for _ in 0..<perClient {
                let chunk = try #require(await client.receiveChunk(), "client \(index): \(answered.count) of \(perClient) answered")
                answered.insert(String(buffer: chunk))
            }
            #expect(answered == Set((0..<perClient).map { "echo:ping \(index).\($0)" }))
            await client.close()
        }
    }

    /// A layer of echoing sockets on a 2-loop group for `body`, shut down afterwards.
    static func withEchoLayer(sockets: Int, delay: TimeAmount? = nil,
                                      _ body: (EchoReceiver, Int) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (layer, receiver, port) = try await start(sockets: sockets, delay: delay, group: group)
        do {
            try await body(receiver, port)
        } catch {
            await layer.shutdown()
            try await group.shutdownGracefully()
            throw error
        }
        await layer.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func peersSpreadOverOneSocketPerEventLoop() async throws {
        try await Self.withEchoLayer(sockets: 0) { receiver, port in
            // 32 source ports: the kernel's hash puts them all on one socket with odds of 2 in 2^32.
            try await Self.expectEveryDatagramAnswered(port: port, clients: 32, perClient: 3)
            #expect(receiver.loops.withLockedValue { $0.count } == 2)
        }
    }

    @Test func oneSocketWhenConfiguredSo() async throws {
        try await Self.withEchoLayer(sockets: 1) { receiver, port in
            try await Self.expectEveryDatagramAnswered(port: port, clients: 16, perClient: 2)
            #expect(receiver.loops.withLockedValue { $0.count } == 1)
        }
    }

    /// A burst read in one go is answered in one go: every answer leaves, none waits for more traffic.
    @Test func aBurstFromOnePeerIsAnsweredWhole() async throws {
        try await Self.withEchoLayer(sockets: 0) { _, port in
            try await Self.expectEveryDatagramAnswered(port: port, clients: 1, perClient: 100)
        }
    }

    /// Sends from a timer (NOTIFYs, retransmissions) are flushed too, without a read to end.
    @Test func sendsFromATimerLeaveWithoutAnyRead() async throws {
        try await Self.withEchoLayer(sockets: 0, delay: .milliseconds(20)) { _, port in
            try await Self.expectEveryDatagramAnswered(port: port, clients: 8, perClient: 5)
        }
    }

    /// The sockets share a port only with each other: a port another socket holds is an error,
    /// never a silent split of its traffic.
    @Test func aPortHeldElsewhereIsNotShared() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        // The holder has SO_REUSEADDR: were the listener's sockets to set it too, Linux would let them share.
        let holder = try await DatagramBootstrap(group: group).channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let held = try #require(holder.localAddress?.port)
        await #expect(throws: TransportLayer.StartError.self) {
            _ = try await Self.start(sockets: 0, port: held, group: group)
        }
        try await holder.close()
        try await group.shutdownGracefully()
    }
}
