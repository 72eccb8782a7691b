import NIOCore
import SIP

/// NAT fix-ups on arrival (RFC 3261 §18.2.1, RFC 3581 §4).
enum NATFixups {
    /// Adds `received` to the top Via when the source address differs from its sent-by host, and fills
    /// an empty `rport` with the source port, so responses and later hops reach the peer behind NAT.
    static func stampReceived(_ message: inout SIPMessage, source: SocketAddress) {
        guard let sourceIP = source.peerIP, var via = try? message.topVia() else { return }
        let asksForRport = via.rport != nil
        let hostMatches = addressesEqual(via.host, sourceIP)
        guard !hostMatches || asksForRport else { return }
        if !hostMatches || asksForRport { via.parameters.set("received", sourceIP) }
        if asksForRport, let port = source.port { via.parameters.set("rport", String(port)) }
        // Only the first value changes: replace it in place, keeping any later values on that line.
        message.replaceTopVia(via)
    }

    private static func addressesEqual(_ viaHost: String, _ sourceIP: String) -> Bool {
        let host = viaHost.hasPrefix("[") ? String(viaHost.dropFirst().dropLast()) : viaHost
        if host == sourceIP { return true }
        if let a = IPv6Address(host.utf8), let b = IPv6Address(sourceIP.utf8) { return a == b }
        return false
    }
}
