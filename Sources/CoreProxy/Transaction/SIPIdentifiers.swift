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
            let digits: StaticString = "0123456789abcdef"
            var remaining = value
            for index in stride(from: 15, through: 0, by: -1) {
                buffer[index] = digits.utf8Start[Int(remaining & 0xF)]
                remaining >>= 4
            }
            return 16
        }
    }
}
