/// CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16). The number must fit 32 bits.
public struct SIPCSeq: Sendable, Hashable, CustomStringConvertible {
    public var sequence: UInt32
    public var method: SIPMethod

    public init(_ sequence: UInt32, _ method: SIPMethod) {
        self.sequence = sequence
        self.method = method
    }

    public init(parsing text: some StringProtocol) throws(ValueError) {
        // Read on the text's own bytes: every request and response has a CSeq, and a scanner
        // would copy them into an array first.
        let utf8 = text.utf8
        var index = utf8.startIndex
        func skipWhitespace() {
            while index < utf8.endIndex, isWhitespace(utf8[index]) { utf8.formIndex(after: &index) }
        }
        skipWhitespace()
        var value: UInt64 = 0
        var digits = 0
        while index < utf8.endIndex, isDigit(utf8[index]) {
            value = value * 10 + UInt64(utf8[index] - 0x30)
            digits += 1
            guard value <= UInt64(UInt32.max) else { throw ValueError("sequence number out of range") }
            utf8.formIndex(after: &index)
        }
        guard digits > 0 else { throw ValueError("missing sequence number") }
        guard index < utf8.endIndex, isWhitespace(utf8[index]) else { throw ValueError("missing method") }
        skipWhitespace()
        let methodStart = index
        while index < utf8.endIndex, isTokenByte(utf8[index]) { utf8.formIndex(after: &index) }
        guard index > methodStart else { throw ValueError("missing method") }
        let method = String(decoding: utf8[methodStart..<index], as: UTF8.self)
        skipWhitespace()
        guard index == utf8.endIndex else { throw ValueError("unexpected text after method") }
        self.sequence = UInt32(value)
        self.method = SIPMethod(method)
    }

    public var description: String { String(sequence) + " " + method.rawValue }
}

/// The Contact header: either `*` (RFC 3261 §10.2.2, only with Expires: 0) or addresses.
public enum SIPContactValue: Sendable, Hashable {
    case wildcard
    case addresses([SIPAddress])
}

extension SIPAddress {
    /// Contact `q` (RFC 3261 §20.10): 0...1 with up to three decimals; nil when absent.
    public var q: Double? {
        guard let text = parameters.unquoted("q"), let value = Double(text), (0...1).contains(value) else { return nil }
        return value
    }

    /// Contact `expires` in seconds; nil when absent or not a number.
    public var expires: UInt32? { parameters.unquoted("expires").flatMap { UInt32($0) } }

    /// `+sip.instance` (RFC 5626 §4.1), without its quotes and angle brackets.
    public var instanceID: String? {
        guard var value = parameters.unquoted("+sip.instance") else { return nil }
        if value.hasPrefix("<"), value.hasSuffix(">") { value = String(value.dropFirst().dropLast()) }
        return value
    }

    /// `reg-id` (RFC 5626 §4.2).
    public var regID: UInt32? { parameters.unquoted("reg-id").flatMap { UInt32($0) } }

    /// `pub-gruu` / `temp-gruu` (RFC 5627 §4.2).
    public var publicGRUU: String? { parameters.unquoted("pub-gruu") }
    public var temporaryGRUU: String? { parameters.unquoted("temp-gruu") }
}

/// Event / Allow-Events values (RFC 6665 §8.2.1): a package with optional template, plus parameters.
public struct SIPEvent: Sendable, Hashable, CustomStringConvertible {
    /// `presence`, `reg`, `presence.winfo`...
    public var package: String
    public var parameters: SIPParameters

    public var id: String? { parameters.unquoted("id") }

    public init(package: String, parameters: SIPParameters = SIPParameters()) {
        self.package = package
        self.parameters = parameters
    }

    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        guard let token = scanner.readToken() else { throw ValueError("missing event package") }
        package = token
        parameters = try scanner.readParameters()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text after event") }
    }

    public var description: String { package + parameters.description }
}

/// Subscription-State (RFC 6665 §8.2.3): active, pending or terminated, with expires/reason/retry-after.
public struct SIPSubscriptionState: Sendable, Hashable, CustomStringConvertible {
    public var state: String
    public var parameters: SIPParameters

    public var expires: UInt32? { parameters.unquoted("expires").flatMap { UInt32($0) } }
    public var reason: String? { parameters.unquoted("reason") }
    public var retryAfter: UInt32? { parameters.unquoted("retry-after").flatMap { UInt32($0) } }

    public init(state: String, parameters: SIPParameters = SIPParameters()) {
        self.state = state
        self.parameters = parameters
    }

    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        guard let token = scanner.readToken() else { throw ValueError("missing substate") }
        state = token.lowercased()
        parameters = try scanner.readParameters()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text after substate") }
    }

    public var description: String { state + parameters.description }
}

/// Authorization, Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate (RFC 3261 §25.1,
/// RFC 7616): a scheme and comma-separated `name=value` parameters, quoted values unquoted.
public struct SIPAuthValue: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    /// Parameters in order; values without quotes.
    public var parameters: [(name: String, value: String)]
    /// Names (lower-cased) whose values were quoted on the wire (rendered quoted again); a list,
    /// since credentials have a handful of parameters and a set cost hashing on every parse.
    private var quotedNames: [String]

    public init(scheme: String, parameters: [(name: String, value: String)], quoted: Set<String>) {
        self.scheme = scheme
        self.parameters = parameters
        self.quotedNames = quoted.map { $0.lowercased() }
    }

    public subscript(name: String) -> String? {
        parameters.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        try self.init(scanning: &scanner)
    }

    /// Reads the whole rest of the scanner's value (a header line's bytes, no String made first).
    package init(scanning scanner: inout ValueScanner) throws(ValueError) {
        guard let scheme = scanner.readToken() else { throw ValueError("missing auth scheme") }
        self.scheme = scheme
        // Room for Authorization's usual nine or ten parameters, so the lists are not regrown.
        var parameters: [(name: String, value: String)] = []
        parameters.reserveCapacity(10)
        var quoted: [String] = []
        quoted.reserveCapacity(8)
        scanner.skipWhitespace()
        if !scanner.isAtEnd {
            repeat {
                guard let name = scanner.readToken() else { throw ValueError("bad auth parameter") }
                guard scanner.consume(UInt8(ascii: "=")) else { throw ValueError("auth parameter \(name) without value") }
                scanner.skipWhitespace()
                if scanner.peek == UInt8(ascii: "\"") {
                    guard let value = scanner.readQuotedString() else { throw ValueError("unterminated quoted string") }
                    parameters.append((name, value))
                    quoted.append(name.lowercased())
                } else {
                    guard let value = scanner.readToken() else { throw ValueError("bad value for \(name)") }
                    parameters.append((name, value))
                }
            } while scanner.consume(UInt8(ascii: ","))
        }
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text in credentials") }
        self.parameters = parameters
        self.quotedNames = quoted
    }

    public var description: String {
        scheme + " " + parameters.map { item in
            quotedNames.contains(item.name.lowercased())
                ? item.name + "=\"" + escapeQuoted(item.value) + "\""
                : item.name + "=" + item.value
        }.joined(separator: ", ")
    }

    public static func == (lhs: SIPAuthValue, rhs: SIPAuthValue) -> Bool { lhs.description == rhs.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

/// Content-Type / Accept media types (RFC 3261 §20.15): `type/subtype;params`.
public struct SIPMediaType: Sendable, Hashable, CustomStringConvertible {
    public var type: String
    public var subtype: String
    public var parameters: SIPParameters

    public init(type: String, subtype: String, parameters: SIPParameters = SIPParameters()) {
        self.type = type.lowercased()
        self.subtype = subtype.lowercased()
        self.parameters = parameters
    }

    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        guard let type = scanner.readToken(), scanner.consume(UInt8(ascii: "/")),
              let subtype = scanner.readToken()
        else { throw ValueError("bad media type") }
        self.type = type.lowercased()
        self.subtype = subtype.lowercased()
        parameters = try scanner.readParameters()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text after media type") }
    }

    /// `type/subtype` without parameters, lower-cased.
    public var essence: String { type + "/" + subtype }

    public var description: String { essence + parameters.description }

    /// Whether this (possibly wildcard, as in Accept) type admits `other`.
    public func admits(_ other: SIPMediaType) -> Bool {
        (type == "*" || type == other.type) && (subtype == "*" || subtype == other.subtype)
    }

    public static let sdp = SIPMediaType(type: "application", subtype: "sdp")
    public static let pidf = SIPMediaType(type: "application", subtype: "pidf+xml")
    public static let textPlain = SIPMediaType(type: "text", subtype: "plain")
}

/// Content-Disposition (RFC 3261 §20.11): a disposition type and parameters.
public struct SIPContentDisposition: Sendable, Hashable {
    public var type: String
    public var parameters: SIPParameters

    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        guard let type = scanner.readToken() else { throw ValueError("missing disposition type") }
        self.type = type.lowercased()
        parameters = try scanner.readParameters()
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text after disposition") }
    }
}
