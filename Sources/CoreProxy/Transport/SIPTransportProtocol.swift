/// The transports SIP runs over (RFC 3261 §18, RFC 7118 for WebSocket).
public enum SIPTransportProtocol: String, Sendable, Hashable, CaseIterable, Codable {
    case udp, tcp, tls, ws, wss
    /// SCTP (RFC 4168) is reserved: this kernel has no SCTP sockets, so no listener can bind it yet.
    case sctp

    /// The token used in Via sent-protocol and in `transport=` URI parameters.
    public var viaToken: String {
        switch self {
        case .udp: "UDP"
        case .tcp: "TCP"
        case .tls: "TLS"
        case .ws: "WS"
        case .wss: "WSS"
        case .sctp: "SCTP"
        }
    }

    /// Reliable transports do not retransmit and run timers that are zero on them (RFC 3261 §17).
    public var isReliable: Bool { self != .udp }

    /// Stream transports frame by Content-Length; datagrams and WebSocket messages carry one message each.
    public var isStream: Bool { self == .tcp || self == .tls || self == .sctp }

    public var isSecure: Bool { self == .tls || self == .wss }

    /// Default port when a URI or Via names none (RFC 3261 §19.1.2, RFC 7118 §5).
    public var defaultPort: Int {
        switch self {
        case .tls: 5061
        case .ws: 80
        case .wss: 443
        default: 5060
        }
    }

    /// Reads a Via transport token or `transport=` value.
    public init?(token: String) {
        switch token.lowercased() {
        case "udp": self = .udp
        case "tcp": self = .tcp
        case "tls": self = .tls
        case "ws": self = .ws
        case "wss": self = .wss
        case "sctp": self = .sctp
        default: return nil
        }
    }
}

/// Where a listener binds: `PROTO:HOST:PORT`, IPv6 hosts in brackets, port 0 for a free one.
public struct ListenerSpec: Sendable, Hashable, CustomStringConvertible {
    public var transport: SIPTransportProtocol
    public var host: String
    public var port: Int

    public init(transport: SIPTransportProtocol, host: String, port: Int) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case badFormat(String)
        case unknownTransport(String)
        case badPort(String)

        public var description: String {
            switch self {
            case .badFormat(let text): "expected PROTO:HOST:PORT, got '\(text)'"
            case .unknownTransport(let text): "unknown transport '\(text)' (udp, tcp, tls, ws, wss)"
            case .badPort(let text): "bad port '\(text)' (0-65535)"
            }
        }
    }

    /// Parses `udp:127.0.0.1:5060`, `tls:[::1]:0`, `ws:0.0.0.0:8080`.
    public init(parsing text: String) throws(ParseError) {
        guard let firstColon = text.firstIndex(of: ":") else { throw .badFormat(text) }
        let protoText = String(text[..<firstColon])
        guard let transport = SIPTransportProtocol(token: protoText) else { throw .unknownTransport(protoText) }
        let rest = text[text.index(after: firstColon)...]
        guard let lastColon = rest.lastIndex(of: ":") else { throw .badFormat(text) }
        var host = String(rest[..<lastColon])
        let portText = String(rest[rest.index(after: lastColon)...])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]") else { throw .badFormat(text) }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw .badFormat(text)
        }
        guard !host.isEmpty else { throw .badFormat(text) }
        guard let port = Int(portText), (0...65_535).contains(port) else { throw .badPort(portText) }
        self.init(transport: transport, host: host, port: port)
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[" + host + "]" : host
        return transport.rawValue + ":" + shownHost + ":" + String(port)
    }
}
