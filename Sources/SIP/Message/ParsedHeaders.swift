/// The headers of a message as validation parsed them: immutable, shared by copies of the message
/// until one of them is edited.
///
/// A request's validation parses every header the server works with. A response's parses only what
/// matching and relaying it need, its top Via and CSeq, which the transaction layer and the proxy
/// then read without parsing again: ``isComplete`` tells the two apart.
package final class ParsedHeaders: Sendable {
    /// Every Via when complete, else the top one alone.
    let vias: [SIPVia]
    let from: SIPAddress?
    let to: SIPAddress?
    let cseq: SIPCSeq
    let contacts: SIPContactValue?
    let requestURI: SIPURI?
    /// A request's Call-ID as text: the transaction's mark, the registrar and the proxy's loop
    /// check each read it, and a Call-ID is usually too long to be a String without an allocation.
    let callID: String?
    /// A request's Max-Forwards, which the pipeline reads again to decide 483.
    let maxForwards: Int?
    /// Whether every field above was parsed (a request), not only the top Via and CSeq (a response).
    let isComplete: Bool

    init(vias: [SIPVia], from: SIPAddress?, to: SIPAddress?, cseq: SIPCSeq, contacts: SIPContactValue?, requestURI: SIPURI,
         callID: String?, maxForwards: Int?) {
        self.vias = vias
        self.callID = callID
        self.maxForwards = maxForwards
        self.from = from
        self.to = to
        self.cseq = cseq
        self.contacts = contacts
        self.requestURI = requestURI
        self.isComplete = true
    }

    /// What a response's validation parsed.
    init(topVia: SIPVia, cseq: SIPCSeq) {
        self.vias = [topVia]
        self.from = nil
        self.to = nil
        self.cseq = cseq
        self.contacts = nil
        self.requestURI = nil
        self.callID = nil
        self.maxForwards = nil
        self.isComplete = false
    }

    func replacingTopVia(_ via: SIPVia) -> ParsedHeaders? {
        guard isComplete, let requestURI else { return nil }
        return ParsedHeaders(vias: [via] + vias.dropFirst(), from: from, to: to, cseq: cseq, contacts: contacts, requestURI: requestURI,
                             callID: callID, maxForwards: maxForwards)
    }
}

extension ParsedHeaders {
    /// Whether these parsed headers hold a value of this header. An edit of any other (Route,
    /// Record-Route, Allow, ...) leaves them true, and they are kept through it.
    static func holds(_ name: SIPHeaderName) -> Bool {
        guard let index = name.knownIndex, index < 64 else { return false }
        return heldMask & (1 << UInt64(index)) != 0
    }

    private static let heldMask: UInt64 = [SIPHeaderName.via, .from, .to, .callID, .cseq, .maxForwards, .contact]
        .compactMap(\.knownIndex).reduce(0) { $0 | (1 << UInt64($1)) }
}

extension SIPMessage {
    /// Called by every edit of the header lines: what validation parsed goes when the edit touches a
    /// header it holds, and stays otherwise (when every edit dropped it, removing Tern's own Route
    /// made the proxy parse an in-dialog request's headers again). nil: any header may change.
    mutating func forgetParsed(editing name: SIPHeaderName?) {
        if let name, !ParsedHeaders.holds(name) { return }
        parsed = nil
    }

    /// Replaces the first Via value (its line keeps any later values), keeping what validation parsed.
    public mutating func replaceTopVia(_ via: SIPVia) {
        let kept = parsed
        dropFirstValue(.via)
        prependHeader(.via, via.description)
        if let kept, !kept.vias.isEmpty { parsed = kept.replacingTopVia(via) }
    }

    /// Puts `via` on top, as an element does before it sends a request on. With the request's
    /// `cseq`, the transaction layer then reads both back without parsing them.
    public mutating func prependVia(_ via: SIPVia, cseq: SIPCSeq?) {
        prependHeader(.via, via.description)
        if let cseq { parsed = ParsedHeaders(topVia: via, cseq: cseq) }
    }
}
