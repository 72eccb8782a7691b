import CRabbitMQ
import Foundation
public import Logging
import Metrics
import NIOConcurrencyHelpers

/// Publishes the outbox to a RabbitMQ topic exchange with publisher confirms (AMQP 0-9-1 through
/// librabbitmq, whose calls block: one thread of its own owns the connection). An event leaves
/// the outbox for good only when the broker acks it; nacked ones, and those unconfirmed when the
/// connection fails, go back to the front and are published again after reconnecting (at least
/// once: consumers drop duplicates by `id`). Several brokers may be given; on failure the next is
/// tried, with back-off.
public final class AMQPPublisher: @unchecked Sendable {
    public typealias Broker = AMQPBroker

    public struct Configuration: Sendable {
        public var brokers: [Broker]
        public var exchange: String
        /// Seconds; the broker drops a connection silent for twice this (default 10).
        public var heartbeat: Int
        /// Published but unconfirmed events at most (default 1000).
        public var window: Int
        public var node: String

        public init(brokers: [Broker], exchange: String = "tern.events", heartbeat: Int = 10, window: Int = 1000, node: String) {
            self.brokers = brokers
            self.exchange = exchange
            self.heartbeat = heartbeat
            self.window = window
            self.node = node
        }
    }

    public let configuration: Configuration
    public let outbox: EventOutbox
    private let logger: Logger
    private let stopping = NIOLockedValueBox(false)
    private let finished = NSCondition()
    private var running = false
    private let counts = NIOLockedValueBox((published: 0, confirmed: 0, nacked: 0, reconnects: 0))
    private let publishedCounter = Counter(label: "tern.events.published")
    private let confirmedCounter = Counter(label: "tern.events.confirmed")
    private let connectedGauge = Gauge(label: "tern.events.connected")

    public init(configuration: Configuration, outbox: EventOutbox, logger: Logger) {
        self.configuration = configuration
        self.outbox = outbox
        self.logger = logger
    }

    /// (published, confirmed, nacked, reconnects) so far.
    public var statistics: (published: Int, confirmed: Int, nacked: Int, reconnects: Int) { counts.withLockedValue { $0 } }

    public func start() {
        finished.lock()
        running = true
        finished.unlock()
        let thread = Thread { [self] in
            run()
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        thread.name = "tern-amqp"
        thread.start()
    }

    /// Stops after trying to publish what is left for up to `drain` seconds.
    public func stop(drain: Double = 2) {
        stopping.withLockedValue { $0 = true }
        finished.lock()
        let deadline = Date(timeIntervalSinceNow: drain + 5)
        while running, Date() < deadline { _ = finished.wait(until: deadline) }
        finished.unlock()
        let totals = statistics
        logger.notice("event bus stopped", metadata: [
            "published": "\(totals.published)", "confirmed": "\(totals.confirmed)", "nacked": "\(totals.nacked)",
            "reconnects": "\(totals.reconnects)", "dropped": "\(outbox.droppedTotal)", "left": "\(outbox.depth)",
        ])
    }

    // MARK: - The connection thread

    private func run() {
        var brokerIndex = 0
        var backoff: TimeInterval = 0.2
        var stopDeadline: Date?
        while true {
            if stopping.withLockedValue({ $0 }) {
                if stopDeadline == nil { stopDeadline = Date(timeIntervalSinceNow: 2) }
                if outbox.depth == 0 || Date() > (stopDeadline ?? Date()) { return }
            }
            guard !configuration.brokers.isEmpty else { return }
            let broker = configuration.brokers[brokerIndex % configuration.brokers.count]
            guard let connection = connect(broker) else {
                brokerIndex += 1
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
                continue
            }
            backoff = 0.2
            connectedGauge.record(1)
            logger.notice("event bus connected", metadata: ["broker": "\(broker)"])
            let reason = publishLoop(connection, stopDeadline: &stopDeadline)
            connectedGauge.record(0)
            if let reason {
                counts.withLockedValue { $0.reconnects += 1 }
                logger.warning("event bus connection lost", metadata: ["broker": "\(broker)", "reason": "\(reason)"])
                brokerIndex += 1
            } else {
                return
            }
        }
    }

    /// A connection with its exchange declared and confirms on.
    private func connect(_ broker: Broker) -> AMQPConnection? {
        guard let connection = AMQPConnection.open(broker, heartbeat: configuration.heartbeat) else { return nil }
        let state = connection.state
        configuration.exchange.withCString { exchange in
            _ = amqp_exchange_declare(state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table)
        }
        guard tern_amqp_reply_ok(amqp_get_rpc_reply(state)) != 0 else { return nil }
        amqp_confirm_select(state, 1)
        guard tern_amqp_reply_ok(amqp_get_rpc_reply(state)) != 0 else { return nil }
        return connection
    }

    /// Publishes and collects confirms until the connection fails (returns why) or Tern stops
    /// with the outbox empty (returns nil).
    private func publishLoop(_ connection: AMQPConnection, stopDeadline: inout Date?) -> String? {
        let state = connection.state
        var nextTag: UInt64 = 1
        var unconfirmed: [(tag: UInt64, event: TernEvent)] = []
        var reason: String?
        defer {
            if !unconfirmed.isEmpty { outbox.putBack(unconfirmed.map(\.event)) }
        }
        while reason == nil {
            if stopping.withLockedValue({ $0 }) {
                if stopDeadline == nil { stopDeadline = Date(timeIntervalSinceNow: 2) }
                if (outbox.depth == 0 && unconfirmed.isEmpty) || Date() > (stopDeadline ?? Date()) { return nil }
            }
            let room = configuration.window - unconfirmed.count
            let batch = room > 0 ? outbox.take(max: min(room, 256), timeout: unconfirmed.isEmpty ? 0.1 : 0) : []
            for (offset, event) in batch.enumerated() {
                let body = Array(event.json(node: configuration.node).utf8)
                let status = configuration.exchange.withCString { exchange in
                    event.type.withCString { key in
                        event.id.withCString { id in
                            body.withUnsafeBytes { bytes in
                                tern_amqp_publish_json(state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_cstring_bytes(id),
                                                       tern_amqp_bytes(bytes.baseAddress, bytes.count))
                            }
                        }
                    }
                }
                guard status == AMQP_STATUS_OK.rawValue else {
                    outbox.putBack(Array(batch[offset...]))
                    reason = String(cString: amqp_error_string2(status))
                    break
                }
                unconfirmed.append((nextTag, event))
                nextTag += 1
                counts.withLockedValue { $0.published += 1 }
                publishedCounter.increment()
            }
            guard reason == nil else { break }
            // Read what the broker sent (confirms; heartbeats are handled inside the call).
            while true {
                let frame = tern_amqp_wait_frame(state, unconfirmed.isEmpty ? 0 : 5)
                if frame.status == AMQP_STATUS_TIMEOUT.rawValue { break }
                guard frame.status == AMQP_STATUS_OK.rawValue else {
                    reason = String(cString: amqp_error_string2(frame.status))
                    break
                }
                guard frame.is_method != 0 else { continue }
                switch frame.method {
                case AMQP_BASIC_ACK_METHOD:
                    let before = unconfirmed.count
                    unconfirmed.removeAll { frame.multiple != 0 ? $0.tag <= frame.delivery_tag : $0.tag == frame.delivery_tag }
                    let acked = before - unconfirmed.count
                    counts.withLockedValue { $0.confirmed += acked }
                    confirmedCounter.increment(by: acked)
                case AMQP_BASIC_NACK_METHOD:
                    let returned = unconfirmed.filter { frame.multiple != 0 ? $0.tag <= frame.delivery_tag : $0.tag == frame.delivery_tag }
                    unconfirmed.removeAll { frame.multiple != 0 ? $0.tag <= frame.delivery_tag : $0.tag == frame.delivery_tag }
                    counts.withLockedValue { $0.nacked += returned.count }
                    outbox.putBack(returned.map(\.event))
                case AMQP_CHANNEL_CLOSE_METHOD, AMQP_CONNECTION_CLOSE_METHOD:
                    reason = "closed by the broker"
                default:
                    break
                }
                if reason != nil { break }
                amqp_maybe_release_buffers(state)
            }
        }
        return reason
    }
}
