/// The sanity checks a server runs on every request before it is handled (RFC 3261 §8.2, §16.3,
/// and the cases of RFC 4475 §3.1.2). Each failure names its fault for the 400's reason phrase.
extension SIPMessage {
    /// Headers that may appear at most once in a request (RFC 3261 §7.3, §20).
    private static let singleInstance: [SIPHeaderName] = [
        .from, .to, .callID, .cseq, .maxForwards, .contentType, .expires, .minExpires,
        .contentDisposition, .event, .subscriptionState,
    ]

    /// Headers every request and response carries (RFC 3261 §8.1.1, §20); Via first, the one that may repeat.
    private static let required: [SIPHeaderName] = [.via, .from, .to, .callID, .cseq]

    /// The Request-URI schemes a SIP server routes unless told otherwise. A constant: a default
    /// argument written as a literal built and hashed a new set for every request.
    public static let defaultSchemes: Set<String> = ["sip", "sips", "tel"]

    /// Checks what a server needs before it may process a request: required headers present and
    /// single, readable and consistent; scalar values in range.
    ///
    /// - Throws: the first fault found, in a fixed order so the same message always gets the same answer.
    /// - Parameter supportedSchemes: Request-URI schemes the server routes; others get 416.
    public func validateRequest(supportedSchemes: Set<String> = defaultSchemes) throws(SIPParseError) {
        _ = try validatedHeaders(supportedSchemes: supportedSchemes)
    }

    /// ``validateRequest(supportedSchemes:)``, keeping what it parsed for the typed accessors.
    public mutating func validateRequestKeepingParsed(supportedSchemes: Set<String> = defaultSchemes) throws(SIPParseError) {
        let headers = try validatedHeaders(supportedSchemes: supportedSchemes)
        parsed = headers
    }

    private func validatedHeaders(supportedSchemes: Set<String>) throws(SIPParseError) -> ParsedHeaders {
        guard let method else { throw .malformedStartLine("not a request") }
        for name in Self.required where !contains(name) {
            throw .missingHeader(name)
        }
        for name in Self.singleInstance where lineCount(name) > 1 {
            throw .duplicateHeader(name)
        }
        let vias = try vias()
        guard let cseq = try cseq() else { throw .missingHeader(.cseq) }
        if cseq.method != method { throw .cseqMethodMismatch }
        let callID = callID
        if let callID, callID.isEmpty { throw .malformedHeader(.callID, "empty") }
        let from = try from()
        let to = try to()
        let maxForwards = try maxForwards()
        _ = try expires()
        _ = try contentType()
        let contacts = try contacts()
        let uri = try requestURI()
        if !supportedSchemes.contains(uri.scheme.description) {
            throw .unsupportedURIScheme(uri.scheme.description)
        }
        if !uri.headers.isEmpty {
            // RFC 3261 §19.1.5: headers belong in a URI that becomes a request, never in a Request-URI.
            throw .malformedRequestURI("headers are not allowed in a Request-URI")
        }
        return ParsedHeaders(vias: vias, from: from, to: to, cseq: cseq, contacts: contacts, requestURI: uri,
                             callID: callID, maxForwards: maxForwards)
    }

    /// Checks what a proxy needs to pass a response upstream: one Via at least, CSeq and Call-ID readable.
    public func validateResponse() throws(SIPParseError) {
        _ = try validatedResponseHeaders()
    }

    /// ``validateResponse()``, keeping the top Via and CSeq it parsed: matching the response to its
    /// transaction and relaying it read both again.
    public mutating func validateResponseKeepingParsed() throws(SIPParseError) {
        parsed = try validatedResponseHeaders()
    }

    private func validatedResponseHeaders() throws(SIPParseError) -> ParsedHeaders {
        guard statusCode != nil else { throw .invalidStatusCode }
        for name in Self.required where !contains(name) {
            throw .missingHeader(name)
        }
        for name in Self.required.dropFirst() where lineCount(name) > 1 {
            throw .duplicateHeader(name)
        }
        guard let via = try topVia() else { throw .missingHeader(.via) }
        guard let cseq = try cseq() else { throw .missingHeader(.cseq) }
        return ParsedHeaders(topVia: via, cseq: cseq)
    }

    /// Whether an error response can be built and matched: a request (not ACK) with a Via and a
    /// CSeq (STYLE: reply when possible, otherwise drop and count). RFC 4475 §3.3.1 wants a 400 even
    /// when Call-ID, From and To are missing; the response copies what there is.
    public var canBeAnswered: Bool {
        isRequest && method != .ack && contains(.via) && contains(.cseq)
    }
}
