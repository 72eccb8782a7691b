import CRabbitMQ
import Foundation
public import Logging
import Metrics
import NIOConcurrencyHelpers

/// Takes commands from a durable queue bound to the events exchange and answers each on its
/// `reply_to` queue with its `correlation_id`. A command is acked once it has been answered (or
/// run, when nobody asked for an answer), so a command in progress when Tern or the connection
/// dies is delivered again: at least once, like events. A command that cannot be read is answered
/// with an error and acked too: nothing is requeued forever.
///
/// librabbitmq blocks, so one thread owns the connection; the handler runs as a task and its
/// answer goes back to that thread, which publishes it and acks.
public final class AMQPCommandConsumer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var brokers: [AMQPBroker]
        public var exchange: String
        public var queue: String
        public var bindingKey: String
        /// Commands handled at once at most (basic.qos prefetch).
        public var prefetch: Int
        public var heartbeat: Int

        public init(brokers: [AMQPBroker], exchange: String = "tern.events", queue: String = "tern.commands",
                    bindingKey: String = "command.#", prefetch: Int = 32, heartbeat: Int = 10) {
            self.brokers = brokers
            self.exchange = exchange
            self.queue = queue
            self.bindingKey = bindingKey
            self.prefetch = prefetch
            self.heartbeat = heartbeat
        }
    }

    /// A command's body in, the reply's body out (nil: nothing to send back).
    public typealias Handler = @Sendable ([UInt8]) async -> String?

    private struct Answer {
        var generation: Int
        var deliveryTag: UInt64
        var replyTo: [UInt8]
        var correlationID: [UInt8]
        var body: String?
    }

    public let configuration: Configuration
    private let handler: Handler
    private let logger: Logger
    private let thread = AMQPConnectionThread(name: "tern-commands")
    private let answers = NIOLockedValueBox<[Answer]>([])
    private let counts = NIOLockedValueBox((received: 0, answered: 0, reconnects: 0))
    private let receivedCounter = Counter(label: "tern.commands.received")
    private let answeredCounter = Counter(label: "tern.commands.answered")

    public init(configuration: Configuration, handler: @escaping Handler, logger: Logger) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
    }

    public var statistics: (received: Int, answered: Int, reconnects: Int) { counts.withLockedValue { $0 } }

    public func start() {
        thread.start { [self] in run() }
    }

    /// Stops taking commands; answers that are ready within a second are still sent.
    public func stop() {
        thread.stop(waitingAtMost: 5)
    }

    // MARK: - The connection thread

    private func run() {
        var generation = 0
        AMQPConnectionThread.runSessions(brokers: configuration.brokers, shouldStop: { thread.isStopping }, connect: connect,
                                         session: { connection, broker in
            generation += 1
            logger.notice("command queue connected", metadata: ["broker": "\(broker)", "queue": "\(configuration.queue)"])
            return consume(connection, generation: generation)
        }, lost: { broker, reason in
            counts.withLockedValue { $0.reconnects += 1 }
            logger.warning("command queue connection lost", metadata: ["broker": "\(broker)", "reason": "\(reason)"])
        })
    }

    private func connect(_ broker: AMQPBroker) -> AMQPConnection? {
        guard let connection = AMQPConnection.open(broker, heartbeat: configuration.heartbeat) else { return nil }
        let bound = tern_amqp_bind_queue(connection.state, 1, configuration.exchange, configuration.queue, 1, configuration.bindingKey)
        guard bound == 0, tern_amqp_consume(connection.state, 1, configuration.queue, Int32(configuration.prefetch)) == 0 else {
            logger.error("command queue not set up", metadata: ["queue": "\(configuration.queue)", "exchange": "\(configuration.exchange)"])
            return nil
        }
        return connection
    }

    /// Takes deliveries and sends answers until the connection fails (returns why) or Tern stops (nil).
    private func consume(_ connection: AMQPConnection, generation: Int) -> String? {
        let state = connection.state
        var inFlight = 0
        var stopDeadline: Date?
        while true {
            for answer in answers.withLockedValue({ list in defer { list.removeAll() }; return list }) {
                // A delivery tag belongs to the channel it came on: answers from before a reconnect
                // cannot be acked, and the broker has already given those commands out again.
                guard answer.generation == generation else { continue }
                inFlight -= 1
                if let status = send(answer, on: state) { return status }
            }
            if thread.isStopping {
                if stopDeadline == nil { stopDeadline = Date(timeIntervalSinceNow: 1) }
                if inFlight == 0 || Date() > (stopDeadline ?? Date()) { return nil }
            }
            var envelope = amqp_envelope_t()
            let got = tern_amqp_next_delivery(state, inFlight > 0 || stopDeadline != nil ? 10 : 100, &envelope)
            if got == 0 { continue }
            guard got == 1 else { return String(cString: amqp_error_string2(got)) }
            let body = Self.bytes(envelope.message.body)
            let command = Answer(generation: generation, deliveryTag: envelope.delivery_tag,
                                replyTo: withUnsafePointer(to: &envelope) { Self.bytes(tern_amqp_reply_to($0)) },
                                correlationID: withUnsafePointer(to: &envelope) { Self.bytes(tern_amqp_correlation_id($0)) })
            amqp_destroy_envelope(&envelope)
            inFlight += 1
            counts.withLockedValue { $0.received += 1 }
            receivedCounter.increment()
            Task { [handler, answers] in
                var answer = command
                answer.body = await handler(body)
                answers.withLockedValue { [answer] in $0.append(answer) }
            }
        }
    }

    /// Publishes the answer (when someone waits for it) and acks the command; a failure status ends the connection.
    private func send(_ answer: Answer, on state: amqp_connection_state_t) -> String? {
        if let body = answer.body, !answer.replyTo.isEmpty {
            let bodyBytes = Array(body.utf8)
            let status = answer.replyTo.withUnsafeBytes { replyTo in
                answer.correlationID.withUnsafeBytes { correlation in
                    bodyBytes.withUnsafeBytes { payload in
                        tern_amqp_publish_reply(state, 1, tern_amqp_bytes(replyTo.baseAddress, replyTo.count),
                                                tern_amqp_bytes(correlation.baseAddress, correlation.count),
                                                tern_amqp_bytes(payload.baseAddress, payload.count))
                    }
                }
            }
            guard status == AMQP_STATUS_OK.rawValue else { return String(cString: amqp_error_string2(status)) }
        }
        let acked = amqp_basic_ack(state, 1, answer.deliveryTag, 0)
        guard acked == AMQP_STATUS_OK.rawValue else { return String(cString: amqp_error_string2(acked)) }
        counts.withLockedValue { $0.answered += 1 }
        answeredCounter.increment()
        return nil
    }

    private static func bytes(_ value: amqp_bytes_t) -> [UInt8] {
        guard value.len > 0, let start = value.bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: start, count: value.len))
    }
}
