public import NIOCore
public import Logging
public import ServiceLifecycle
import SIP

/// The signalling core as one service: transports, the transaction layer, the inbound stages and
/// the request pipeline, wired in that order.
///
/// `run()` binds every listener, reports them through `onListening`, serves until graceful shutdown,
/// then stops accepting, lets live transactions finish (bounded by ``Configuration/drainTimeout``),
/// and closes what is left.
public final class SIPServer: Service {
    public struct Configuration: Sendable {
        public var transport: TransportLayer.Configuration
        public var timers: TransactionTimers
        public var pipeline: RequestPipeline.Configuration
        /// How long graceful shutdown waits for live transactions. Default 5 s.
        public var drainTimeout: TimeAmount

        public init(transport: TransportLayer.Configuration, timers: TransactionTimers = TransactionTimers(),
                    pipeline: RequestPipeline.Configuration = RequestPipeline.Configuration(),
                    drainTimeout: TimeAmount = .seconds(5)) {
            self.transport = transport
            self.timers = timers
            self.pipeline = pipeline
            self.drainTimeout = drainTimeout
        }
    }

    public let configuration: Configuration
    public let transportLayer: TransportLayer
    public let transactionLayer: TransactionLayer
    public let pipeline: RequestPipeline
    public let inbound: InboundStage
    private let logger: Logger
    private let onListening: @Sendable ([BoundListener]) -> Void

    public init(configuration: Configuration, group: any EventLoopGroup, logger: Logger,
                onListening: @escaping @Sendable ([BoundListener]) -> Void = { _ in }) throws {
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
        transportLayer = try TransportLayer(configuration: configuration.transport, group: group, logger: logger)
        transactionLayer = TransactionLayer(sender: transportLayer, timers: configuration.timers)
        pipeline = RequestPipeline(configuration: configuration.pipeline, logger: logger)
        let parser = SIPMessageParser(limits: .init(maxMessageSize: configuration.transport.maxMessageSize))
        inbound = InboundStage(parser: parser, transactions: transactionLayer, sender: transportLayer, logger: logger)
        transactionLayer.setUser(pipeline)
        transportLayer.setReceiver(inbound)
    }

    public func run() async throws {
        let listeners = try await transportLayer.start()
        for listener in listeners {
            logger.notice("listening", metadata: ["listener": "\(listener)"])
        }
        onListening(listeners)
        try? await gracefulShutdown()
        logger.notice("shutting down: no new connections, finishing transactions")
        await transportLayer.stopListening()
        await drainTransactions()
        await transportLayer.shutdown()
    }

    private func drainTransactions() async {
        let deadline = NIODeadline.now() + configuration.drainTimeout
        while transactionLayer.pendingTransactionCount > 0,
              NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}
