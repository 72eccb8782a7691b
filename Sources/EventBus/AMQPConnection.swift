import CRabbitMQ
import Foundation

/// One broker of the configured list.
public struct AMQPBroker: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var virtualHost: String

    /// `amqp://user:password@host:port/vhost` (defaults guest, guest, 5672, `/`).
    public init?(uri: String) {
        guard uri.hasPrefix("amqp://") else { return nil }
        var rest = Substring(uri.dropFirst(7))
        user = "guest"
        password = "guest"
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let parts = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            user = (parts.first.map(String.init) ?? "guest").removingPercentEncoding ?? "guest"
            password = (parts.count > 1 ? String(parts[1]) : "").removingPercentEncoding ?? ""
        }
        let hostPart = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let vhost = hostPart.count > 1 ? String(hostPart[1]) : ""
        virtualHost = vhost.isEmpty ? "/" : (vhost.removingPercentEncoding ?? vhost)
        let address = hostPart.first.map(String.init) ?? ""
        if let colon = address.lastIndex(of: ":"), let number = Int(address[address.index(after: colon)...]) {
            host = String(address[..<colon])
            port = number
        } else {
            host = address
            port = 5672
        }
        guard !host.isEmpty else { return nil }
    }

    public var description: String { "amqp://\(user)@\(host):\(port)\(virtualHost == "/" ? "/" : "/" + virtualHost)" }
}

/// One AMQP connection with channel 1 open. librabbitmq calls block, so each connection belongs
/// to one thread for its whole life; closing happens when the last reference goes.
final class AMQPConnection {
    let state: amqp_connection_state_t

    private init(_ state: amqp_connection_state_t) {
        self.state = state
    }

    deinit {
        amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        amqp_destroy_connection(state)
    }

    /// Connects (2 s at most for the TCP handshake), logs in and opens channel 1; nil on any failure.
    static func open(_ broker: AMQPBroker, heartbeat: Int) -> AMQPConnection? {
        guard let state = amqp_new_connection() else { return nil }
        let connection = AMQPConnection(state)
        guard let socket = amqp_tcp_socket_new(state) else { return nil }
        guard tern_amqp_open(socket, broker.host, Int32(broker.port), 2000) == AMQP_STATUS_OK.rawValue else { return nil }
        let login = broker.virtualHost.withCString { vhost in
            broker.user.withCString { user in
                broker.password.withCString { password in tern_amqp_login_plain(state, vhost, Int32(heartbeat), user, password) }
            }
        }
        guard tern_amqp_reply_ok(login) != 0 else { return nil }
        amqp_channel_open(state, 1)
        guard tern_amqp_reply_ok(amqp_get_rpc_reply(state)) != 0 else { return nil }
        return connection
    }
}
