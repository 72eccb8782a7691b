import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`), or one address.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    private let network: [UInt8]
    public let prefixLength: Int

    /// Parses `ADDRESS/BITS` or a bare address (all bits); nil when either part is not valid.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let addressText = parts.first, let bytes = IPNetwork.bytes(of: addressText) else { return nil }
        let bits = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
        guard let bits, (0...bytes.count * 8).contains(bits) else { return nil }
        prefixLength = bits
        network = IPNetwork.masked(bytes, bits: bits)
    }

    /// Whether `host` (an IP literal, brackets allowed) lies in the network. Names never match.
    public func contains(host: String) -> Bool {
        guard let bytes = IPNetwork.bytes(of: host), bytes.count == network.count else { return false }
        return IPNetwork.masked(bytes, bits: prefixLength) == network
    }

    public var description: String {
        let address = (try? SocketAddress(packedIPAddress: ByteBuffer(bytes: network), port: 0))?.ipAddress ?? "?"
        return address + "/" + String(prefixLength)
    }

    static func bytes(of host: String) -> [UInt8]? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var bytes = [UInt8](repeating: 0, count: 16)
        if bare.contains(":") {
            return inet_pton(AF_INET6, bare, &bytes) == 1 ? bytes : nil
        }
        return inet_pton(AF_INET, bare, &bytes) == 1 ? Array(bytes.prefix(4)) : nil
    }

    private static func masked(_ bytes: [UInt8], bits: Int) -> [UInt8] {
        var result = bytes
        for index in result.indices {
            let keep = max(0, min(8, bits - index * 8))
            result[index] &= keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return result
    }
}
