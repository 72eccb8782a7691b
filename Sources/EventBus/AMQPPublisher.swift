import CRabbitMQ
import Foundation
public import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore

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
        /// Seconds between publishing cycles at least (default 50 ms): under load, events wait up to
        /// this long to go out together; after a quiet spell the first goes at once. Each cycle costs
        /// a sleep, a write and reads of confirms whatever its size: at 5,000 events a second, 20 ms
        /// cycles cost the publisher about 4.0 µs per event, 50 ms 3.0 µs, 100 ms 2.6 µs.
        public var linger: Double

        public init(brokers: [Broker], exchange: String = "tern.events", heartbeat: Int = 10, window: Int = 1000, node: String,
                    linger: Double = 0.05) {
            self.brokers = brokers
            self.exchange = exchange
            self.heartbeat = heartbeat
            self.window = window
            self.node = node
            self.linger = linger
        }
    }

    public let configuration: Configuration
    public let outbox: EventOutbox
    private let logger: Logger
    private let thread = AMQPConnectionThread(name: "tern-amqp")
    /// When a stop gives up on what is left (the connection thread alone touches it).
    private var stopDeadline: Date?
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
        thread.start { [self] in run() }
    }

    /// Stops after trying to publish what is left for up to `drain` seconds.
    public func stop(drain: Double = 2) {
        thread.stop(waitingAtMost: drain + 5)
        let totals = statistics
        logger.notice("event bus stopped", metadata: [
            "published": "\(totals.published)", "confirmed": "\(totals.confirmed)", "nacked": "\(totals.nacked)",
            "reconnects": "\(totals.reconnects)", "dropped": "\(outbox.droppedTotal)", "left": "\(outbox.depth)",
        ])
    }

    // MARK: - The connection thread

    private func run() {
        AMQPConnectionThread.runSessions(brokers: configuration.brokers, shouldStop: { doneStopping(emptyWhen: true) },
                                         connect: connect, session: { connection, broker in
            connectedGauge.record(1)
            logger.notice("event bus connected", metadata: ["broker": "\(broker)"])
            defer { connectedGauge.record(0) }
            return publishLoop(connection)
        }, lost: { broker, reason in
            counts.withLockedValue { $0.reconnects += 1 }
            logger.warning("event bus connection lost", metadata: ["broker": "\(broker)", "reason": "\(reason)"])
        })
    }

    /// Once asked to stop: true when nothing is left to publish (`empty`) or the drain time is up.
    private func doneStopping(emptyWhen empty: Bool) -> Bool {
        guard thread.isStopping else { return false }
        if stopDeadline == nil { stopDeadline = Date(timeIntervalSinceNow: 2) }
        return (outbox.depth == 0 && empty) || Date() > (stopDeadline ?? Date())
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
    private func publishLoop(_ connection: AMQPConnection) -> String? {
        let state = connection.state
        var nextTag: UInt64 = 1
        var unconfirmed = UnconfirmedEvents()
        var reason: String?
        let encoder = AMQPPublishEncoder(channel: 1, frameMax: Int(amqp_get_frame_max(state)))
        var frames: [UInt8] = []
        var lastCycle = NIODeadline.uptimeNanoseconds(0)
        defer {
            if !unconfirmed.isEmpty { outbox.putBack(unconfirmed.all) }
        }
        while reason == nil {
            if doneStopping(emptyWhen: unconfirmed.isEmpty) { return nil }
            outbox.refillFromSpill()
            if unconfirmed.isEmpty, !outbox.waitForEvents(timeout: 0.1) {
                // Idle: still call into librabbitmq, which sends and checks heartbeats there.
                reason = readFrames(state, &unconfirmed)
                continue
            }
            // One cycle per linger at most, however fast events come: a burst goes out in one
            // write and its confirms are read together, instead of a wake-up and a segment per
            // event. Measured from the last cycle, so the first event after a quiet spell goes at
            // once. A sleep is the dear part of a cycle: on the shared VMs we measure on, one
            // costs 50-80 µs of CPU (`nanosleep` alone, charged to the sleeper).
            let sinceLastCycle = Double((NIODeadline.now() - lastCycle).nanoseconds) / 1e9
            if sinceLastCycle < configuration.linger { Thread.sleep(forTimeInterval: configuration.linger - sinceLastCycle) }
            lastCycle = NIODeadline.now()
            reason = readFrames(state, &unconfirmed)
            guard reason == nil else { break }
            let room = configuration.window - unconfirmed.count
            guard room > 0 else { continue }
            let batch = outbox.take(max: min(room, 4096), timeout: 0)
            guard !batch.isEmpty else { continue }
            // The whole batch as frames in one buffer, written at once.
            frames.removeAll(keepingCapacity: true)
            // Each event is copied once here (a retain and a release of its payload; through a
            // buffer pointer the compiler copied it all the same): the outbox moves events into
            // the batch, and the batch itself is what stays unconfirmed.
            for event in batch {
                encoder.appendPublish(into: &frames, exchange: configuration.exchange, routingKey: event.type,
                                      messageID: { event.appendID(into: &$0) },
                                      body: { event.appendJSON(node: configuration.node, into: &$0) })
            }
            let written = frames.withUnsafeBytes { bytes in tern_amqp_send_frames(state, bytes.baseAddress, bytes.count, 5000) }
            guard written == 0 else {
                // Some of the batch may have reached the broker: all of it is published again (at least once).
                outbox.putBack(batch)
                reason = "writing to the broker failed"
                break
            }
            unconfirmed.append(batch, firstTag: nextTag)
            nextTag += UInt64(batch.count)
            counts.withLockedValue { $0.published += batch.count }
            publishedCounter.increment(by: batch.count)
        }
        return reason
    }

    /// Reads every frame the broker has sent, without waiting: confirms (acks remove events for
    /// good, nacks put them back) and a close. Returns why the connection is unusable, or nil.
    private func readFrames(_ state: amqp_connection_state_t, _ unconfirmed: inout UnconfirmedEvents) -> String? {
        // The broker acks many events one frame each: counted once per read, not once per frame.
        var confirmedCount = 0
        defer {
            if confirmedCount > 0 {
                counts.withLockedValue { $0.confirmed += confirmedCount }
                confirmedCounter.increment(by: confirmedCount)
            }
        }
        while true {
            let frame = tern_amqp_wait_frame(state, 0)
            if frame.status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            guard frame.status == AMQP_STATUS_OK.rawValue else { return String(cString: amqp_error_string2(frame.status)) }
            guard frame.is_method != 0 else { continue }
            switch frame.method {
            case AMQP_BASIC_ACK_METHOD:
                confirmedCount += unconfirmed.confirm(tag: frame.delivery_tag, multiple: frame.multiple != 0, keeping: false).count
            case AMQP_BASIC_NACK_METHOD:
                let nacked = unconfirmed.confirm(tag: frame.delivery_tag, multiple: frame.multiple != 0, keeping: true)
                counts.withLockedValue { $0.nacked += nacked.count }
                outbox.putBack(nacked.events)
            case AMQP_CHANNEL_CLOSE_METHOD, AMQP_CONNECTION_CLOSE_METHOD:
                return "closed by the broker"
            default:
                break
            }
            amqp_maybe_release_buffers(state)
        }
    }
}
