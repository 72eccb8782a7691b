/// Random identifiers Tern puts on the wire: tags, branches, Call-IDs (RFC 3261 §19.3: at least
/// 32 bits of randomness; these carry 64).
public enum SIPIdentifiers {
    public static func tag() -> String { hex(RandomPool.next()) }

    /// A branch with the RFC 3261 magic cookie.
    public static func branch() -> String { "z9hG4bK" + hex(RandomPool.next()) }

    public static func callID() -> String {
        hex(RandomPool.next()) + hex(RandomPool.next())
    }

    /// Sixteen lower-case hex digits, written straight into the string's storage.
    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            writeHex(value, into: buffer, at: 0)
            return 16
        }
    }

    /// `prefix`, then each value as sixteen hex digits, the values apart by `separator`: one
    /// String made once (a branch of three parts joined with `+` is three).
    static func joined(_ prefix: String, hex values: UInt64..., separator: UInt8 = UInt8(ascii: ".")) -> String {
        let count = prefix.utf8.count + values.count * 17 - (values.isEmpty ? 0 : 1)
        return String(unsafeUninitializedCapacity: count) { buffer in
            var offset = 0
            for byte in prefix.utf8 {
                buffer[offset] = byte
                offset += 1
            }
            for (index, value) in values.enumerated() {
                if index > 0 {
                    buffer[offset] = separator
                    offset += 1
                }
                writeHex(value, into: buffer, at: offset)
                offset += 16
            }
            return offset
        }
    }

    private static func writeHex(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        let digits: StaticString = "0123456789abcdef"
        var remaining = value
        for index in stride(from: start + 15, through: start, by: -1) {
            buffer[index] = digits.utf8Start[Int(remaining & 0xF)]
            remaining >>= 4
        }
    }
}
