public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
import NIOSSL
import NIOWebSocket
public import SIP
import Logging
import Metrics

/// Where to send a request that has no flow yet: a transport, a host (IP literal or name) and port.
public struct SIPDestination: Sendable, Hashable, CustomStringConvertible {
    public var transport: SIPTransportProtocol
    public var host: String
    public var port: Int

    public init(transport: SIPTransportProtocol, host: String, port: Int) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    /// RFC 3263 without DNS: the transport from `transport=` (or sips → TLS, else UDP), the host and
    /// port of the URI (or maddr), the transport's default port when none is given.
    public init(uri: SIPURI) {
        let transport: SIPTransportProtocol
        if let token = uri.transportParameter, let parsed = SIPTransportProtocol(token: token) {
            transport = uri.scheme == .sips && parsed == .tcp ? .tls : parsed
        } else {
            transport = uri.scheme == .sips ? .tls : .udp
        }
        let host = uri.parameters.unquoted("maddr") ?? uri.host
        self.init(transport: transport, host: host, port: uri.port ?? transport.defaultPort)
    }

    public var description: String {
        let shown = host.contains(":") && !host.hasPrefix("[") ? "[" + host + "]" : host
        return transport.rawValue + ":" + shown + ":" + String(port)
    }

    var bareHost: String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }
}

extension TransportLayer {
    /// Sends bytes over an existing flow. Fails with ``TransportError/flowClosed(_:)`` when the
    /// connection is gone, so the caller can treat the target as dead.
    public func send(_ bytes: ByteBuffer, over flow: SIPFlow) -> EventLoopFuture<Void> {
        switch outlet(for: flow, bytes: bytes.readableBytes) {
        case .failure(let error):
            return group.next().makeFailedFuture(error)
        case .success(.datagram(let channel, let remote)):
            return channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: bytes))
        case .success(.stream(let channel)):
            return channel.writeAndFlush(bytes)
        case .success(.webSocket(let channel)):
            return channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: bytes))
        }
    }

    /// Sends bytes over an existing flow when nothing waits on the write (answers to requests):
    /// no promise is made for it, which was a tenth of the cost of answering a REGISTER. Returns
    /// why the send could not start. A failed write is not reported: over UDP only EMSGSIZE and
    /// EHOSTUNREACH fail one datagram (a retransmission gets the answer again), and a connection
    /// whose write fails closes, which its close handlers hear.
    public func sendUnconfirmed(_ bytes: ByteBuffer, over flow: SIPFlow) -> TransportError? {
        switch outlet(for: flow, bytes: bytes.readableBytes) {
        case .failure(let error):
            return error
        case .success(.datagram(let channel, let remote)):
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: bytes), promise: nil)
        case .success(.stream(let channel)):
            channel.writeAndFlush(bytes, promise: nil)
        case .success(.webSocket(let channel)):
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: bytes), promise: nil)
        }
        return nil
    }

    /// Sends where nothing waits for the outcome (an ACK for a 2xx, a stray response): over the
    /// flow at hand without a write promise, else by finding or opening one.
    public func sendStatelessly(_ bytes: ByteBuffer, to destination: SIPDestination) {
        if let flow = flowAtHand(for: destination) {
            _ = sendUnconfirmed(bytes, over: flow)
        } else {
            _ = send(bytes, to: destination)
        }
    }

    private enum Outlet {
        case datagram(any Channel, SocketAddress)
        case stream(any Channel)
        case webSocket(any Channel)
    }

    /// The channel a send over `flow` writes to, counting `bytes` as sent; or why there is none.
    private func outlet(for flow: SIPFlow, bytes: Int) -> Result<Outlet, TransportError> {
        switch flow {
        case .datagram(let listener, let remote):
            guard let (channel, reach) = datagramSocket(listener) else { return .failure(.flowClosed(flow)) }
            guard bytes <= DatagramReach.largestPayload else {
                metrics.datagramsRefused.increment()
                return .failure(.unreachable("\(remote)", reason: "\(bytes) bytes do not fit in a datagram"))
            }
            if let reason = reach?.refusal(for: remote) {
                metrics.datagramsRefused.increment()
                logger.info("datagram not sent", metadata: ["remote": "\(remote)", "reason": "\(reason)"])
                return .failure(.unreachable("\(remote)", reason: reason))
            }
            metrics.bytesSent.increment(by: bytes)
            return .success(.datagram(channel, remote))
        case .connection(let id):
            guard let connection = connection(id), connection.channel.isActive else { return .failure(.flowClosed(flow)) }
            metrics.bytesSent.increment(by: bytes)
            return .success(connection.isWebSocket ? .webSocket(connection.channel) : .stream(connection.channel))
        }
    }

    /// Sends a message over an existing flow.
    public func send(_ message: SIPMessage, over flow: SIPFlow) -> EventLoopFuture<Void> {
        send(message.serialized(), over: flow)
    }

    /// Finds or opens a flow to `destination` and sends `bytes` over it; returns the flow used.
    ///
    /// UDP goes out of a UDP listener of the same address family. TCP and TLS reuse an open
    /// connection to the same address or open one (name lookup happens off the event loop).
    /// WebSocket peers cannot be dialled: they are reached over the connection they opened.
    public func send(_ bytes: ByteBuffer, to destination: SIPDestination) -> EventLoopFuture<SIPFlow> {
        // Stay on the loop of the socket that will write, so no send wakes another thread.
        let loop = destination.transport == .udp ? udpSendLoop() : group.next()
        return resolve(destination, on: loop).flatMap { address -> EventLoopFuture<SIPFlow> in
            switch destination.transport {
            case .udp:
                guard let listener = self.udpListener(for: address) else {
                    return loop.makeFailedFuture(TransportError.noListener(.udp))
                }
                let flow = SIPFlow.datagram(listener: listener, remote: address)
                return self.send(bytes, over: flow).map { flow }
            case .tcp, .tls:
                return self.streamConnection(to: address, transport: destination.transport, on: loop).flatMap { id in
                    let flow = SIPFlow.connection(id)
                    return self.send(bytes, over: flow).map { flow }
                }
            case .ws, .wss, .sctp:
                return loop.makeFailedFuture(TransportError.cannotOriginate(destination.transport))
            }
        }
    }

    /// The flow a send to `destination` would use, when it is known without waiting: UDP to an
    /// address, or an open connection to one. Nil when a name must be looked up or a connection opened.
    public func flowAtHand(for destination: SIPDestination) -> SIPFlow? {
        guard let address = literalAddress(destination) else { return nil }
        switch destination.transport {
        case .udp:
            return udpListener(for: address).map { SIPFlow.datagram(listener: $0, remote: address) }
        case .tcp, .tls:
            return openConnection(to: address, transport: destination.transport).map { .connection($0) }
        case .ws, .wss, .sctp:
            return nil
        }
    }

    /// The destination's address when its host is an IP literal or a static host entry.
    private func literalAddress(_ destination: SIPDestination) -> SocketAddress? {
        let name = destination.bareHost
        let host = configuration.staticHosts.isEmpty ? name : configuration.staticHosts[name.lowercased()] ?? name
        return try? SocketAddress(ipAddress: host, port: destination.port)
    }

    private func resolve(_ destination: SIPDestination, on loop: any EventLoop) -> EventLoopFuture<SocketAddress> {
        if let address = literalAddress(destination) {
            return loop.makeSucceededFuture(address)
        }
        let name = destination.bareHost
        let host = configuration.staticHosts[name.lowercased()] ?? name
        // getaddrinfo blocks: run it on NIO's blocking pool, never on the event loop.
        return NIOThreadPool.singleton.runIfActive(eventLoop: loop) {
            try SocketAddress.makeAddressResolvingHost(host, port: destination.port)
        }.flatMapErrorThrowing { _ in
            throw TransportError.unresolvable(destination.host)
        }
    }

    /// The UDP listener to send to `address` from: one of its address family, preferring one whose
    /// socket can reach it (with a loopback and a public listener, a remote peer gets the public one).
    private func udpListener(for address: SocketAddress) -> ListenerID? {
        // Plain loops: a lazy filter over the listeners put its closure's context on the heap, for
        // every request sent over UDP.
        state.withLockedValue { state in
            var first: ListenerID?
            var several = false
            for listener in state.udpListeners where listener.bound.address.protocol == address.protocol {
                guard first == nil else {
                    several = true
                    break
                }
                first = listener.bound.id
            }
            guard let first else { return state.udpListeners.first { $0.bound.spec.host == "::" }?.bound.id }
            // One listener of the family leaves no choice (its check comes with the send).
            guard several else { return first }
            for listener in state.udpListeners
            where listener.bound.address.protocol == address.protocol && listener.reach?.refusal(for: address) == nil {
                return listener.bound.id
            }
            return first
        }
    }

    /// A connection to `address` that is already open, to be reused instead of dialling again.
    private func openConnection(to address: SocketAddress, transport: SIPTransportProtocol) -> ConnectionID? {
        guard let existing = state.withLockedValue({ $0.connectionsByRemote[RemoteKey(transport: transport, remote: address)] }),
              let connection = connection(existing), connection.channel.isActive else { return nil }
        return existing
    }

    private func streamConnection(to address: SocketAddress, transport: SIPTransportProtocol,
                                  on loop: any EventLoop) -> EventLoopFuture<ConnectionID> {
        if let existing = openConnection(to: address, transport: transport) {
            return loop.makeSucceededFuture(existing)
        }
        if transport == .tls, clientSSLContext == nil {
            return loop.makeFailedFuture(TransportError.noListener(.tls))
        }
        let listener = state.withLockedValue { state in
            state.listeners.values.first { $0.bound.spec.transport == transport }?.bound.id ?? ListenerID(0)
        }
        let promise = loop.makePromise(of: ConnectionID.self)
        ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: self.configuration.idleTimeout))
                    if transport == .tls, let context = self.clientSSLContext {
                        try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                }
            }
            .connect(to: address)
            .whenComplete { result in
                switch result {
                case .failure(let error):
                    promise.fail(TransportError.connectFailed(String(describing: error)))
                case .success(let channel):
                    guard let id = self.registerConnection(channel, transport: transport, listener: listener) else {
                        channel.close(promise: nil)
                        promise.fail(TransportError.connectionLimit)
                        return
                    }
                    channel.eventLoop.execute {
                        do {
                            let sync = channel.pipeline.syncOperations
                            try sync.addHandler(ByteToMessageHandler(SIPStreamDecoder(maxMessageSize: self.configuration.maxMessageSize)))
                            try sync.addHandler(SIPStreamConnectionHandler(transportLayer: self, connection: id,
                                                                           transport: transport, listener: listener))
                            promise.succeed(id)
                        } catch {
                            channel.close(promise: nil)
                            promise.fail(error)
                        }
                    }
                }
            }
        return promise.futureResult
    }
}
