public import NIOCore
public import SIP

/// A feature that edits requests as they cross the edge of a trust domain (RFC 3325, RFC 7315):
/// what an untrusted sender may not assert is removed and what the network asserts is added on the
/// way in; what untrusted receivers may not see is removed on the way out.
public protocol TrustPolicy: Sendable {
    /// A request entering routing; `initial` says it starts a dialog or stands alone.
    /// - Returns: a status to refuse the request with, or nil to route it.
    func arriving(_ request: inout SIPMessage, from source: SocketAddress, initial: Bool) -> SIPStatus?
    /// A request about to leave for `peer`.
    func leaving(_ request: inout SIPMessage, to peer: TuningPeer)
    /// A response to `request` about to go back upstream.
    func answering(_ response: inout SIPMessage, to request: SIPMessage)
}

extension TrustPolicy {
    public func answering(_ response: inout SIPMessage, to request: SIPMessage) {}
}
