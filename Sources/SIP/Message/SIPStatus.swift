/// A response status: code plus reason phrase.
public struct SIPStatus: Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var reason: String

    public init(_ code: Int, _ reason: String? = nil) {
        self.code = code
        self.reason = reason ?? SIPStatus.defaultReason(for: code)
    }

    public var description: String { "\(code) \(reason)" }

    public var isProvisional: Bool { code < 200 }
    public var isFinal: Bool { code >= 200 }
    public var isSuccess: Bool { (200..<300).contains(code) }

    public static func defaultReason(for code: Int) -> String {
        switch code {
        case 100: "Trying"
        case 180: "Ringing"
        case 181: "Call Is Being Forwarded"
        case 182: "Queued"
        case 183: "Session Progress"
        case 200: "OK"
        case 202: "Accepted"
        case 301: "Moved Permanently"
        case 302: "Moved Temporarily"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 407: "Proxy Authentication Required"
        case 408: "Request Timeout"
        case 413: "Request Entity Too Large"
        case 415: "Unsupported Media Type"
        case 416: "Unsupported URI Scheme"
        case 420: "Bad Extension"
        case 423: "Interval Too Brief"
        case 480: "Temporarily Unavailable"
        case 481: "Call/Transaction Does Not Exist"
        case 482: "Loop Detected"
        case 483: "Too Many Hops"
        case 484: "Address Incomplete"
        case 486: "Busy Here"
        case 487: "Request Terminated"
        case 488: "Not Acceptable Here"
        case 489: "Bad Event"
        case 500: "Server Internal Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 504: "Server Time-out"
        case 505: "Version Not Supported"
        case 513: "Message Too Large"
        case 555: "Push Notification Service Not Supported"
        case 600: "Busy Everywhere"
        case 603: "Decline"
        case 604: "Does Not Exist Anywhere"
        case 606: "Not Acceptable"
        default: "Unknown"
        }
    }
}

extension SIPStatus {
    /// The response a server sends for a request it could not accept. The reason phrase names
    /// the fault so that whoever reads a capture knows what to fix.
    public init(_ error: SIPParseError) {
        switch error {
        case .emptyMessage: self.init(400, "Empty Message")
        case .malformedStartLine(let why): self.init(400, "Malformed Request-Line: \(why)")
        case .unsupportedVersion: self.init(505)
        case .malformedHeaderLine: self.init(400, "Malformed Header Line")
        case .messageTooLarge: self.init(513)
        case .invalidContentLength: self.init(400, "Bad Content-Length")
        case .multipleContentLength: self.init(400, "Multiple Content-Length")
        case .bodyShorterThanContentLength: self.init(400, "Body Shorter Than Content-Length")
        case .missingHeader(let name): self.init(400, "Missing \(name.canonical)")
        case .duplicateHeader(let name): self.init(400, "Multiple \(name.canonical)")
        case .malformedHeader(let name, let why): self.init(400, "Bad \(name.canonical): \(why)")
        case .cseqMethodMismatch: self.init(400, "CSeq Method Does Not Match Request-Line")
        case .malformedRequestURI(let why): self.init(400, "Bad Request-URI: \(why)")
        case .unsupportedURIScheme: self.init(416)
        case .invalidStatusCode: self.init(400, "Bad Status Code")
        }
    }
}
