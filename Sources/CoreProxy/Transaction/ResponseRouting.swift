import NIOCore
import SIP

/// Where a response to a request goes (RFC 3261 §18.2.2, RFC 3581 §4).
enum ResponseRouting {
    static func flow(for inbound: InboundMessage) -> SIPFlow {
        // Reliable transports: back over the connection the request came on.
        guard case .datagram(let listener, let source) = inbound.flow else { return inbound.flow }
        guard let via = try? inbound.message.topVia() else { return inbound.flow }
        // rport asks for the source port; Tern also answers there when the peer is behind NAT
        // (received differs from sent-by), as every deployed proxy does.
        if via.rport != nil { return inbound.flow }
        let port = via.port ?? 5060
        // The usual case, a peer that names the address it sends from: that source as it is, not
        // an address made again from the Via (NIO wrote the source's host when it read the datagram).
        if via.received == nil, port == source.port, case .v4(let address) = source, address.host == via.host {
            return inbound.flow
        }
        if let received = via.received, let address = try? SocketAddress(ipAddress: received, port: port) {
            return .datagram(listener: listener, remote: address)
        }
        // An IPv6 reference loses its brackets; anything else is taken as it is (no scan per request).
        let host = via.host.utf8.first == UInt8(ascii: "[") ? via.host.trimmingCharacters(in: "[]") : via.host
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            return .datagram(listener: listener, remote: address)
        }
        var fallback = source
        fallback.port = port
        return .datagram(listener: listener, remote: fallback)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var result = Substring(self)
        while let first = result.first, set.contains(first) { result = result.dropFirst() }
        while let last = result.last, set.contains(last) { result = result.dropLast() }
        return String(result)
    }
}
