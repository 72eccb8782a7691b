public import NIOCore
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import NIOSSL
import NIOHTTP1
import NIOWebSocket
public import Logging
import SIP
import Metrics

/// Receives what the transports read, on the event loop of the channel that read it.
public protocol TransportReceiver: AnyObject, Sendable {
    /// One datagram, one stream frame or one WebSocket message, not yet parsed.
    func received(_ bytes: ByteBuffer, from meta: InboundMeta)
}

/// Where bytes came from, before they are a message.
public struct InboundMeta: Sendable {
    public var transport: SIPTransportProtocol
    public var source: SocketAddress
    public var local: SocketAddress
    public var flow: SIPFlow
    public var listener: ListenerID
    /// The event loop of the channel that read the bytes; work for this message stays on it.
    public var eventLoop: any EventLoop
}

/// A listener that is bound, with the address and port it really got.
public struct BoundListener: Sendable, CustomStringConvertible {
    public var id: ListenerID
    public var spec: ListenerSpec
    public var address: SocketAddress {
        didSet { viaHost = Self.viaHost(address, spec: spec) }
    }
    /// The host as it goes into Via and Record-Route (IPv6 in brackets), formatted once: every
    /// forwarded request writes it.
    public private(set) var viaHost: String

    public var port: Int { address.port ?? 0 }

    public init(id: ListenerID, spec: ListenerSpec, address: SocketAddress) {
        self.id = id
        self.spec = spec
        self.address = address
        self.viaHost = Self.viaHost(address, spec: spec)
    }

    private static func viaHost(_ address: SocketAddress, spec: ListenerSpec) -> String {
        let ip = address.ipAddress ?? spec.host
        return ip.contains(":") ? "[" + ip + "]" : ip
    }

    public var description: String {
        ListenerSpec(transport: spec.transport, host: address.ipAddress ?? spec.host, port: port).description
    }
}

/// Owns every SIP socket: listeners, accepted and opened connections, and sends.
///
/// Connections are kept in one table keyed by ``ConnectionID`` (and by remote address for reuse),
/// behind a lock; each channel's reads stay on its own event loop.
public final class TransportLayer: Sendable {
    public struct Configuration: Sendable {
        public var listeners: [ListenerSpec]
        public var tls: TLSSettings?
        /// Largest SIP message accepted (513 or close above it). Default 65,535.
        public var maxMessageSize: Int
        /// Most simultaneous stream and WebSocket connections; more are closed on accept. Default 10,000.
        public var maxConnections: Int
        /// A connection with no traffic for this long is closed. Default 10 minutes (RFC 5626 keep-alives
        /// every 2 minutes or so keep live flows open).
        public var idleTimeout: TimeAmount
        /// Timeout for opening an outgoing connection. Default 5 s.
        public var connectTimeout: TimeAmount
        /// Names resolved without DNS, lower-cased name → IP address. Default none.
        public var staticHosts: [String: String]
        /// Receive and send buffer of each UDP socket, in bytes (the kernel caps it at
        /// net.core.rmem_max / wmem_max). A burst of datagrams beyond the receive buffer is dropped
        /// by the kernel and costs a retransmission 500 ms later. Default 4 MiB.
        public var udpBufferBytes: Int
        /// Sockets per UDP listener, each on its own event loop and sharing the port (SO_REUSEPORT):
        /// the kernel gives each peer address and port to one of them, so traffic from many peers
        /// spreads over the cores. One peer stays on one socket. 0 means one per event loop; 1 is a
        /// single socket. Default 0.
        public var udpSocketsPerListener: Int

        public init(listeners: [ListenerSpec], tls: TLSSettings? = nil, maxMessageSize: Int = 65_535,
                    maxConnections: Int = 10_000, idleTimeout: TimeAmount = .minutes(10),
                    connectTimeout: TimeAmount = .seconds(5), staticHosts: [String: String] = [:],
                    udpBufferBytes: Int = 4 << 20, udpSocketsPerListener: Int = 0) {
            self.udpBufferBytes = udpBufferBytes
            self.udpSocketsPerListener = udpSocketsPerListener
            self.listeners = listeners
            self.tls = tls
            self.maxMessageSize = maxMessageSize
            self.maxConnections = maxConnections
            self.idleTimeout = idleTimeout
            self.connectTimeout = connectTimeout
            self.staticHosts = staticHosts
        }
    }

    /// Certificate and key for TLS and WSS listeners, and whether clients must show a certificate.
    public struct TLSSettings: Sendable {
        public enum ClientCertificates: String, Sendable, Codable { case none, optional, required }

        public var certificateChainPath: String
        public var privateKeyPath: String
        /// CA bundle for client certificates; the system roots when nil.
        public var trustRootsPath: String?
        public var clientCertificates: ClientCertificates

        public init(certificateChainPath: String, privateKeyPath: String, trustRootsPath: String? = nil,
                    clientCertificates: ClientCertificates = .none) {
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
            self.trustRootsPath = trustRootsPath
            self.clientCertificates = clientCertificates
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case bindFailed(ListenerSpec, String)
        case tlsNotConfigured(ListenerSpec)
        case tlsSetupFailed(String)
        case unsupportedTransport(ListenerSpec)

        public var description: String {
            switch self {
            case .bindFailed(let spec, let why): "cannot listen on \(spec): \(why)"
            case .tlsNotConfigured(let spec): "\(spec) needs tls.certificate and tls.private_key in the configuration"
            case .tlsSetupFailed(let why): "TLS setup failed: \(why)"
            case .unsupportedTransport(let spec): "\(spec): \(spec.transport.rawValue) is not available on this system"
            }
        }
    }

    struct Connection: Sendable {
        var id: ConnectionID
        var channel: any Channel
        var transport: SIPTransportProtocol
        var remote: SocketAddress
        var local: SocketAddress
        var listener: ListenerID
        var isWebSocket: Bool
    }

    struct State {
        /// A UDP listener may have several sockets on one port, one per event loop; others have one.
        /// A UDP listener's `reach` says what its sockets can send to.
        var listeners: [ListenerID: (bound: BoundListener, channels: [any Channel], reach: DatagramReach?)] = [:] {
            didSet { udpListeners = listeners.values.filter { $0.bound.spec.transport == .udp }.sorted { $0.bound.id.rawValue < $1.bound.id.rawValue } }
        }
        /// The UDP ones in listener order, kept apart because every UDP send looks them up.
        private(set) var udpListeners: [(bound: BoundListener, channels: [any Channel], reach: DatagramReach?)] = []
        var connections: [ConnectionID: Connection] = [:]
        var connectionsByRemote: [RemoteKey: ConnectionID] = [:]
        var nextConnectionID: UInt64 = 1
        /// Set by shutdown: connections closed by us then are not dead flows of their devices.
        var shuttingDown = false
    }

    struct RemoteKey: Hashable {
        var transport: SIPTransportProtocol
        var remote: SocketAddress
    }

    public let configuration: Configuration
    public let group: any EventLoopGroup
    let logger: Logger
    let state = NIOLockedValueBox(State())
    let receiverBox = NIOLockedValueBox<(any TransportReceiver)?>(nil)
    let closeHandlers = NIOLockedValueBox<[@Sendable (ConnectionID) -> Void]>([])
    let sslContext: NIOSSLContext?
    let clientSSLContext: NIOSSLContext?
    let metrics = TransportMetrics()

    public init(configuration: Configuration, group: any EventLoopGroup, logger: Logger) throws {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        if let tls = configuration.tls {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChainPath)
                let key = try NIOSSLPrivateKey(file: tls.privateKeyPath, format: .pem)
                var server = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain.map { .certificate($0) },
                    privateKey: .privateKey(key)
                )
                switch tls.clientCertificates {
                case .none: server.certificateVerification = .none
                case .optional: server.certificateVerification = .optionalVerification
                case .required: server.certificateVerification = .noHostnameVerification
                }
                if let roots = tls.trustRootsPath { server.trustRoots = .file(roots) }
                sslContext = try NIOSSLContext(configuration: server)
                var client = TLSConfiguration.makeClientConfiguration()
                client.certificateChain = chain.map { .certificate($0) }
                client.privateKey = .privateKey(key)
                if let roots = tls.trustRootsPath { client.trustRoots = .file(roots) }
                clientSSLContext = try NIOSSLContext(configuration: client)
            } catch {
                throw StartError.tlsSetupFailed(String(describing: error))
            }
        } else {
            sslContext = nil
            clientSSLContext = nil
        }
    }

    /// Sets who gets what the transports read. Call before ``start()``.
    public func setReceiver(_ receiver: any TransportReceiver) {
        receiverBox.withLockedValue { $0 = receiver }
    }

    var receiver: (any TransportReceiver)? { receiverBox.withLockedValue { $0 } }

    // MARK: - Listening

    /// Binds every configured listener; returns them with their real ports.
    public func start() async throws -> [BoundListener] {
        var bound: [BoundListener] = []
        let broadcasts = configuration.listeners.contains { $0.transport == .udp } ? DatagramReach.hostBroadcasts() : []
        do {
            for (offset, spec) in configuration.listeners.enumerated() {
                let id = ListenerID(offset + 1)
                let channels = try await bind(spec, id: id)
                guard let address = channels.first?.localAddress else {
                    for channel in channels { try? await channel.close() }
                    throw StartError.bindFailed(spec, "no local address")
                }
                let listener = BoundListener(id: id, spec: spec, address: address)
                let reach = spec.transport == .udp ? DatagramReach(local: address, broadcasts: broadcasts) : nil
                state.withLockedValue { $0.listeners[id] = (listener, channels, reach) }
                if spec.transport == .udp {
                    for channel in channels {
                        watch(channel, listener: id, spec: spec, port: listener.port, sharingPort: channels.count > 1)
                    }
                }
                bound.append(listener)
            }
        } catch {
            await stopListening()
            throw error
        }
        return bound
    }

    private func bind(_ spec: ListenerSpec, id: ListenerID) async throws -> [any Channel] {
        do {
            switch spec.transport {
            case .udp:
                let loops = Array(group.makeIterator())
                let count = configuration.udpSocketsPerListener > 0 ? min(configuration.udpSocketsPerListener, loops.count) : loops.count
                guard count > 1 else { return [try await bindUDP(spec, port: spec.port, id: id, on: group, sharingPort: false)] }
                return try await bindSharedUDP(spec, id: id, loops: Array(loops.prefix(count)))
            case .tcp, .tls, .ws, .wss:
                if spec.transport.isSecure, sslContext == nil { throw StartError.tlsNotConfigured(spec) }
                return [try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(.backlog, value: 1024)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        self.initializeAccepted(channel, transport: spec.transport, listener: id)
                    }
                    .bind(host: spec.host, port: spec.port)
                    .get()]
            case .sctp:
                throw StartError.unsupportedTransport(spec)
            }
        } catch let error as StartError {
            throw error
        } catch {
            throw StartError.bindFailed(spec, String(describing: error))
        }
    }

    private func bindUDP(_ spec: ListenerSpec, port: Int, id: ListenerID, on loops: any EventLoopGroup,
                         sharingPort: Bool) async throws -> any Channel {
        // No SO_REUSEADDR: on UDP it lets any other socket with it bind the same port, and the
        // kernel then gives a port 0 bind a port such a socket holds (parallel tests lost datagrams
        // to each other). Only the listener's own sockets share its port, with SO_REUSEPORT.
        try await DatagramBootstrap(group: loops)
            .channelOption(.socketOption(Self.reusePort), value: sharingPort ? 1 : 0)
            // One recvmmsg(2) of up to 16 datagrams per wake-up, then the burst's answers go out
            // together (SIPDatagramHandler). NIO reads again until the socket is empty: at a few
            // datagrams per wake-up that second call found nothing half the time (one system call
            // per two requests), where a socket with more left is simply readable again.
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
            .channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(configuration.udpBufferBytes))
            .channelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(configuration.udpBufferBytes))
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.datagramsPerRead * 65_536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SIPDatagramHandler(transportLayer: self, listener: id)
                    )
                }
            }
            .bind(host: spec.host, port: port)
            .get()
    }

    /// Watches a UDP socket of a listener: when it closes while Tern serves (SwiftNIO closes a
    /// datagram channel on a send or read error it does not expect), another is bound in its place,
    /// on the same event loop and port, so the peers the kernel hashed to it are served again.
    private func watch(_ channel: any Channel, listener id: ListenerID, spec: ListenerSpec, port: Int, sharingPort: Bool) {
        channel.closeFuture.whenComplete { _ in
            let lost = self.state.withLockedValue { state -> Bool in
                guard !state.shuttingDown, var entry = state.listeners[id],
                      let index = entry.channels.firstIndex(where: { $0 === channel }) else { return false }
                entry.channels.remove(at: index)
                state.listeners[id] = entry
                return true
            }
            guard lost else { return }
            self.metrics.udpSocketsRebound.increment()
            // SwiftNIO does not say which error closed it: a send the kernel refused, most likely.
            self.logger.error("UDP socket closed while serving: binding another", metadata: [
                "listener": "\(spec)", "port": "\(port)",
            ])
            self.rebind(listener: id, spec: spec, port: port, on: channel.eventLoop, sharingPort: sharingPort)
        }
    }

    /// Binds a lost UDP socket again, retrying with back-off (50 ms up to 5 s) until it binds or Tern stops.
    private func rebind(listener id: ListenerID, spec: ListenerSpec, port: Int, on loop: any EventLoop, sharingPort: Bool) {
        Task {
            var delay = 0.05
            while !state.withLockedValue({ $0.shuttingDown }) {
                do {
                    let channel = try await bindUDP(spec, port: port, id: id, on: loop, sharingPort: sharingPort)
                    let kept = state.withLockedValue { state -> Bool in
                        guard !state.shuttingDown, state.listeners[id] != nil else { return false }
                        state.listeners[id]?.channels.append(channel)
                        return true
                    }
                    guard kept else {
                        try? await channel.close()
                        return
                    }
                    watch(channel, listener: id, spec: spec, port: port, sharingPort: sharingPort)
                    logger.notice("UDP socket bound again", metadata: ["listener": "\(spec)", "port": "\(port)"])
                    return
                } catch {
                    logger.error("binding a lost UDP socket again failed", metadata: [
                        "listener": "\(spec)", "port": "\(port)", "error": "\(error)", "retry_in_s": "\(delay)",
                    ])
                    try? await Task.sleep(for: .seconds(delay))
                    delay = min(delay * 2, 5)
                }
            }
        }
    }

    /// Datagrams one recvmmsg(2) reads; each gets 64 KiB of the read buffer, the largest a datagram can be.
    private static let datagramsPerRead = 16

    /// SO_REUSEPORT, which NIO does not name.
    private static let reusePort = NIOBSDSocket.Option(rawValue: CInt(SO_REUSEPORT))

    /// One socket per event loop on one port. For port 0, the port is first found by a socket of
    /// its own, closed before the shared ones bind: the kernel hands a port that sockets with
    /// SO_REUSEPORT hold to a new such socket of the same user, so binding the shared sockets to
    /// port 0 could put two Terns (parallel tests) on one port. If the port is taken in between,
    /// another is tried.
    private func bindSharedUDP(_ spec: ListenerSpec, id: ListenerID, loops: [any EventLoop]) async throws -> [any Channel] {
        var attempt = 0
        while true {
            attempt += 1
            var port = spec.port
            if port == 0 {
                let probe = try await bindUDP(spec, port: 0, id: id, on: group, sharingPort: false)
                port = probe.localAddress?.port ?? 0
                try? await probe.close()
            }
            var channels: [any Channel] = []
            do {
                for loop in loops {
                    channels.append(try await bindUDP(spec, port: port, id: id, on: loop, sharingPort: true))
                }
                return channels
            } catch {
                for channel in channels { try? await channel.close() }
                guard spec.port == 0, attempt < 8 else { throw error }
            }
        }
    }

    /// Stops accepting and closes every listener (connections stay until ``shutdown()``).
    public func stopListening() async {
        let channels = state.withLockedValue { state -> [any Channel] in
            let channels = state.listeners.values.filter { $0.bound.spec.transport != .udp }.flatMap(\.channels)
            for key in state.listeners.keys where state.listeners[key]?.bound.spec.transport != .udp {
                state.listeners[key] = nil
            }
            return channels
        }
        for channel in channels { try? await channel.close() }
    }

    /// Closes everything: listeners, then connections.
    public func shutdown() async {
        await stopListening()
        let channels = state.withLockedValue { state -> [any Channel] in
            state.shuttingDown = true
            let channels = state.listeners.values.flatMap(\.channels) + state.connections.values.map(\.channel)
            state.listeners.removeAll()
            state.connections.removeAll()
            state.connectionsByRemote.removeAll()
            return channels
        }
        for channel in channels { try? await channel.close() }
    }

    public var boundListeners: [BoundListener] {
        state.withLockedValue { $0.listeners.values.map(\.bound).sorted { $0.id.rawValue < $1.id.rawValue } }
    }

    public var connectionCount: Int { state.withLockedValue { $0.connections.count } }

    /// Ids of the open connections, oldest first.
    public var connectionIDs: [ConnectionID] { state.withLockedValue { $0.connections.keys.sorted() } }

    // MARK: - Connections

    func initializeAccepted(_ channel: any Channel, transport: SIPTransportProtocol, listener: ListenerID) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(IdleStateHandler(allTimeout: configuration.idleTimeout))
            if transport.isSecure, let sslContext {
                try sync.addHandler(NIOSSLServerHandler(context: sslContext))
            }
            guard let id = registerConnection(channel, transport: transport, listener: listener) else {
                // Over the connection limit: accept, then close at once, so the peer learns quickly.
                channel.close(promise: nil)
                return
            }
            if transport == .ws || transport == .wss {
                try configureWebSocketServer(channel, connection: id, transport: transport, listener: listener)
            } else {
                try sync.addHandler(ByteToMessageHandler(SIPStreamDecoder(maxMessageSize: configuration.maxMessageSize)))
                try sync.addHandler(SIPStreamConnectionHandler(transportLayer: self, connection: id, transport: transport, listener: listener))
            }
        }
    }

    private func configureWebSocketServer(_ channel: any Channel, connection id: ConnectionID,
                                          transport: SIPTransportProtocol, listener: ListenerID) throws {
        let maxSize = configuration.maxMessageSize
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: maxSize,
            shouldUpgrade: { channel, head in
                // RFC 7118 §4.1: the client must offer the "sip" subprotocol, and we echo it.
                let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
                guard offered.contains("sip") else { return channel.eventLoop.makeSucceededFuture(nil) }
                var headers = HTTPHeaders()
                headers.add(name: "Sec-WebSocket-Protocol", value: "sip")
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SIPWebSocketHandler(transportLayer: self, connection: id, transport: transport,
                                            listener: listener, maxMessageSize: maxSize)
                    )
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.removeHandler(name: "tern.ws.refusal", promise: nil)
            }),
            withErrorHandling: true
        )
        try channel.pipeline.syncOperations.addHandler(WebSocketRefusalHandler(), name: "tern.ws.refusal")
        state.withLockedValue { $0.connections[id]?.isWebSocket = true }
    }

    /// Records a new connection; nil when the limit is reached.
    func registerConnection(_ channel: any Channel, transport: SIPTransportProtocol, listener: ListenerID) -> ConnectionID? {
        let remote = channel.remoteAddress
        let local = channel.localAddress
        let id = state.withLockedValue { state -> ConnectionID? in
            guard state.connections.count < configuration.maxConnections, let remote, let local else { return nil }
            let id = ConnectionID(state.nextConnectionID)
            state.nextConnectionID += 1
            state.connections[id] = Connection(id: id, channel: channel, transport: transport, remote: remote,
                                               local: local, listener: listener,
                                               isWebSocket: transport == .ws || transport == .wss)
            state.connectionsByRemote[RemoteKey(transport: transport, remote: remote)] = id
            return id
        }
        guard let id else {
            metrics.connectionsRefused.increment()
            logger.warning("connection refused: limit reached", metadata: ["limit": "\(configuration.maxConnections)"])
            return nil
        }
        metrics.connectionsOpened.increment()
        channel.closeFuture.whenComplete { _ in self.forgetConnection(id) }
        return id
    }

    /// Calls `handler` with the id of every connection that closes (a dead flow, RFC 5626 §5).
    public func onConnectionClosed(_ handler: @escaping @Sendable (ConnectionID) -> Void) {
        closeHandlers.withLockedValue { $0.append(handler) }
    }

    func forgetConnection(_ id: ConnectionID) {
        let (known, shuttingDown) = state.withLockedValue { state -> (Bool, Bool) in
            guard let connection = state.connections.removeValue(forKey: id) else { return (false, state.shuttingDown) }
            let key = RemoteKey(transport: connection.transport, remote: connection.remote)
            if state.connectionsByRemote[key] == id { state.connectionsByRemote[key] = nil }
            return (true, state.shuttingDown)
        }
        guard known, !shuttingDown else { return }
        metrics.connectionsClosed.increment()
        for handler in closeHandlers.withLockedValue({ $0 }) { handler(id) }
    }

    func connection(_ id: ConnectionID) -> Connection? {
        state.withLockedValue { $0.connections[id] }
    }

    /// The listener's socket on the calling event loop when it has one there (a write from
    /// another thread costs a hop to the socket's loop), else its first; with what a UDP
    /// listener's sockets can send to.
    func datagramSocket(_ id: ListenerID) -> (channel: any Channel, reach: DatagramReach?)? {
        state.withLockedValue { state in
            guard let listener = state.listeners[id],
                  let channel = listener.channels.first(where: { $0.eventLoop.inEventLoop }) ?? listener.channels.first
            else { return nil }
            return (channel, listener.reach)
        }
    }

    /// The event loop a UDP send should start on: the caller's, when one of the UDP sockets is
    /// on it, so no send wakes another thread.
    func udpSendLoop() -> any EventLoop {
        state.withLockedValue { state -> (any EventLoop)? in
            var first: (any EventLoop)?
            for listener in state.udpListeners {
                for channel in listener.channels {
                    if channel.eventLoop.inEventLoop { return channel.eventLoop }
                    if first == nil { first = channel.eventLoop }
                }
            }
            return first
        } ?? group.next()
    }

    /// Hands bytes that a transport read to the receiver.
    func deliver(_ bytes: ByteBuffer, meta: InboundMeta) {
        receiver?.received(bytes, from: meta)
    }
}
