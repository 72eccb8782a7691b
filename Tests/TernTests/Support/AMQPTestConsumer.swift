import CRabbitMQ
import EventBus
import Foundation

/// Reads what Tern published, from a queue bound to the events exchange (tests only; basic.get polling).
final class AMQPTestConsumer {
    private let state: amqp_connection_state_t
    let queue: String

    /// `bindingKey` nil: a queue nothing is routed to but by its name (replies).
    init(uri: String, queue: String = "test-" + UUID().uuidString, durable: Bool = false, exchange: String = "tern.events",
         bindingKey: String? = "#") throws {
        guard let broker = AMQPPublisher.Broker(uri: uri), let state = amqp_new_connection(), let socket = amqp_tcp_socket_new(state) else {
            throw TernTestFailure("bad AMQP URI \(uri)")
        }
        self.state = state
        self.queue = queue
        guard tern_amqp_open(socket, broker.host, Int32(broker.port), 5000) == 0 else {
            throw TernTestFailure("cannot connect to \(uri)")
        }
        guard tern_amqp_reply_ok(tern_amqp_login_plain(state, broker.virtualHost, 30, broker.user, broker.password)) != 0 else {
            throw TernTestFailure("AMQP login failed")
        }
        amqp_channel_open(state, 1)
        guard tern_amqp_reply_ok(amqp_get_rpc_reply(state)) != 0,
              tern_amqp_bind_queue(state, 1, exchange, queue, durable ? 1 : 0, bindingKey ?? queue) == 0 else {
            throw TernTestFailure("cannot bind a queue to \(exchange)")
        }
    }

    deinit {
        amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        amqp_destroy_connection(state)
    }

    /// Sends a command to the exchange with this queue as reply_to; the reply whose correlation id matches.
    func request(exchange: String, routingKey: String, body: String, timeout: TimeInterval = 10) throws -> [String: Any] {
        let correlation = UUID().uuidString
        let bytes = Array(body.utf8)
        let status = exchange.withCString { exchangeName in
            routingKey.withCString { key in
                queue.withCString { replyTo in
                    correlation.withCString { id in
                        bytes.withUnsafeBytes { payload in
                            tern_amqp_publish_request(state, 1, amqp_cstring_bytes(exchangeName), amqp_cstring_bytes(key),
                                                      amqp_cstring_bytes(replyTo), amqp_cstring_bytes(id),
                                                      tern_amqp_bytes(payload.baseAddress, payload.count))
                        }
                    }
                }
            }
        }
        guard status == 0 else { throw TernTestFailure("publishing a command failed: \(status)") }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while let message = try next(before: deadline) {
            guard message.correlationID == correlation else { continue }
            return try JSONSerialization.jsonObject(with: message.body) as? [String: Any] ?? [:]
        }
        throw TernTestFailure("no reply to \(body)")
    }

    /// Messages ready in a queue (-1: no such queue).
    func depth(of queue: String) -> Int {
        Int(tern_amqp_queue_depth(state, 1, queue))
    }

    /// Messages (JSON objects) until `count` arrived or `timeout` passed.
    func receive(count: Int, timeout: TimeInterval) throws -> [[String: Any]] {
        try receiveWithMessageIDs(count: count, timeout: timeout).map(\.object)
    }

    /// The same, each with its AMQP `message-id` property ("" when it has none).
    func receiveWithMessageIDs(count: Int, timeout: TimeInterval) throws -> [(object: [String: Any], messageID: String)] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        var received: [(object: [String: Any], messageID: String)] = []
        while received.count < count, let message = try next(before: deadline) {
            if let object = try JSONSerialization.jsonObject(with: message.body) as? [String: Any] { received.append((object, message.messageID)) }
        }
        return received
    }

    /// The next message on the queue (polling basic.get), or nil once `deadline` passed.
    private func next(before deadline: Date) throws -> (body: Data, correlationID: String, messageID: String)? {
        while Date() < deadline {
            var message = amqp_message_t()
            let got = queue.withCString { name in tern_amqp_get(state, 1, amqp_cstring_bytes(name), &message) }
            if got < 0 { throw TernTestFailure("basic.get failed") }
            if got == 0 {
                Thread.sleep(forTimeInterval: 0.01)
                continue
            }
            defer { amqp_destroy_message(&message) }
            let body = Data(bytes: message.body.bytes, count: message.body.len)
            let correlation = message.properties.correlation_id
            let hasCorrelation = message.properties._flags & UInt32(AMQP_BASIC_CORRELATION_ID_FLAG) != 0
            let identifier = message.properties.message_id
            let hasIdentifier = message.properties._flags & UInt32(AMQP_BASIC_MESSAGE_ID_FLAG) != 0
            return (body, hasCorrelation ? String(decoding: UnsafeRawBufferPointer(start: correlation.bytes, count: correlation.len),
                                                  as: UTF8.self) : "",
                    hasIdentifier ? String(decoding: UnsafeRawBufferPointer(start: identifier.bytes, count: identifier.len), as: UTF8.self) : "")
        }
        return nil
    }
}

/// The test broker `scripts/services.sh start` runs.
enum AMQPTestService {
    static var uri: String? { ProcessInfo.processInfo.environment["TERN_TEST_AMQP_URI"].flatMap { $0.isEmpty ? nil : $0 } }
    /// Always under `make test` (which sets TERN_REQUIRE_SERVICES); with `swift test` only when the URI is set.
    static var enabled: Bool { uri != nil || ProcessInfo.processInfo.environment["TERN_REQUIRE_SERVICES"] == "1" }
    /// The services' Python, with pika (the example consumer's library).
    static var python: String? { ProcessInfo.processInfo.environment["TERN_TEST_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } }
}
