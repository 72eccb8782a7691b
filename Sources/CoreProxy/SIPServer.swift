public import NIOCore
public import Logging
public import ServiceLifecycle
import SIP
import NIOConcurrencyHelpers

/// The signalling core as one service: transports, the transaction layer, the inbound stages and
/// the request pipeline, wired in that order.
///
/// A module with work of its own beside requests (sweeps, deliveries) started and stopped with the server.
public protocol ServerFeature: Sendable {
    func start()
    func stop() async
}

/// `run()` binds every listener, reports them through `onListening`, serves until graceful shutdown,
/// then stops accepting, lets live transactions finish (bounded by ``Configuration/drainTimeout``),
/// and closes what is left.
public final class SIPServer: Service {
    public struct Configuration: Sendable {
        public var transport: TransportLayer.Configuration
        public var timers: TransactionTimers
        public var pipeline: RequestPipeline.Configuration
        public var registrar: Registrar.Configuration
        public var proxy: StatefulProxy.Configuration
        /// Digest authentication; nil accepts every request unauthenticated (default nil).
        public var authentication: DigestAuthenticator.Configuration?
        /// Drop a device's bindings when the connection it registered over closes (default true).
        public var removeBindingsOnFlowClose: Bool
        /// How long graceful shutdown waits for live transactions. Default 5 s.
        public var drainTimeout: TimeAmount
        /// What is trimmed from messages to peers on costly links (default none).
        public var tunings: [MessageTuningRule] = []
        /// Disable, in offers to a device that registered media feature tags, the other media (default true).
        public var dropUnregisteredMedia = true

        public init(transport: TransportLayer.Configuration, timers: TransactionTimers = TransactionTimers(),
                    pipeline: RequestPipeline.Configuration = RequestPipeline.Configuration(),
                    registrar: Registrar.Configuration = Registrar.Configuration(),
                    proxy: StatefulProxy.Configuration = StatefulProxy.Configuration(),
                    authentication: DigestAuthenticator.Configuration? = nil,
                    removeBindingsOnFlowClose: Bool = true,
                    drainTimeout: TimeAmount = .seconds(5)) {
            self.transport = transport
            self.timers = timers
            self.pipeline = pipeline
            self.registrar = registrar
            self.proxy = proxy
            self.authentication = authentication
            self.removeBindingsOnFlowClose = removeBindingsOnFlowClose
            self.drainTimeout = drainTimeout
        }
    }

    public let configuration: Configuration
    public let transportLayer: TransportLayer
    public let transactionLayer: TransactionLayer
    public let pipeline: RequestPipeline
    public let inbound: InboundStage
    public let location: LocationService
    public let registrar: Registrar
    public let proxy: StatefulProxy
    public let identity: LocalIdentity
    public let authenticator: DigestAuthenticator?
    /// Named tables with expiry (Kamailio's htable), shared by routing, authentication and the management API.
    public let cache = SharedCache()
    private let group: any EventLoopGroup
    private let logger: Logger
    private let onListening: @Sendable ([BoundListener]) -> Void
    private let features = NIOLockedValueBox<[any ServerFeature]>([])

    /// Installs a registration policy (IMS) for the registrar and the proxy's lookups alike.
    public func setRegistrationPolicy(_ policy: any RegistrationPolicy) {
        registrar.setPolicy(policy)
        proxy.setRegistrationPolicy(policy)
    }

    /// Adds a feature that starts once bindings are restored and listeners are up, and stops after
    /// the transactions have drained, before the transports close.
    public func addFeature(_ feature: any ServerFeature) {
        features.withLockedValue { $0.append(feature) }
    }

    /// - Parameters:
    ///   - bindingStore: where bindings survive restarts; nil keeps them in memory only.
    ///   - clock: wall clock of the location service (tests inject one).
    public init(configuration: Configuration, group: any EventLoopGroup, logger: Logger,
                bindingStore: (any BindingStore)? = nil, clock: any LocationClock = SystemLocationClock(),
                credentials: any CredentialStore = FileCredentialStore(entries: []),
                onListening: @escaping @Sendable ([BoundListener]) -> Void = { _ in }) throws {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.onListening = onListening
        transportLayer = try TransportLayer(configuration: configuration.transport, group: group, logger: logger)
        transactionLayer = TransactionLayer(sender: transportLayer, timers: configuration.timers,
                                            tuner: MessageTuner(rules: configuration.tunings,
                                                                dropUnregisteredMedia: configuration.dropUnregisteredMedia),
                                            statelessMethods: configuration.registrar.statelessReplies ? [.register] : [])
        pipeline = RequestPipeline(configuration: configuration.pipeline, logger: logger)
        let parser = SIPMessageParser(limits: .init(maxMessageSize: configuration.transport.maxMessageSize))
        inbound = InboundStage(parser: parser, transactions: transactionLayer, sender: transportLayer, logger: logger)
        location = LocationService(store: bindingStore, clock: clock, logger: logger)
        identity = LocalIdentity(domains: configuration.registrar.domains)
        registrar = Registrar(configuration: configuration.registrar, location: location, identity: identity, logger: logger)
        proxy = StatefulProxy(configuration: configuration.proxy, transactions: transactionLayer, transport: transportLayer,
                              location: location, identity: identity, logger: logger)
        location.addObserver(proxy)
        location.addObserver(registrar.pushWakeTable)
        proxy.setPushWakeTable(registrar.pushWakeTable)
        pipeline.register(registrar)
        pipeline.setProxy(proxy, identity: identity)
        if let authentication = configuration.authentication {
            let authenticator = DigestAuthenticator(configuration: authentication, credentials: credentials, cache: cache, logger: logger)
            pipeline.setAuthenticator(authenticator)
            transportLayer.onConnectionClosed { id in authenticator.connectionClosed(id) }
            self.authenticator = authenticator
        } else {
            authenticator = nil
        }
        transactionLayer.setUser(pipeline)
        transportLayer.setReceiver(inbound)
        if configuration.removeBindingsOnFlowClose {
            transportLayer.onConnectionClosed { [location] id in location.removeBindings(on: id) }
        }
    }

    public func run() async throws {
        try await location.restore()
        location.startExpiry(on: group.next())
        let listeners: [BoundListener]
        do {
            listeners = try await transportLayer.start()
        } catch {
            await location.shutdown()
            throw error
        }
        identity.setListeners(listeners)
        for listener in listeners {
            logger.notice("listening", metadata: ["listener": "\(listener)"])
        }
        for feature in features.withLockedValue({ $0 }) { feature.start() }
        onListening(listeners)
        try? await gracefulShutdown()
        logger.notice("shutting down: no new connections, finishing transactions")
        await transportLayer.stopListening()
        await drainTransactions()
        for feature in features.withLockedValue({ $0 }).reversed() { await feature.stop() }
        await transportLayer.shutdown()
        await location.shutdown()
    }

    private func drainTransactions() async {
        let deadline = NIODeadline.now() + configuration.drainTimeout
        while transactionLayer.pendingTransactionCount > 0,
              NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}
