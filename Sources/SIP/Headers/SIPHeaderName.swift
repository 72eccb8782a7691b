/// A SIP header field name, compared case-insensitively, with its compact form where RFC 3261 §7.3.3
/// (and later RFCs) define one.
///
/// Known names are recognised once, while the parser builds the header index, so lookups by a known
/// name compare one small integer. Extension headers keep their name as written.
public struct SIPHeaderName: Sendable, Hashable, CustomStringConvertible {
    /// The canonical spelling used when Tern renders the header.
    public let canonical: String
    /// The lower-cased spelling, the identity of the name.
    package let lowercased: String
    /// The index in ``SIPHeaderName/known``, or nil for an extension header.
    package let knownIndex: UInt8?

    public init(_ name: String) {
        let lower = name.lowercased()
        if let index = SIPHeaderName.indexByName[lower] {
            self = SIPHeaderName.known[Int(index)]
        } else {
            self.canonical = name
            self.lowercased = lower
            self.knownIndex = nil
        }
    }

    private init(known canonical: String, index: UInt8) {
        self.canonical = canonical
        self.lowercased = canonical.lowercased()
        self.knownIndex = index
    }

    public var description: String { canonical }

    public static func == (lhs: SIPHeaderName, rhs: SIPHeaderName) -> Bool {
        if let l = lhs.knownIndex, let r = rhs.knownIndex { return l == r }
        return lhs.lowercased == rhs.lowercased
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(lowercased) }

    /// The compact form (RFC 3261 §7.3.3, RFC 3265, RFC 3515, RFC 3841, RFC 3892, RFC 4028), if any.
    public var compactForm: Character? {
        guard let index = knownIndex else { return nil }
        return SIPHeaderName.compactForms[Int(index)]
    }

    /// Whether several values of this header may be joined with commas on one line (RFC 3261 §7.3.1).
    /// Authorization-type headers carry commas inside a single value and are never split.
    public var isCommaSeparatedList: Bool {
        guard let index = knownIndex else { return false }
        return SIPHeaderName.listHeaders.contains(index)
    }
}

// MARK: - The known names

extension SIPHeaderName {
    private static let table: [(String, Character?)] = [
        ("Via", "v"), ("From", "f"), ("To", "t"), ("Call-ID", "i"), ("CSeq", nil),
        ("Max-Forwards", nil), ("Contact", "m"), ("Route", nil), ("Record-Route", nil),
        ("Path", nil), ("Service-Route", nil), ("Expires", nil), ("Min-Expires", nil),
        ("Content-Length", "l"), ("Content-Type", "c"), ("Content-Encoding", "e"),
        ("Content-Disposition", nil), ("Accept", nil), ("Accept-Encoding", nil),
        ("Event", "o"), ("Allow-Events", "u"), ("Subscription-State", nil), ("SIP-ETag", nil),
        ("SIP-If-Match", nil), ("Supported", "k"), ("Require", nil), ("Proxy-Require", nil),
        ("Unsupported", nil), ("Authorization", nil), ("Proxy-Authorization", nil),
        ("WWW-Authenticate", nil), ("Proxy-Authenticate", nil), ("P-Asserted-Identity", nil),
        ("Privacy", nil), ("Allow", nil), ("Subject", "s"), ("Refer-To", "r"), ("Referred-By", "b"),
        ("Session-Expires", "x"), ("Reject-Contact", "j"), ("Accept-Contact", "a"),
        ("Request-Disposition", "d"), ("Identity", "y"), ("User-Agent", nil), ("Server", nil),
        ("Date", nil), ("Timestamp", nil), ("Warning", nil), ("Retry-After", nil),
        ("Authentication-Info", nil), ("Accept-Language", nil), ("Content-Language", nil),
        ("MIME-Version", nil), ("Organization", nil), ("Priority", nil), ("Reply-To", nil),
        ("In-Reply-To", nil), ("Alert-Info", nil), ("Call-Info", nil), ("Error-Info", nil),
        ("P-Associated-URI", nil), ("P-Charging-Vector", nil), ("P-Preferred-Identity", nil),
        ("P-Called-Party-ID", nil), ("P-Access-Network-Info", nil), ("P-Visited-Network-ID", nil),
        ("RSeq", nil), ("RAck", nil), ("Min-SE", nil), ("Replaces", nil), ("Flow-Timer", nil),
        ("Security-Client", nil), ("Security-Server", nil), ("Security-Verify", nil),
    ]

    /// Every known header name, indexed by ``knownIndex``.
    package static let known: [SIPHeaderName] = table.enumerated().map { offset, entry in
        SIPHeaderName(known: entry.0, index: UInt8(offset))
    }

    private static let compactForms: [Character?] = table.map(\.1)

    private static let indexByName: [String: UInt8] = {
        var map: [String: UInt8] = [:]
        for (offset, entry) in table.enumerated() {
            map[entry.0.lowercased()] = UInt8(offset)
            if let compact = entry.1 { map[String(compact)] = UInt8(offset) }
        }
        return map
    }()

    private static let listHeaders: Set<UInt8> = {
        let names = [
            "Via", "Contact", "Route", "Record-Route", "Path", "Service-Route", "Accept",
            "Accept-Encoding", "Allow-Events", "Supported", "Require", "Proxy-Require",
            "Unsupported", "P-Asserted-Identity", "Allow", "Content-Encoding", "Accept-Language",
            "Content-Language", "Warning", "Alert-Info", "Call-Info", "Error-Info",
            "P-Associated-URI", "Reject-Contact", "Accept-Contact", "In-Reply-To",
            "Request-Disposition", "Security-Client", "Security-Server", "Security-Verify",
            "P-Preferred-Identity",
        ]
        return Set(names.compactMap { indexByName[$0.lowercased()] })
    }()

    /// Recognises a header name from raw bytes without allocating.
    ///
    /// Names are matched by length and then compared byte by byte, ASCII case-insensitively.
    package static func lookup(_ name: UnsafeRawBufferPointer) -> UInt8? {
        let count = name.count
        guard count > 0, count < lookupByLength.count else { return nil }
        for candidate in lookupByLength[count] where asciiCaseInsensitiveEqual(name, candidate.bytes) {
            return candidate.index
        }
        return nil
    }

    private struct LookupEntry: Sendable {
        let bytes: [UInt8]
        let index: UInt8
    }

    private static let lookupByLength: [[LookupEntry]] = {
        var buckets = [[LookupEntry]](repeating: [], count: 32)
        for (name, index) in indexByName {
            let bytes = Array(name.utf8)
            if bytes.count < buckets.count {
                buckets[bytes.count].append(LookupEntry(bytes: bytes, index: index))
            }
        }
        return buckets
    }()
}

// MARK: - Named constants

extension SIPHeaderName {
    public static let via = SIPHeaderName("Via")
    public static let from = SIPHeaderName("From")
    public static let to = SIPHeaderName("To")
    public static let callID = SIPHeaderName("Call-ID")
    public static let cseq = SIPHeaderName("CSeq")
    public static let maxForwards = SIPHeaderName("Max-Forwards")
    public static let contact = SIPHeaderName("Contact")
    public static let route = SIPHeaderName("Route")
    public static let recordRoute = SIPHeaderName("Record-Route")
    public static let path = SIPHeaderName("Path")
    public static let serviceRoute = SIPHeaderName("Service-Route")
    public static let expires = SIPHeaderName("Expires")
    public static let minExpires = SIPHeaderName("Min-Expires")
    public static let contentLength = SIPHeaderName("Content-Length")
    public static let contentType = SIPHeaderName("Content-Type")
    public static let contentEncoding = SIPHeaderName("Content-Encoding")
    public static let contentDisposition = SIPHeaderName("Content-Disposition")
    public static let accept = SIPHeaderName("Accept")
    public static let acceptEncoding = SIPHeaderName("Accept-Encoding")
    /// RFC 6809: what a proxy on the path supports (RFC 8599 push services).
    public static let featureCaps = SIPHeaderName("Feature-Caps")
    public static let event = SIPHeaderName("Event")
    public static let allowEvents = SIPHeaderName("Allow-Events")
    public static let subscriptionState = SIPHeaderName("Subscription-State")
    public static let sipETag = SIPHeaderName("SIP-ETag")
    public static let sipIfMatch = SIPHeaderName("SIP-If-Match")
    /// RFC 5839 §4.3: a subscriber that has this entity state needs no NOTIFY body.
    public static let suppressIfMatch = SIPHeaderName("Suppress-If-Match")
    public static let supported = SIPHeaderName("Supported")
    public static let require = SIPHeaderName("Require")
    public static let proxyRequire = SIPHeaderName("Proxy-Require")
    public static let unsupported = SIPHeaderName("Unsupported")
    public static let authorization = SIPHeaderName("Authorization")
    public static let proxyAuthorization = SIPHeaderName("Proxy-Authorization")
    public static let wwwAuthenticate = SIPHeaderName("WWW-Authenticate")
    public static let proxyAuthenticate = SIPHeaderName("Proxy-Authenticate")
    public static let pAssertedIdentity = SIPHeaderName("P-Asserted-Identity")
    public static let privacy = SIPHeaderName("Privacy")
    public static let pPreferredIdentity = SIPHeaderName("P-Preferred-Identity")
    public static let pAssociatedURI = SIPHeaderName("P-Associated-URI")
    public static let pCalledPartyID = SIPHeaderName("P-Called-Party-ID")
    public static let pChargingVector = SIPHeaderName("P-Charging-Vector")
    public static let pAccessNetworkInfo = SIPHeaderName("P-Access-Network-Info")
    public static let pVisitedNetworkID = SIPHeaderName("P-Visited-Network-ID")
    public static let pServedUser = SIPHeaderName("P-Served-User")
    /// RFC 3326: why a request or dialog ended (Q.850 causes among others).
    public static let reason = SIPHeaderName("Reason")
    public static let allow = SIPHeaderName("Allow")
    public static let subject = SIPHeaderName("Subject")
    public static let userAgent = SIPHeaderName("User-Agent")
    public static let server = SIPHeaderName("Server")
    public static let date = SIPHeaderName("Date")
    public static let timestamp = SIPHeaderName("Timestamp")
    public static let warning = SIPHeaderName("Warning")
    public static let retryAfter = SIPHeaderName("Retry-After")
}

/// Compares raw bytes with a lower-case ASCII pattern, ignoring ASCII case in the input.
@inline(__always)
package func asciiCaseInsensitiveEqual(_ bytes: UnsafeRawBufferPointer, _ lowerPattern: [UInt8]) -> Bool {
    guard bytes.count == lowerPattern.count else { return false }
    var i = 0
    while i < lowerPattern.count {
        var b = bytes[i]
        if b >= 0x41 && b <= 0x5A { b |= 0x20 }
        if b != lowerPattern[i] { return false }
        i += 1
    }
    return true
}
