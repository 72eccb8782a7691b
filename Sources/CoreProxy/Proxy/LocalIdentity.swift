import NIOCore
import NIOConcurrencyHelpers
public import SIP

/// What "this server" means when a URI is read: the domains it serves and the addresses it listens
/// on. A Request-URI or Route naming either is for Tern itself.
public final class LocalIdentity: Sendable {
    private let domains: Set<String>
    private let listeners = NIOLockedValueBox<[BoundListener]>([])
    /// Each listener's address as 16 bytes (IPv4 mapped) and port, parsed once: a URI is checked
    /// against them on every request.
    private let ownAddresses = NIOLockedValueBox<[(address: IPv6Address, text: String, port: Int)]>([])

    /// - Parameter domains: the served domains; empty means every domain is served.
    public init(domains: [String]) {
        self.domains = Set(domains.map { $0.lowercased() })
    }

    func setListeners(_ bound: [BoundListener]) {
        listeners.withLockedValue { $0 = bound }
        let parsed = bound.compactMap { listener -> (address: IPv6Address, text: String, port: Int)? in
            guard let ip = listener.address.ipAddress, let address = Self.address(ip) else { return nil }
            return (address, ip, listener.port)
        }
        ownAddresses.withLockedValue { $0 = parsed }
    }

    private static func address(_ host: String) -> IPv6Address? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? host.utf8.dropFirst().dropLast() : host.utf8[...]
        if let v6 = IPv6Address(bare) { return v6 }
        guard bare.first.map({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) ?? false else { return nil }
        return IPv6Address(("::ffff:" + String(decoding: bare, as: UTF8.self)).utf8)
    }

    public var boundListeners: [BoundListener] { listeners.withLockedValue { $0 } }

    /// Other names of this server (Kamailio's `alias`): an IMS server URI's host, which its
    /// Service-Route and third-party REGISTERs carry, so a Route naming it is Tern's own.
    private let aliases = NIOLockedValueBox<Set<String>>([])

    public func addAlias(_ host: String) {
        aliases.withLockedValue { _ = $0.insert(host.lowercased()) }
    }

    /// Whether Tern serves this domain (the registrar's and the proxy's "local" domains).
    public func servesDomain(_ host: String) -> Bool {
        domains.isEmpty || domains.contains(host.lowercased()) || isOwnAddress(host: host, port: nil)
    }

    /// Whether host and port name one of Tern's own listeners (port nil: any of them).
    public func isOwnAddress(host: String, port: Int?) -> Bool {
        // IPv4 addresses and names compare as text (RFC 3261 §19.1.4); only IPv6 has several
        // spellings of one address and needs parsing.
        if !host.utf8.contains(UInt8(ascii: ":")) {
            return ownAddresses.withLockedValue { own in
                own.contains { $0.text == host && (port == nil || port == $0.port) }
            }
        }
        guard let wanted = Self.address(host) else { return false }
        return ownAddresses.withLockedValue { own in
            own.contains { $0.address == wanted && (port == nil || port == $0.port) }
        }
    }

    /// Whether a URI (Request-URI or Route) points at this server: one of its addresses (with the
    /// right port, defaulting per transport), or a served domain with no user part.
    public func isSelf(_ uri: SIPURI) -> Bool {
        guard uri.scheme == .sip || uri.scheme == .sips else { return false }
        let transport = uri.transportParameter.flatMap(SIPTransportProtocol.init(token:)) ?? (uri.scheme == .sips ? .tls : .udp)
        if isOwnAddress(host: uri.host, port: uri.port ?? transport.defaultPort) { return true }
        if uri.port == nil, isOwnAddress(host: uri.host, port: nil) { return true }
        if aliases.withLockedValue({ !$0.isEmpty && $0.contains(uri.host.lowercased()) }) {
            return uri.port == nil || listeners.withLockedValue { $0.contains { $0.port == uri.port } }
        }
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
        listener.viaHost + ":" + String(listener.port)
    }
}
