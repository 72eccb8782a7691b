import NIOCore
import NIOWebSocket
import NIOHTTP1
import SIP
import Logging
import Metrics

extension TransportLayer {
    /// What every connection handler does with the idle event: close, count.
    func closeIfIdle(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        metrics.idleClosed.increment()
        context.close(promise: nil)
    }

    /// What every connection handler does with an error: count, log, close that connection only.
    func closeAfterError(context: ChannelHandlerContext, connection: ConnectionID, error: any Error) {
        metrics.streamErrors.increment()
        logger.debug("closing connection after error", metadata: ["connection": "\(connection)", "error": "\(error)"])
        context.close(promise: nil)
    }
}

/// One UDP socket: each datagram is one message (RFC 3261 §18.1.1).
///
/// Sends are flushed once per burst, so that NIO hands the kernel every datagram of the burst in
/// one sendmmsg(2): a flush waits for the loop's next round of tasks, which NIO runs after the
/// reads it is processing (a read burst's answers go together) and after the tasks already queued
/// (NOTIFYs sent by a timer go together).
final class SIPDatagramHandler: ChannelDuplexHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>

    private let transportLayer: TransportLayer
    private let listener: ListenerID
    private var localAddress: SocketAddress?
    /// Inside a read: from the first datagram handed on until the read's channelReadComplete.
    private var reading = false
    /// A flush was asked for and has not been passed on yet.
    private var flushPending = false
    /// That flush waits in a task of the loop (it was asked for outside a read).
    private var flushScheduled = false
    private var removed = false

    init(transportLayer: TransportLayer, listener: ListenerID) {
        self.transportLayer = transportLayer
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        localAddress = context.channel.localAddress
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let envelope = unwrapInboundIn(data)
        let bytes = envelope.data
        transportLayer.metrics.bytesReceived.increment(by: bytes.readableBytes)
        // RFC 5626 §4.4.1 keep-alives over UDP are STUN; some phones send bare CRLFs instead. Neither is SIP.
        if bytes.readableBytes <= 4, bytes.readableBytesView.allSatisfy({ $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
            transportLayer.metrics.keepAlives.increment()
            return
        }
        guard let local = localAddress ?? context.channel.localAddress else { return }
        let meta = InboundMeta(transport: .udp, source: envelope.remoteAddress, local: local,
                               flow: .datagram(listener: listener, remote: envelope.remoteAddress), listener: listener, eventLoop: context.eventLoop)
        // Reads land in one large buffer (64 KiB for each datagram of a vector read) so that no
        // datagram is ever cut short. A parsed message keeps slices of its bytes for as long as its
        // transaction lives (Timer J: 32 s), which would pin the whole buffer and make NIO allocate
        // a new one for every read. A copy of the datagram's own size lets NIO reuse its buffer.
        var message = context.channel.allocator.buffer(capacity: bytes.readableBytes)
        message.writeImmutableBuffer(bytes)
        transportLayer.deliver(message, meta: meta)
    }

    /// Writes are flushed together, so a burst of datagrams leaves in one sendmmsg(2): those made
    /// while a read's datagrams are handled at the read's end, others (timers, a fan-out of NOTIFYs)
    /// in a task after whatever the loop is running now.
    func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        guard !reading else { return }
        flushScheduled = true
        let pending = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = pending.value
            handler.flushScheduled = false
            handler.flushIfPending(context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        // A flush the loop already has a task for is left to it.
        if !flushScheduled { flushIfPending(context: context) }
        context.fireChannelReadComplete()
    }

    private func flushIfPending(context: ChannelHandlerContext) {
        guard flushPending, !removed else { return }
        flushPending = false
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors surface here for connected sends; a UDP listener keeps serving.
        transportLayer.metrics.socketErrors.increment()
        transportLayer.logger.debug("udp error", metadata: ["error": "\(error)"])
    }
}

@available(*, unavailable)
extension SIPDatagramHandler: Sendable {}

/// One TCP or TLS connection after framing: delivers messages, answers keep-alive pings, and closes
/// the connection on framing errors or idleness.
final class SIPStreamConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = SIPStreamFramer.Frame
    typealias OutboundOut = ByteBuffer

    private let transportLayer: TransportLayer
    private let connection: ConnectionID
    private let transport: SIPTransportProtocol
    private let listener: ListenerID

    init(transportLayer: TransportLayer, connection: ConnectionID, transport: SIPTransportProtocol, listener: ListenerID) {
        self.transportLayer = transportLayer
        self.connection = connection
        self.transport = transport
        self.listener = listener
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .keepAlivePing:
            // RFC 5626 §3.5.1: answer a double-CRLF ping with a single-CRLF pong.
            transportLayer.metrics.keepAlives.increment()
            var pong = context.channel.allocator.buffer(capacity: 2)
            pong.writeStaticString("\r\n")
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .message(let bytes):
            transportLayer.metrics.bytesReceived.increment(by: bytes.readableBytes)
            guard let remote = context.channel.remoteAddress, let local = context.channel.localAddress else { return }
            let meta = InboundMeta(transport: transport, source: remote, local: local,
                                   flow: .connection(connection), listener: listener, eventLoop: context.eventLoop)
            transportLayer.deliver(bytes, meta: meta)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        transportLayer.closeIfIdle(context: context, event: event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A framing error means the message boundary is lost: nothing later on this stream can be
        // trusted, so the connection closes. Other clients are untouched.
        transportLayer.closeAfterError(context: context, connection: connection, error: error)
    }
}

@available(*, unavailable)
extension SIPStreamConnectionHandler: Sendable {}

/// SIP over WebSocket (RFC 7118): each text or binary message carries exactly one SIP message.
final class SIPWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let transportLayer: TransportLayer
    private let connection: ConnectionID
    private let transport: SIPTransportProtocol
    private let listener: ListenerID
    private let maxMessageSize: Int
    private var fragments: ByteBuffer?
    private var closeSent = false

    init(transportLayer: TransportLayer, connection: ConnectionID, transport: SIPTransportProtocol,
         listener: ListenerID, maxMessageSize: Int) {
        self.transportLayer = transportLayer
        self.connection = connection
        self.transport = transport
        self.listener = listener
        self.maxMessageSize = maxMessageSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            if frame.fin {
                deliver(frame.unmaskedData, context: context)
            } else {
                fragments = frame.unmaskedData
            }
        case .continuation:
            guard var buffer = fragments else { return }
            var data = frame.unmaskedData
            guard buffer.readableBytes + data.readableBytes <= maxMessageSize else {
                fragments = nil
                close(context: context, code: .messageTooLarge)
                return
            }
            buffer.writeBuffer(&data)
            if frame.fin {
                fragments = nil
                deliver(buffer, context: context)
            } else {
                fragments = buffer
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            close(context: context, code: .normalClosure)
        default:
            break
        }
    }

    private func deliver(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        transportLayer.metrics.bytesReceived.increment(by: bytes.readableBytes)
        guard let remote = context.channel.remoteAddress, let local = context.channel.localAddress else { return }
        let meta = InboundMeta(transport: transport, source: remote, local: local,
                               flow: .connection(connection), listener: listener, eventLoop: context.eventLoop)
        transportLayer.deliver(bytes, meta: meta)
    }

    private func close(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closeSent else {
            context.close(promise: nil)
            return
        }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        transportLayer.closeIfIdle(context: context, event: event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        transportLayer.closeAfterError(context: context, connection: connection, error: error)
    }
}

@available(*, unavailable)
extension SIPWebSocketHandler: Sendable {}

/// Answers an HTTP request on a WebSocket listener that did not upgrade to SIP (no `sip`
/// subprotocol, RFC 7118 §4.1, or no upgrade at all): 426 and close.
final class WebSocketRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Upgrade", value: "websocket")
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPResponseHead(version: .http1_1, status: .upgradeRequired, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension WebSocketRefusalHandler: Sendable {}
