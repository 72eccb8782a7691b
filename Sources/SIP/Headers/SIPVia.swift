/// One Via value (RFC 3261 §20.42, RFC 3581 rport).
public struct SIPVia: Sendable, Hashable, CustomStringConvertible {
    /// `SIP/2.0` as written.
    public var protocolName: String
    public var protocolVersion: String
    /// The transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, or an extension).
    public var transport: String
    public var host: String
    public var port: Int?
    public var parameters: SIPParameters

    /// RFC 3261 §8.1.1.7: branches of RFC 3261 elements begin with this.
    public static let magicCookie = "z9hG4bK"

    public init(transport: String, host: String, port: Int?, branch: String) {
        self.protocolName = "SIP"
        self.protocolVersion = "2.0"
        self.transport = transport
        self.host = host
        self.port = port
        self.parameters = SIPParameters()
        // A proxy's own Via also takes rport: room for both at once.
        self.parameters.reserveCapacity(2)
        self.parameters.append("branch", branch)
    }

    public var branch: String? { parameters.unquoted("branch") }
    public var received: String? { parameters.unquoted("received") }
    public var maddr: String? { parameters.unquoted("maddr") }

    /// Whether the branch carries the RFC 3261 magic cookie.
    /// A bare cookie (RFC 4475 §3.2.1) identifies nothing, so it counts as an RFC 2543 branch.
    public var hasMagicCookie: Bool {
        guard let branch else { return false }
        return branch.hasPrefix(SIPVia.magicCookie) && branch.utf8.count > SIPVia.magicCookie.utf8.count
    }

    /// RFC 3581: nil when absent, `.some(nil)` when present without value (the client asks for it).
    public var rport: Int?? {
        guard case .some(let value) = parameters["rport"] else { return nil }
        guard let value else { return .some(nil) }
        return .some(Int(value))
    }

    /// `host[:port]`, the sent-by used in transaction matching.
    public var sentBy: String {
        port.map { host + ":" + String($0) } ?? host
    }

    /// Written into one String: joined with `+`, each forwarded request's Via took three.
    public var description: String {
        var text = ""
        text.reserveCapacity(protocolName.utf8.count + protocolVersion.utf8.count + transport.utf8.count + host.utf8.count
            + 9 + parameters.estimatedLength)
        text.append(protocolName)
        text.append("/")
        text.append(protocolVersion)
        text.append("/")
        text.append(transport)
        text.append(" ")
        text.append(host)
        if let port {
            text.append(":")
            text.append(String(port))
        }
        parameters.append(to: &text)
        return text
    }

    /// Parses every Via value in one header line (they may be comma-separated).
    public static func parseList(_ text: some StringProtocol) throws(ValueError) -> [SIPVia] {
        var scanner = ValueScanner(text)
        return try parseList(scanner: &scanner)
    }

    /// The Via values of a line, filling what is left of the scanner.
    package static func parseList(scanner: inout ValueScanner) throws(ValueError) -> [SIPVia] {
        var result: [SIPVia] = []
        repeat {
            result.append(try SIPVia(scanner: &scanner))
            scanner.skipWhitespace()
        } while scanner.consume(UInt8(ascii: ","))
        guard scanner.isAtEnd else { throw ValueError("unexpected text: \(scanner.remainder)") }
        return result
    }

    package init(scanner: inout ValueScanner) throws(ValueError) {
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport (LWS allowed around SLASH)
        guard let name = scanner.readToken(), scanner.consume(UInt8(ascii: "/")),
              let version = scanner.readToken(), scanner.consume(UInt8(ascii: "/")),
              let transport = scanner.readToken()
        else { throw ValueError("bad sent-protocol") }
        protocolName = name
        protocolVersion = version
        self.transport = transport.uppercased()
        scanner.skipWhitespace()
        // sent-by = host [ COLON port ]
        if scanner.peek == UInt8(ascii: "[") {
            let start = scanner.index
            guard let close = scanner.bytes[start...].firstIndex(of: UInt8(ascii: "]")),
                  IPv6Address(scanner.bytes[(start + 1)..<close]) != nil
            else { throw ValueError("bad IPv6 reference in sent-by") }
            host = String(decoding: scanner.bytes[start...close], as: UTF8.self)
            scanner.index = close + 1
        } else {
            let start = scanner.index
            while let byte = scanner.peek, isAlpha(byte) || isDigit(byte) || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") {
                scanner.index += 1
            }
            guard scanner.index > start else { throw ValueError("missing sent-by host") }
            host = String(decoding: scanner.bytes[start..<scanner.index], as: UTF8.self)
        }
        if scanner.consume(UInt8(ascii: ":")) {
            scanner.skipWhitespace()
            var value = 0
            var digits = 0
            while let byte = scanner.peek, isDigit(byte) {
                value = value * 10 + Int(byte - 0x30)
                digits += 1
                guard value <= 65_535 else { throw ValueError("port out of range") }
                scanner.index += 1
            }
            guard digits > 0 else { throw ValueError("empty port") }
            port = value
        } else {
            port = nil
        }
        parameters = try scanner.readParameters(expected: 4)
        if let branch = parameters["branch"], branch == nil { throw ValueError("branch without value") }
        if let received = parameters.unquoted("received"),
           IPv6Address.parseIPv4(received.utf8) == nil, IPv6Address(received.utf8) == nil,
           IPv6Address(received.utf8.dropFirst().dropLast()) == nil || !received.hasPrefix("[") {
            throw ValueError("received is not an IP address")
        }
    }
}
