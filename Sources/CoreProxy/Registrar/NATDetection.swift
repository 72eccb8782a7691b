import NIOCore
import SIP

/// Whether a registering device is behind NAT, the tests Kamailio's nat_uac_test also uses: the
/// top Via names another address than the packet came from (RFC 3581), or the Contact holds a
/// private address (RFC 1918, RFC 6598) other than the source.
enum NATDetection {
    static func isBehindNAT(request: SIPMessage, contact: SIPURI, source: SocketAddress) -> Bool {
        guard let sourceIP = source.peerIP else { return false }
        if let via = try? request.topVia() {
            let viaHost = via.host.hasPrefix("[") ? String(via.host.dropFirst().dropLast()) : via.host
            let viaPort = via.port ?? (SIPTransportProtocol(token: via.transport) ?? .udp).defaultPort
            if viaHost != sourceIP || viaPort != source.port { return true }
        }
        let contactHost = contact.hostWithoutBrackets
        return contactHost != sourceIP && isPrivateIPv4(contactHost)
    }

    static func isPrivateIPv4(_ host: String) -> Bool {
        guard let octets = IPv6Address.parseIPv4(host.utf8) else { return false }
        switch (octets[0], octets[1]) {
        case (10, _), (192, 168): return true
        case (172, 16...31): return true
        case (100, 64...127): return true
        default: return false
        }
    }
}
