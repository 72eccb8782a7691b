/// Random identifiers Tern puts on the wire: tags, branches, Call-IDs (RFC 3261 §19.3: at least
/// 32 bits of randomness; these carry 64).
public enum SIPIdentifiers {
    public static func tag() -> String { hex(UInt64.random(in: .min ... .max)) }

    /// A branch with the RFC 3261 magic cookie.
    public static func branch() -> String { "z9hG4bK" + hex(UInt64.random(in: .min ... .max)) }

    public static func callID() -> String {
        hex(UInt64.random(in: .min ... .max)) + hex(UInt64.random(in: .min ... .max))
    }

    private static func hex(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}
