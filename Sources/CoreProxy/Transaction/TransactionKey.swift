public import SIP

/// How a message is matched to a transaction (RFC 3261 §17.1.3, §17.2.3).
///
/// RFC 3261 branches (with the magic cookie) match on branch, sent-by and method; ACK matches the
/// INVITE it acknowledges. Older (RFC 2543) requests fall back to Call-ID, CSeq number, From tag,
/// Request-URI and the top Via.
public struct TransactionKey: Sendable, Hashable, CustomStringConvertible {
    enum Identity: Sendable, Hashable {
        case branch(String, sentBy: String)
        case legacy(callID: String, cseq: UInt32, fromTag: String, requestURI: String, topVia: String)
        case clientBranch(String)
    }

    let identity: Identity
    let method: SIPMethod
    /// The hash of identity and method, computed once: tables of tens of thousands of live
    /// transactions compare keys on every probe, and comparing this first spares reading the
    /// strings of each key that merely shares a bucket (1.7% of a proxied MESSAGE went to it).
    private let hash: Int

    init(identity: Identity, method: SIPMethod) {
        self.identity = identity
        self.method = method
        var hasher = Hasher()
        hasher.combine(identity)
        hasher.combine(method)
        self.hash = hasher.finalize()
    }

    public static func == (lhs: TransactionKey, rhs: TransactionKey) -> Bool {
        lhs.hash == rhs.hash && lhs.method == rhs.method && lhs.identity == rhs.identity
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(hash)
    }

    public var description: String {
        switch identity {
        case .branch(let branch, let sentBy): "\(method) \(branch)@\(sentBy)"
        case .legacy(let callID, let cseq, _, _, _): "\(method) legacy \(callID)/\(cseq)"
        case .clientBranch(let branch): "\(method) client \(branch)"
        }
    }

    /// The server transaction a request belongs to. ACK is matched to its INVITE; CANCEL gets its own.
    public static func server(for request: SIPMessage) throws(SIPParseError) -> TransactionKey {
        guard let method = request.method else { throw .malformedStartLine("not a request") }
        guard let via = try request.topVia() else { throw .missingHeader(.via) }
        let matchMethod: SIPMethod = method == .ack ? .invite : method
        if let branch = via.branch, via.hasMagicCookie {
            return TransactionKey(identity: .branch(branch, sentBy: via.sentBy.lowercased()), method: matchMethod)
        }
        guard let cseq = try request.cseq() else { throw .missingHeader(.cseq) }
        let fromTag = (try request.from())?.tag ?? ""
        return TransactionKey(
            identity: .legacy(callID: request.callID ?? "", cseq: cseq.sequence, fromTag: fromTag,
                              requestURI: request.requestURIString ?? "", topVia: via.description),
            method: matchMethod
        )
    }

    /// The INVITE server transaction that a CANCEL cancels (RFC 3261 §9.2): same key, method INVITE.
    public static func inviteCancelled(by cancel: SIPMessage) throws(SIPParseError) -> TransactionKey {
        let key = try server(for: cancel)
        return TransactionKey(identity: key.identity, method: .invite)
    }

    /// The client transaction a response belongs to: top Via branch and CSeq method (RFC 3261 §17.1.3).
    public static func client(for response: SIPMessage) throws(SIPParseError) -> TransactionKey? {
        guard let via = try response.topVia(), let branch = via.branch, let cseq = try response.cseq() else { return nil }
        return TransactionKey(identity: .clientBranch(branch), method: cseq.method == .ack ? .invite : cseq.method)
    }

    /// The key of a client transaction for a request we send.
    public static func client(branch: String, method: SIPMethod) -> TransactionKey {
        TransactionKey(identity: .clientBranch(branch), method: method)
    }
}
