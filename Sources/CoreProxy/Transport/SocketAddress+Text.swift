import NIOCore

extension SocketAddress {
    /// The IP address of a peer as text, for an address SwiftNIO made from a socket (a datagram's
    /// source, a connection's remote): the text it wrote then. `ipAddress` formats it again on
    /// every call (inet_ntop, a sprintf), which every request's source paid several times over.
    /// Not for an address resolved from a name, whose text is the name.
    var peerIP: String? {
        switch self {
        case .v4(let address): address.host
        case .v6(let address): address.host
        case .unixDomainSocket: nil
        }
    }
}
