/// A SIP request method (RFC 3261 §7.1: any token is a method; case-sensitive).
public struct SIPMethod: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static let invite = SIPMethod("INVITE")
    public static let ack = SIPMethod("ACK")
    public static let bye = SIPMethod("BYE")
    public static let cancel = SIPMethod("CANCEL")
    public static let options = SIPMethod("OPTIONS")
    public static let register = SIPMethod("REGISTER")
    public static let prack = SIPMethod("PRACK")
    public static let subscribe = SIPMethod("SUBSCRIBE")
    public static let notify = SIPMethod("NOTIFY")
    public static let publish = SIPMethod("PUBLISH")
    public static let info = SIPMethod("INFO")
    public static let refer = SIPMethod("REFER")
    public static let message = SIPMethod("MESSAGE")
    public static let update = SIPMethod("UPDATE")

    /// Whether this request can start a dialog, so that a proxy that wants to stay on the dialog's
    /// path Record-Routes it (RFC 3261 §16.6 step 4): INVITE, SUBSCRIBE, REFER (RFC 3515), and
    /// NOTIFY, which may arrive before the 200 to its SUBSCRIBE and set up the dialog (RFC 6665
    /// §4.1.2.4). A MESSAGE, OPTIONS or PUBLISH outside a dialog never gets a route set.
    public var formsDialog: Bool {
        self == .invite || self == .subscribe || self == .refer || self == .notify
    }

    /// Interns the common methods so that parsing them allocates nothing.
    package static func intern(_ bytes: UnsafeRawBufferPointer) -> SIPMethod {
        switch bytes.count {
        case 3:
            if matches(bytes, "ACK") { return .ack }
            if matches(bytes, "BYE") { return .bye }
        case 4:
            if matches(bytes, "INFO") { return .info }
        case 5:
            if matches(bytes, "PRACK") { return .prack }
            if matches(bytes, "REFER") { return .refer }
        case 6:
            if matches(bytes, "INVITE") { return .invite }
            if matches(bytes, "CANCEL") { return .cancel }
            if matches(bytes, "NOTIFY") { return .notify }
            if matches(bytes, "UPDATE") { return .update }
        case 7:
            if matches(bytes, "OPTIONS") { return .options }
            if matches(bytes, "PUBLISH") { return .publish }
            if matches(bytes, "MESSAGE") { return .message }
        case 8:
            if matches(bytes, "REGISTER") { return .register }
        case 9:
            if matches(bytes, "SUBSCRIBE") { return .subscribe }
        default:
            break
        }
        return SIPMethod(String(decoding: bytes, as: UTF8.self))
    }

    @inline(__always)
    private static func matches(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        let pattern = UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        return bytes.elementsEqual(pattern)
    }
}
