import CRabbitMQ
import EventBus
import Foundation

/// Reads what Tern published, from a queue bound to the events exchange (tests only; basic.get polling).
final class AMQPTestConsumer {
    private let state: amqp_connection_state_t
    let queue: String

    init(uri: String, queue: String = "test-" + UUID().uuidString, durable: Bool = false, exchange: String = "tern.events") throws {
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
              tern_amqp_bind_queue(state, 1, exchange, queue, durable ? 1 : 0, "#") == 0 else {
            throw TernTestFailure("cannot bind a queue to \(exchange)")
        }
    }

    deinit {
        amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        amqp_destroy_connection(state)
    }

    /// Messages (JSON objects) until `count` arrived or `timeout` passed.
    func receive(count: Int, timeout: TimeInterval) throws -> [[String: Any]] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        var received: [[String: Any]] = []
        while received.count < count, Date() < deadline {
            var message = amqp_message_t()
            let got = queue.withCString { name in tern_amqp_get(state, 1, amqp_cstring_bytes(name), &message) }
            if got < 0 { throw TernTestFailure("basic.get failed") }
            if got == 0 {
                Thread.sleep(forTimeInterval: 0.02)
                continue
            }
            let body = Data(bytes: message.body.bytes, count: message.body.len)
            amqp_destroy_message(&message)
            if let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] { received.append(object) }
        }
        return received
    }
}

/// The test broker `scripts/services.sh start` runs.
enum AMQPTestService {
    static var uri: String? { ProcessInfo.processInfo.environment["TERN_TEST_AMQP_URI"].flatMap { $0.isEmpty ? nil : $0 } }
    /// Always under `make test` (which sets TERN_REQUIRE_SERVICES); with `swift test` only when the URI is set.
    static var enabled: Bool { uri != nil || ProcessInfo.processInfo.environment["TERN_REQUIRE_SERVICES"] == "1" }
}
