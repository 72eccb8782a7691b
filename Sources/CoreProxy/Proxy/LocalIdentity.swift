import NIOCore
import NIOConcurrencyHelpers
public import SIP

/// What "this server" means when a URI is read: the domains it serves and the addresses it listens
/// on. A Request-URI or Route naming either is for Tern itself.
public final class LocalIdentity: Sendable {
    private let domains: Set<String>
    private let listeners = NIOLockedValueBox<[BoundListener]>([])

    /// - Parameter domains: the served domains; empty means every domain is served.
    public init(domains: [String]) {
        self.domains = Set(domains.map { $0.lowercased() })
    }

    func setListeners(_ bound: [BoundListener]) {
        listeners.withLockedValue { $0 = bound }
    }

    public var boundListeners: [BoundListener] { listeners.withLockedValue { $0 } }

    /// Whether Tern serves this domain (the registrar's and the proxy's "local" domains).
    public func servesDomain(_ host: String) -> Bool {
        domains.isEmpty || domains.contains(host.lowercased()) || isOwnAddress(host: host, port: nil)
    }

    /// Whether host and port name one of Tern's own listeners (port nil: any of them).
    public func isOwnAddress(host: String, port: Int?) -> Bool {
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let wanted = IPv6Address(bare.utf8) ?? IPv6Address(("::ffff:" + bare).utf8)
        return listeners.withLockedValue { listeners in
            listeners.contains { listener in
                guard let ip = listener.address.ipAddress else { return false }
                if let port, port != listener.port { return false }
                if ip == bare { return true }
                let own = IPv6Address(ip.utf8) ?? IPv6Address(("::ffff:" + ip).utf8)
                return own != nil && own == wanted
            }
        }
    }

    /// Whether a URI (Request-URI or Route) points at this server: one of its addresses (with the
    /// right port, defaulting per transport), or a served domain with no user part.
    public func isSelf(_ uri: SIPURI) -> Bool {
        guard uri.scheme == .sip || uri.scheme == .sips else { return false }
        let transport = uri.transportParameter.flatMap(SIPTransportProtocol.init(token:)) ?? (uri.scheme == .sips ? .tls : .udp)
        if isOwnAddress(host: uri.host, port: uri.port ?? transport.defaultPort) { return true }
        if uri.port == nil, isOwnAddress(host: uri.host, port: nil) { return true }
        return uri.user == nil && !domains.isEmpty && domains.contains(uri.host.lowercased())
    }

    /// The listener to name in Via and Record-Route for a transport and address family.
    public func listener(for transport: SIPTransportProtocol, ipv6: Bool) -> BoundListener? {
        listeners.withLockedValue { listeners in
            listeners.first { $0.spec.transport == transport && ($0.address.protocol == .inet6) == ipv6 }
                ?? listeners.first { $0.spec.transport == transport }
        }
    }

    /// `host:port` of a listener as it goes into Via and Record-Route.
    public static func hostPort(_ listener: BoundListener) -> String {
        let ip = listener.address.ipAddress ?? listener.spec.host
        let host = ip.contains(":") ? "[" + ip + "]" : ip
        return host + ":" + String(listener.port)
    }
}
