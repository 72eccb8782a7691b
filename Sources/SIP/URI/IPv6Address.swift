/// A 128-bit IPv6 address parsed from text (RFC 4291 §2.2), used to validate and compare IPv6
/// references in SIP URIs and Via headers (RFC 5118) without touching sockets.
public struct IPv6Address: Sendable, Hashable {
    public let groups: [UInt16]

    /// Parses `x:x:x:x:x:x:x:x`, with at most one `::` and an optional dotted IPv4 tail.
    public init?(_ text: some Collection<UInt8>) {
        var bytes = Array(text)
        guard !bytes.isEmpty, bytes.count <= 45 else { return nil }
        // RFC 5118 §4.10: RFC 3261's ABNF let "x::" be followed by ":" before an IPv4 tail
        // ("2001:db8:::192.0.2.1"); accept that form as the "::" it means.
        if let triple = IPv6Address.tripleColonBeforeIPv4(bytes) { bytes.remove(at: triple) }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        var index = 0
        if bytes.starts(with: [0x3A, 0x3A]) {
            sawDoubleColon = true
            index = 2
        } else if bytes.first == 0x3A {
            return nil
        }
        while index < bytes.count {
            // An IPv4 tail (RFC 4291 §2.2 form 3).
            let rest = bytes[index...]
            if !rest.contains(0x3A), rest.contains(UInt8(ascii: ".")) {
                guard let v4 = IPv6Address.parseIPv4(rest) else { return nil }
                let high = UInt16(v4[0]) << 8 | UInt16(v4[1])
                let low = UInt16(v4[2]) << 8 | UInt16(v4[3])
                if sawDoubleColon { tail += [high, low] } else { head += [high, low] }
                index = bytes.count
                break
            }
            var value: UInt32 = 0
            var digits = 0
            while index < bytes.count, let hex = IPv6Address.hex(bytes[index]) {
                value = value << 4 | UInt32(hex)
                digits += 1
                guard digits <= 4 else { return nil }
                index += 1
            }
            guard digits > 0 else { return nil }
            if sawDoubleColon { tail.append(UInt16(value)) } else { head.append(UInt16(value)) }
            guard index < bytes.count else { break }
            guard bytes[index] == 0x3A else { return nil }
            index += 1
            if index < bytes.count, bytes[index] == 0x3A {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                index += 1
                if index == bytes.count { break }
            } else if index == bytes.count {
                return nil
            }
        }
        let total = head.count + tail.count
        if sawDoubleColon {
            guard total <= 7 else { return nil }
            groups = head + [UInt16](repeating: 0, count: 8 - total) + tail
        } else {
            guard total == 8 else { return nil }
            groups = head
        }
    }

    private static func tripleColonBeforeIPv4(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 3 else { return nil }
        for index in 0...(bytes.count - 3) where bytes[index] == 0x3A && bytes[index + 1] == 0x3A && bytes[index + 2] == 0x3A {
            let tail = bytes[(index + 3)...]
            return !tail.contains(0x3A) && tail.contains(UInt8(ascii: ".")) ? index : nil
        }
        return nil
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    /// Dotted-quad IPv4, each part 0–255.
    package static func parseIPv4(_ bytes: some Collection<UInt8>) -> [UInt8]? {
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            out.append(UInt8(value))
        }
        return out
    }
}
