public import NIOCore
public import SIP

/// What a policy says about a REGISTER before any binding changes.
public enum RegistrationReview: Sendable {
    /// Refused with this status and header lines.
    case refuse(SIPStatus, headers: [(SIPHeaderName, String)])
    /// Accepted: the bindings live under `aor` (nil: the To URI's own AOR), and the 200 OK gains
    /// `responseHeaders`.
    case accept(aor: String?, responseHeaders: [(SIPHeaderName, String)])
}

/// A feature that decides about registrations and addresses (IMS: barring, implicit registration
/// sets, P-Associated-URI, Service-Route, the visited-network check, tel URIs).
public protocol RegistrationPolicy: Sendable {
    func review(_ request: SIPMessage, to: SIPURI) -> RegistrationReview
    /// The AOR whose bindings reach `uri` (any identity of a user's set, a tel URI), or nil when the
    /// policy has no say and the URI's own AOR applies.
    func locationAOR(for uri: SIPURI) -> String?
    /// A REGISTER succeeded (`kind`: 0 initial, 1 re-registration, 2 de-registration, as TS 29.228's
    /// RegistrationType); `response` is the 200 OK it got, `source` where the REGISTER came from.
    func registered(_ request: SIPMessage, response: SIPMessage, aor: String, kind: Int, source: SocketAddress)
    /// Where a request for a number no user has goes (IMS breakout toward a BGCF or PSTN gateway),
    /// asked after the routing rules had no say; nil leaves it to the proxy's own rules.
    func breakout(for uri: SIPURI) -> Breakout?
}

/// What becomes of a request for a telephone number that no local user has.
public enum Breakout: Sendable {
    /// Sent on through this URI (a Route; the Request-URI stays the number).
    case route(SIPURI)
    /// Answered 404: there is nowhere to send it.
    case notFound
}

extension RegistrationPolicy {
    public func registered(_ request: SIPMessage, response: SIPMessage, aor: String, kind: Int, source: SocketAddress) {}
    public func breakout(for uri: SIPURI) -> Breakout? { nil }
}
