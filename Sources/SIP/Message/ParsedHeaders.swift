/// The headers of a request as validation parsed them: immutable, shared by copies of the message
/// until one of them is edited.
package final class ParsedHeaders: Sendable {
    let vias: [SIPVia]
    let from: SIPAddress?
    let to: SIPAddress?
    let cseq: SIPCSeq
    let contacts: SIPContactValue?
    let requestURI: SIPURI

    init(vias: [SIPVia], from: SIPAddress?, to: SIPAddress?, cseq: SIPCSeq, contacts: SIPContactValue?, requestURI: SIPURI) {
        self.vias = vias
        self.from = from
        self.to = to
        self.cseq = cseq
        self.contacts = contacts
        self.requestURI = requestURI
    }

    func replacingTopVia(_ via: SIPVia) -> ParsedHeaders {
        ParsedHeaders(vias: [via] + vias.dropFirst(), from: from, to: to, cseq: cseq, contacts: contacts, requestURI: requestURI)
    }
}

extension SIPMessage {
    /// Replaces the first Via value (its line keeps any later values), keeping what validation parsed.
    public mutating func replaceTopVia(_ via: SIPVia) {
        let kept = parsed
        removeFirstValue(.via)
        prependHeader(.via, via.description)
        if let kept, !kept.vias.isEmpty { parsed = kept.replacingTopVia(via) }
    }
}
