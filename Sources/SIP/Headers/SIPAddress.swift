/// A name-addr or addr-spec with header parameters: the value of From, To, Contact, Route,
/// Record-Route, Path, Service-Route, P-Asserted-Identity and friends (RFC 3261 §20.10, §25.1).
public struct SIPAddress: Sendable, Hashable, CustomStringConvertible {
    public var displayName: String?
    public var uri: SIPURI
    public var parameters: SIPParameters

    public init(displayName: String? = nil, uri: SIPURI, parameters: SIPParameters = SIPParameters()) {
        self.displayName = displayName
        self.uri = uri
        self.parameters = parameters
    }

    /// The `tag` parameter of From/To (RFC 3261 §19.3).
    public var tag: String? {
        get { parameters.unquoted("tag") }
        set {
            if let newValue { parameters.set("tag", newValue) } else { parameters.remove("tag") }
        }
    }

    /// Always rendered in name-addr form, which is unambiguous whatever the URI holds.
    public var description: String {
        var out = ""
        if let displayName { out += "\"" + escapeQuoted(displayName) + "\" " }
        let uriText = uri.description
        out.reserveCapacity(out.utf8.count + uriText.utf8.count + 2 + parameters.estimatedLength)
        out.append("<")
        out.append(uriText)
        out.append(">")
        parameters.append(to: &out)
        return out
    }

    /// Parses one name-addr or addr-spec, followed by parameters.
    public init(parsing text: some StringProtocol) throws(ValueError) {
        var scanner = ValueScanner(text)
        self = try SIPAddress.parse(wholeValue: &scanner)
    }

    /// One address that must fill what is left of the scanner.
    package static func parse(wholeValue scanner: inout ValueScanner) throws(ValueError) -> SIPAddress {
        let address = try parse(scanner: &scanner)
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw ValueError("unexpected text after address: \(scanner.remainder)") }
        return address
    }

    /// One address, followed by parameters. A function, not an initializer: the parts are read into
    /// locals and the address is built once, at the end (assigned part by part in an initializer,
    /// it was copied and destroyed on the way).
    package static func parse(scanner: inout ValueScanner) throws(ValueError) -> SIPAddress {
        scanner.skipWhitespace()
        var displayName: String?
        if scanner.peek == UInt8(ascii: "\"") {
            guard let quoted = scanner.readQuotedString() else { throw ValueError("unterminated quoted display name") }
            displayName = quoted
            scanner.skipWhitespace()
            guard scanner.peek == UInt8(ascii: "<") else { throw ValueError("display name without <URI>") }
        }
        // A ':' before any '<' means an addr-spec (a display name never holds one unquoted), so the
        // search stops there: "sip:a@b, <sip:c@d>" is two addresses, and long lists stay linear.
        if displayName == nil,
           let angle = scanner.bytes[scanner.index...].firstIndex(where: { $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ":") }),
           scanner.bytes[angle] == UInt8(ascii: "<") {
            // display-name = *(token LWS): anything but tokens and whitespace is a fault (RFC 4475 §3.1.2.16).
            let nameBytes = scanner.bytes[scanner.index..<angle]
            guard nameBytes.allSatisfy({ isTokenByte($0) || isWhitespace($0) }) else {
                throw ValueError("display name is neither a token nor quoted")
            }
            let trimmed = String(decoding: nameBytes, as: UTF8.self).trimmingWhitespace
            displayName = trimmed.isEmpty ? nil : trimmed
            scanner.index = angle
        }
        let uri: SIPURI
        if scanner.peek == UInt8(ascii: "<") {
            scanner.index += 1
            guard let close = scanner.bytes[scanner.index...].firstIndex(of: UInt8(ascii: ">")) else {
                throw ValueError("missing >")
            }
            uri = try SIPURI.parse(bytes: scanner.bytes[scanner.index..<close])
            scanner.index = close + 1
        } else {
            // addr-spec: the URI ends at the first ';' or ',' or whitespace; what follows are header
            // parameters (RFC 3261 §20.10).
            let start = scanner.index
            while let byte = scanner.peek, byte != UInt8(ascii: ";"), byte != UInt8(ascii: ","), !isWhitespace(byte) {
                scanner.index += 1
            }
            guard scanner.index > start else { throw ValueError("empty address") }
            uri = try SIPURI.parse(bytes: scanner.bytes[start..<scanner.index])
            if uri.headers.count > 0 { throw ValueError("URI with headers must be in <>") }
        }
        let parameters = try scanner.readParameters()
        return SIPAddress(displayName: displayName, uri: uri, parameters: parameters)
    }

    /// Parses a comma-separated list of addresses (Contact, Route, Path...).
    public static func parseList(_ text: some StringProtocol) throws(ValueError) -> [SIPAddress] {
        var scanner = ValueScanner(text)
        return try parseList(scanner: &scanner)
    }

    /// The addresses of a comma-separated list that fills what is left of the scanner.
    package static func parseList(scanner: inout ValueScanner) throws(ValueError) -> [SIPAddress] {
        var result: [SIPAddress] = []
        repeat {
            result.append(try SIPAddress.parse(scanner: &scanner))
            scanner.skipWhitespace()
        } while scanner.consume(UInt8(ascii: ","))
        guard scanner.isAtEnd else { throw ValueError("unexpected text in address list: \(scanner.remainder)") }
        return result
    }
}

extension StringProtocol {
    package var trimmingWhitespace: String {
        let bytes = Array(utf8)
        var start = 0
        var end = bytes.count
        while start < end, isWhitespace(bytes[start]) { start += 1 }
        while end > start, isWhitespace(bytes[end - 1]) { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}
