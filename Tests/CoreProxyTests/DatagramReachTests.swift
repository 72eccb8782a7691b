@testable import CoreProxy
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// A datagram the kernel refuses must cost one transaction, never a listener's socket: SwiftNIO
/// closes a datagram channel on such a send error, and the peers the kernel hashed to that socket
/// would hear nothing more.
@Suite(.timeLimit(.minutes(1)))
struct DatagramReachTests {
    typealias Agent = ProxyEndToEndTests.Agent

    static func address(_ text: String, _ port: Int = 5060) throws -> SocketAddress {
        try SocketAddress(ipAddress: text, port: port)
    }

    @Test func aLoopbackSocketReachesLoopbackPeersOnly() throws {
        let reach = DatagramReach(local: try Self.address("127.0.0.1", 5070), broadcasts: [0xFFFF_FFFF])
        #expect(reach.refusal(for: try Self.address("127.0.0.1")) == nil)
        #expect(reach.refusal(for: try Self.address("127.8.9.10")) == nil)
        #expect(reach.refusal(for: try Self.address("192.0.2.1")) == "not reachable from a socket bound to loopback")
        #expect(reach.refusal(for: try Self.address("::1")) == nil)
        let six = DatagramReach(local: try Self.address("::1", 5070), broadcasts: [])
        #expect(six.refusal(for: try Self.address("::1")) == nil)
        #expect(six.refusal(for: try Self.address("2001:db8::1")) != nil)
        #expect(six.refusal(for: try Self.address("::ffff:127.0.0.1")) != nil)
    }

    @Test func broadcastAddressesAreRefusedFromAnySocket() throws {
        let broadcasts: Set<UInt32> = [0xFFFF_FFFF, 0xC000_02FF]  // 255.255.255.255, 192.0.2.255
        let reach = DatagramReach(local: try Self.address("0.0.0.0", 5070), broadcasts: broadcasts)
        #expect(reach.refusal(for: try Self.address("255.255.255.255")) == "a broadcast address")
        #expect(reach.refusal(for: try Self.address("192.0.2.255")) == "a broadcast address")
        #expect(reach.refusal(for: try Self.address("192.0.2.254")) == nil)
        #expect(reach.refusal(for: try Self.address("8.8.8.8")) == nil)
        #expect(reach.refusal(for: try Self.address("2001:db8::1")) == nil)
    }

    /// Read from this machine's interfaces: the limited broadcast and loopback's own are always there.
    @Test func theHostsBroadcastAddressesComeFromItsInterfaces() {
        let broadcasts = DatagramReach.hostBroadcasts()
        #expect(broadcasts.contains(0xFFFF_FFFF))
        #expect(broadcasts.contains(0x7FFF_FFFF), "127.255.255.255, lo's /8")
    }

    /// The sockets of a listener, by identity.
    static func sockets(_ layer: TransportLayer) -> [ObjectIdentifier] {
        layer.state.withLockedValue { state in
            state.listeners.values.flatMap(\.channels).filter(\.isActive).map { ObjectIdentifier($0) }
        }
    }

    @Test func aSendTheKernelWouldRefuseFailsAloneAndEverySocketStays() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (layer, _, port) = try await UDPSharedPortTests.start(sockets: 0, group: group)
        let before = Self.sockets(layer)
        #expect(before.count == 2)
        let listener = try #require(layer.boundListeners.first).id
        // From each loop, so each socket is asked: the kernel answers EINVAL (loopback source) and EACCES.
        for loop in group.makeIterator() {
            for remote in [try Self.address("192.0.2.1"), try Self.address("255.255.255.255")] {
                let sent = loop.flatSubmit { layer.send(ByteBuffer(string: "x"), over: .datagram(listener: listener, remote: remote)) }
                do {
                    try await sent.get()
                    Issue.record("a datagram to \(remote) was sent")
                } catch TransportError.unreachable {
                } catch {
                    Issue.record("expected unreachable, got \(error)")
                }
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(Self.sockets(layer) == before, "the same sockets, none closed")
        try await UDPSharedPortTests.expectEveryDatagramAnswered(port: port, clients: 16, perClient: 2)
        await layer.shutdown()
        try await group.shutdownGracefully()
    }

    /// Whatever closes a socket the checks did not foresee (no route, a firewall's EPERM), another
    /// takes its place on the same port.
    @Test func aUDPSocketThatClosesIsBoundAgain() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (layer, receiver, port) = try await UDPSharedPortTests.start(sockets: 0, group: group)
        let victim = try #require(layer.state.withLockedValue { $0.listeners.values.first?.channels.first })
        try await victim.close()
        let deadline = ContinuousClock.now + .seconds(5)
        while Self.sockets(layer).count < 2 || Self.sockets(layer).contains(ObjectIdentifier(victim)),
              ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let after = Self.sockets(layer)
        #expect(after.count == 2)
        #expect(!after.contains(ObjectIdentifier(victim)))
        // Both loops serve again: 32 source ports land on one socket with odds of 2 in 2^32.
        receiver.loops.withLockedValue { $0.removeAll() }
        try await UDPSharedPortTests.expectEveryDatagramAnswered(port: port, clients: 32, perClient: 2)
        #expect(receiver.loops.withLockedValue { $0.count } == 2)
        await layer.shutdown()
        try await group.shutdownGracefully()
    }

    /// A request that came over TCP and is too large for a datagram to a UDP device fails at
    /// once (the kernel's EMSGSIZE would come after the write, with nobody waiting for it).
    @Test func aRequestTooLargeForADatagramFailsAtOnce() async throws {
        try await withTestServer(maxMessageSize: 200_000) { server in
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            let alice = try await Agent.connect(server, user: "alice", transport: .tcp)
            let started = ContinuousClock.now
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "too-large", body: String(repeating: "x", count: 70_000))
            #expect(try await alice.response(callID: "too-large").statusCode == 480)
            #expect(ContinuousClock.now - started < .seconds(3), "not Timer F's 32 s")
            #expect(await bob.somethingNew(within: .milliseconds(200)) == nil)
        }
    }

    /// An IPv4 address of this machine other than loopback, for a listener of its own (nil where there is none).
    static let hostAddress: String? = {
        for device in (try? System.enumerateDevices()) ?? [] {
            guard let address = device.address, let ip = DatagramReach.ipv4(address), ip >> 24 != 127, ip != 0 else { continue }
            return address.ipAddress
        }
        return nil
    }()

    /// Collects the start lines of the datagrams a stand-in device gets.
    final class StartLines: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let lines = NIOLockedValueBox<[String]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data).data)
            lines.withLockedValue { $0.append(String(text.prefix { $0 != "\r\n" })) }
        }
    }

    /// With a loopback and a host-address listener, a device on the host address is sent to from
    /// the listener that can reach it, not from the first one (whose send the kernel would refuse).
    @Test(.enabled(if: DatagramReachTests.hostAddress != nil, "needs an IPv4 address other than loopback"))
    func aDeviceIsReachedFromTheListenerThatCanReachIt() async throws {
        let ip = try #require(Self.hostAddress)
        let collector = StartLines()
        let device = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .bind(host: ip, port: 0).get()
        let devicePort = try #require(device.localAddress?.port)
        let listeners = [ListenerSpec(transport: .udp, host: "127.0.0.1", port: 0), ListenerSpec(transport: .udp, host: ip, port: 0)]
        try await withTestServer(listeners: listeners) { server in
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register(contact: "<sip:bob@\(ip):\(devicePort)>").statusCode == 200)
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "to-host-address", body: "hello")
            let deadline = ContinuousClock.now + .seconds(5)
            while collector.lines.withLockedValue({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(collector.lines.withLockedValue { $0.first } == "MESSAGE sip:bob@\(ip):\(devicePort) SIP/2.0")
        }
        try await device.close()
    }

    /// Through the proxy: a contact at an address the server's socket cannot send to is a dead
    /// device (480, binding removed), and the server goes on serving on every socket.
    @Test func aContactAtABroadcastAddressCostsOneRequest() async throws {
        try await withTestServer { server in
            let before = Self.sockets(server.server.transportLayer)
            let bob = try await Agent.connect(server, user: "bob")
            for contact in ["255.255.255.255:5060", "192.0.2.1:5060"] {
                #expect(try await bob.register(contact: "<sip:bob@\(contact)>").statusCode == 200)
                let alice = try await Agent.connect(server, user: "alice")
                try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "to-\(contact)", body: "hello")
                #expect(try await alice.response(callID: "to-\(contact)").statusCode == 480, "\(contact)")
                #expect(server.server.location.bindings(for: "sip:bob@tern.test").isEmpty)
            }
            try await Task.sleep(for: .milliseconds(100))
            #expect(Self.sockets(server.server.transportLayer) == before)
            let carol = try await Agent.connect(server, user: "carol")
            #expect(try await carol.register().statusCode == 200)
        }
    }
}
