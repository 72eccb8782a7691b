import CoreProxy
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SIP

/// A simulated user agent over a real socket: UDP, TCP, TLS, WS or WSS. It sends raw text and
/// receives parsed SIP messages (or raw bytes, for keep-alive checks).
final class TestSIPClient: Sendable {
    let transport: SIPTransportProtocol
    let channel: any Channel
    private let remote: SocketAddress
    private let inbox: Inbox
    private let pending = NIOLockedValueBox(ByteBuffer())

    private init(transport: SIPTransportProtocol, channel: any Channel, remote: SocketAddress, inbox: Inbox) {
        self.transport = transport
        self.channel = channel
        self.remote = remote
        self.inbox = inbox
    }

    /// Connects to `host:port` over `transport`.
    /// - Parameter localHost: the UDP address to send from (another loopback address, say).
    /// - Parameter localPort: the UDP port to send from (0: any free one).
    static func connect(_ transport: SIPTransportProtocol, host: String, port: Int,
                        presentCertificate: Bool = false, localHost: String? = nil, localPort: Int = 0) async throws -> TestSIPClient {
        let remote = try SocketAddress(ipAddress: host, port: port)
        let inbox = Inbox()
        let group = MultiThreadedEventLoopGroup.singleton
        let channel: any Channel
        switch transport {
        case .udp:
            let bindHost = localHost ?? (remote.protocol == .inet6 ? "::1" : "127.0.0.1")
            channel = try await DatagramBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DatagramCollector(inbox: inbox))
                    }
                }
                .bind(host: bindHost, port: localPort).get()
        default:
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            tlsConfiguration.certificateVerification = .none
            if presentCertificate {
                tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMFile(TestCertificates.certificate).map { .certificate($0) }
                tlsConfiguration.privateKey = .privateKey(try NIOSSLPrivateKey(file: TestCertificates.privateKey, format: .pem))
            }
            let sslContext = try NIOSSLContext(configuration: tlsConfiguration)
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if transport.isSecure {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: sslContext, serverHostname: nil))
                        }
                        try channel.pipeline.syncOperations.addHandler(StreamCollector(inbox: inbox))
                    }
                }
                .connect(to: remote).get()
            channel.closeFuture.whenComplete { _ in inbox.markClosed() }
        }
        let client = TestSIPClient(transport: transport, channel: channel, remote: remote, inbox: inbox)
        if transport == .ws || transport == .wss {
            try await client.webSocketHandshake(host: host, port: port)
        }
        return client
    }

    var isClosed: Bool { inbox.isClosed }

    // MARK: - Sending

    func send(_ text: String) async throws {
        try await send(ByteBuffer(string: text))
    }

    func send(_ bytes: ByteBuffer) async throws {
        switch transport {
        case .udp:
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: bytes))
        case .ws, .wss:
            try await channel.writeAndFlush(WebSocketTestCodec.maskedTextFrame(bytes))
        default:
            try await channel.writeAndFlush(bytes)
        }
    }

    // MARK: - Receiving

    /// The next raw chunk as it arrived (a datagram, or whatever TCP delivered), or nil after `timeout`.
    func receiveChunk(timeout: Duration = .seconds(5)) async -> ByteBuffer? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let chunk = inbox.pop() { return chunk }
            if inbox.isClosed { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return inbox.pop()
    }

    /// The next whole SIP message, framed as the transport frames it.
    func receive(timeout: Duration = .seconds(5)) async throws -> SIPMessage {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = try nextFrame() {
                return try SIPMessageParser().parse(frame, framing: transport.isStream ? .exact : .datagram)
            }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero, let chunk = await receiveChunk(timeout: remaining) else {
                throw TestFailure("no SIP message within \(timeout) over \(transport)")
            }
            pending.withLockedValue { buffer in
                var chunk = chunk
                buffer.writeBuffer(&chunk)
            }
        }
    }

    /// Waits for any message; nil if none arrives within `timeout`.
    func receiveIfAny(timeout: Duration) async -> SIPMessage? {
        try? await receive(timeout: timeout)
    }

    private func nextFrame() throws -> ByteBuffer? {
        try pending.withLockedValue { buffer -> ByteBuffer? in
            guard buffer.readableBytes > 0 else { return nil }
            switch transport {
            case .udp:
                defer { buffer.clear() }
                return buffer
            case .ws, .wss:
                return WebSocketTestCodec.readFrame(&buffer)
            default:
                switch try SIPStreamFramer().next(from: &buffer) {
                case .frame(.message(let message)): return message
                case .frame(.keepAlivePing), .needMoreData: return nil
                }
            }
        }
    }

    func close() async {
        try? await channel.close()
    }

    // MARK: - WebSocket

    private func webSocketHandshake(host: String, port: Int) async throws {
        let request = "GET / HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "Sec-WebSocket-Protocol: sip\r\n\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        var response = ByteBuffer()
        while true {
            guard let chunk = await receiveChunk() else { throw TestFailure("no WebSocket handshake answer") }
            var copy = chunk
            response.writeBuffer(&copy)
            let text = String(buffer: response)
            if let end = text.range(of: "\r\n\r\n") {
                guard text.hasPrefix("HTTP/1.1 101"), text.lowercased().contains("sec-websocket-protocol: sip") else {
                    throw TestFailure("WebSocket upgrade refused: \(text)")
                }
                let headerBytes = text[..<end.upperBound].utf8.count
                response.moveReaderIndex(forwardBy: headerBytes)
                pending.withLockedValue { $0 = response }
                return
            }
        }
    }
}

/// Client-side WebSocket framing for tests (RFC 6455 §5.2): masked frames out, unmasked frames in.
enum WebSocketTestCodec {
    static func maskedTextFrame(_ payload: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeInteger(UInt8(0x81))
        let length = payload.readableBytes
        if length < 126 {
            out.writeInteger(UInt8(0x80 | length))
        } else if length <= 0xFFFF {
            out.writeInteger(UInt8(0x80 | 126))
            out.writeInteger(UInt16(length))
        } else {
            out.writeInteger(UInt8(0x80 | 127))
            out.writeInteger(UInt64(length))
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        out.writeBytes(mask)
        for (index, byte) in payload.readableBytesView.enumerated() {
            out.writeInteger(byte ^ mask[index % 4])
        }
        return out
    }

    /// Reads one unmasked frame's payload; nil until a whole frame is buffered. Control frames are skipped.
    static func readFrame(_ buffer: inout ByteBuffer) -> ByteBuffer? {
        while true {
            let start = buffer.readerIndex
            guard let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) else {
                buffer.moveReaderIndex(to: start)
                return nil
            }
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let extended = buffer.readInteger(as: UInt16.self) else { buffer.moveReaderIndex(to: start); return nil }
                length = Int(extended)
            } else if length == 127 {
                guard let extended = buffer.readInteger(as: UInt64.self) else { buffer.moveReaderIndex(to: start); return nil }
                length = Int(extended)
            }
            guard let payload = buffer.readSlice(length: length) else {
                buffer.moveReaderIndex(to: start)
                return nil
            }
            let opcode = first & 0x0F
            if opcode == 0x1 || opcode == 0x2 { return payload }
        }
    }
}

/// Chunks received, in order, and whether the connection closed.
final class Inbox: Sendable {
    private let state = NIOLockedValueBox((chunks: [ByteBuffer](), closed: false))
    func push(_ chunk: ByteBuffer) { state.withLockedValue { $0.chunks.append(chunk) } }
    func pop() -> ByteBuffer? {
        state.withLockedValue { $0.chunks.isEmpty ? nil : $0.chunks.removeFirst() }
    }
    func markClosed() { state.withLockedValue { $0.closed = true } }
    var isClosed: Bool { state.withLockedValue { $0.closed && $0.chunks.isEmpty } }
}

private final class DatagramCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let inbox: Inbox
    init(inbox: Inbox) { self.inbox = inbox }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.push(unwrapInboundIn(data).data)
    }
}

private final class StreamCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let inbox: Inbox
    init(inbox: Inbox) { self.inbox = inbox }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.push(unwrapInboundIn(data))
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
