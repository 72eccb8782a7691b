import NIOCore

/// Which destinations a UDP listener's socket can send to without the kernel refusing the send.
///
/// SwiftNIO closes a datagram channel on any send error but EMSGSIZE and EHOSTUNREACH, so one
/// datagram the kernel refuses would take the listener's socket down, and with it every peer the
/// kernel hashes to that socket. Anyone who can register a contact can name such a destination:
/// a broadcast address (EACCES), or any non-loopback address when the socket is bound to loopback
/// (EINVAL). Those sends are refused here, as a transport error of the one transaction. Errors
/// that cannot be foreseen (no route, a firewall's EPERM) are met by binding the socket again
/// (``TransportLayer``).
struct DatagramReach: Sendable {
    /// The most a UDP datagram carries over IPv4 (65,535 less the IP and UDP headers); the kernel
    /// answers a larger one with EMSGSIZE.
    static let largestPayload = 65_507

    /// The socket is bound to a loopback address: the kernel lets it reach loopback peers only.
    let loopbackOnly: Bool
    /// This host's IPv4 broadcast addresses (host byte order): 255.255.255.255 and each interface
    /// network's highest address, loopback's 127.255.255.255 among them.
    let broadcasts: Set<UInt32>

    init(local: SocketAddress, broadcasts: Set<UInt32>) {
        self.loopbackOnly = Self.isLoopback(local)
        self.broadcasts = broadcasts
    }

    /// Why the kernel would refuse a datagram to `remote`, or nil when it can go.
    func refusal(for remote: SocketAddress) -> String? {
        if let host = Self.ipv4(remote), broadcasts.contains(host) {
            return "a broadcast address"
        }
        if loopbackOnly, !Self.isLoopback(remote) {
            return "not reachable from a socket bound to loopback"
        }
        return nil
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4:
            return (ipv4(address) ?? 0) >> 24 == 127
        case .v6(let address):
            // sockaddr_in6: family, port, flow info, then the 16 address bytes at offset 8.
            return withUnsafeBytes(of: address.address) { bytes in
                bytes.count >= 24 && bytes[8..<23].allSatisfy { $0 == 0 } && bytes[23] == 1
            }
        case .unixDomainSocket:
            return false
        }
    }

    /// An IPv4 address in host byte order (sockaddr_in: family, port, then the address at offset 4).
    static func ipv4(_ address: SocketAddress) -> UInt32? {
        guard case .v4(let address) = address else { return nil }
        return withUnsafeBytes(of: address.address) { bytes in
            bytes.count >= 8 ? UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) : nil
        }
    }

    /// The limited broadcast address and every IPv4 interface network's broadcast address, read
    /// from the interfaces once at start (an interface added later is not seen).
    static func hostBroadcasts() -> Set<UInt32> {
        var broadcasts: Set<UInt32> = [0xFFFF_FFFF]
        for device in (try? System.enumerateDevices()) ?? [] {
            guard let address = device.address, let host = ipv4(address),
                  let mask = device.netmask, let netmask = ipv4(mask) else { continue }
            // A /31 or /32 has no broadcast address (RFC 3021).
            guard netmask.nonzeroBitCount < 31 else { continue }
            broadcasts.insert(host | ~netmask)
        }
        return broadcasts
    }
}
