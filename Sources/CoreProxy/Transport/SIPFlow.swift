public import NIOCore
public import SIP

/// Identifies one accepted or opened connection for its whole life. Later stages use it to send
/// back over the same connection (RFC 5626 flows) and to trust a connection that authenticated.
public struct ConnectionID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { "conn-" + String(rawValue) }

    public static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Identifies a bound listener.
public struct ListenerID: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int

    public init(_ rawValue: Int) { self.rawValue = rawValue }

    public var description: String { "listener-" + String(rawValue) }
}

/// The path back to a peer: a UDP listener and the peer's address, or one connection.
public enum SIPFlow: Sendable, Hashable, CustomStringConvertible {
    case datagram(listener: ListenerID, remote: SocketAddress)
    case connection(ConnectionID)

    public var description: String {
        switch self {
        case .datagram(let listener, let remote): "\(listener)->\(remote)"
        case .connection(let id): id.description
        }
    }
}

/// A message as it arrived: what it is, where from, over what.
public struct InboundMessage: Sendable {
    public var message: SIPMessage
    public var transport: SIPTransportProtocol
    public var source: SocketAddress
    public var local: SocketAddress
    public var flow: SIPFlow
    public var listener: ListenerID

    public init(message: SIPMessage, transport: SIPTransportProtocol, source: SocketAddress,
                local: SocketAddress, flow: SIPFlow, listener: ListenerID) {
        self.message = message
        self.transport = transport
        self.source = source
        self.local = local
        self.flow = flow
        self.listener = listener
    }

    /// The connection the message came over, nil for UDP.
    public var connectionID: ConnectionID? {
        if case .connection(let id) = flow { return id }
        return nil
    }
}

/// Why a send failed; the caller (a transaction) sees it as a transport error (RFC 3261 §17.1.4).
public enum TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The connection of that flow is closed: nothing can reach the peer that way any more.
    case flowClosed(SIPFlow)
    /// No listener of this transport and address family to send from.
    case noListener(SIPTransportProtocol)
    /// The destination cannot be resolved to an address.
    case unresolvable(String)
    /// Connecting to the destination failed.
    case connectFailed(String)
    /// The transport cannot originate connections (WebSocket peers connect to us).
    case cannotOriginate(SIPTransportProtocol)
    /// Too many connections open already.
    case connectionLimit
    /// The kernel would refuse a datagram to this address from our socket (``DatagramReach``).
    case unreachable(String, reason: String)

    public var description: String {
        switch self {
        case .flowClosed(let flow): "flow \(flow) is closed"
        case .noListener(let transport): "no \(transport.rawValue) listener to send from"
        case .unresolvable(let host): "cannot resolve \(host)"
        case .connectFailed(let why): "connect failed: \(why)"
        case .cannotOriginate(let transport): "cannot open \(transport.rawValue) connections"
        case .connectionLimit: "connection limit reached"
        case .unreachable(let address, let reason): "cannot send to \(address): \(reason)"
        }
    }
}
