/// Why bytes are not an acceptable SIP message. Each case maps to one response in ``SIPStatus/init(_:)``.
public enum SIPParseError: Error, Sendable, Hashable {
    /// Nothing but whitespace, or no start line at all.
    case emptyMessage
    /// The request line or status line does not follow RFC 3261 §7.1/§7.2; the text says how.
    case malformedStartLine(String)
    /// A SIP-Version other than SIP/2.0 (RFC 3261 §8.2.2.1 → 505).
    case unsupportedVersion(String)
    /// A header line without a colon, or a header name that is not a token.
    case malformedHeaderLine
    /// The header section or the whole message is larger than the configured limit (→ 513).
    case messageTooLarge(limit: Int)
    /// Content-Length is not a non-negative decimal number.
    case invalidContentLength
    /// More than one Content-Length header.
    case multipleContentLength
    /// Content-Length announces more bytes than the datagram carries (RFC 4475 §3.1.2.4).
    case bodyShorterThanContentLength(announced: Int, received: Int)
    /// A header every request must carry is absent (RFC 3261 §8.1.1).
    case missingHeader(SIPHeaderName)
    /// A header that may occur once occurs more than once (RFC 4475 §3.1.2.19).
    case duplicateHeader(SIPHeaderName)
    /// A header value does not follow its grammar; the text names the fault.
    case malformedHeader(SIPHeaderName, String)
    /// The CSeq method differs from the request-line method (RFC 4475 §3.1.2.15).
    case cseqMethodMismatch
    /// The Request-URI cannot be parsed; the text names the fault.
    case malformedRequestURI(String)
    /// The Request-URI scheme is not one Tern serves (→ 416, RFC 3261 §8.2.2.1).
    case unsupportedURIScheme(String)
    /// The status code of a response is not three digits from 100 to 699.
    case invalidStatusCode
}
