@testable import CoreProxy
import Logging
import NIOCore
import NIOPosix
import Testing

/// UDP listeners get the configured receive and send buffers (`limits.udp_buffer_bytes`): with the
/// kernel's 208 KiB default, a burst of datagrams is dropped and costs retransmissions.
struct UDPSocketBufferTests {
    @Test(arguments: [1 << 20, 256 << 10])
    func udpListenersGetTheConfiguredBuffers(bytes: Int) async throws {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .critical
        let layer = try TransportLayer(configuration: TransportLayer.Configuration(
            listeners: [ListenerSpec(transport: .udp, host: "127.0.0.1", port: 0)], udpBufferBytes: bytes),
                                       group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let bound = try await layer.start()
        let listener = try #require(bound.first)
        let channel = try #require(layer.datagramSocket(listener.id)?.channel)
        // Linux reports twice what was set (its bookkeeping overhead), and caps the setting at
        // net.core.rmem_max / wmem_max (212,992 on a stock kernel): at least 2 × 212,992 either
        // way, where the kernel's default leaves 212,992.
        let receive = try await channel.getOption(.socketOption(.so_rcvbuf)).get()
        let send = try await channel.getOption(.socketOption(.so_sndbuf)).get()
        #expect(Int(receive) >= min(bytes, 212_992 * 2) && Int(receive) <= 2 * bytes, "SO_RCVBUF \(receive)")
        #expect(Int(send) >= min(bytes, 212_992 * 2) && Int(send) <= 2 * bytes, "SO_SNDBUF \(send)")
        await layer.shutdown()
    }
}
