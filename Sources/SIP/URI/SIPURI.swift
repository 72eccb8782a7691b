/// A URI as SIP uses it: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), or any other
/// absolute URI kept opaque.
public struct SIPURI: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: Sendable, Hashable, CustomStringConvertible {
        case sip, sips, tel
        case other(String)

        public var description: String {
            switch self {
            case .sip: "sip"
            case .sips: "sips"
            case .tel: "tel"
            case .other(let name): name
            }
        }
    }

    public var scheme: Scheme
    /// The user part as written (still %-escaped); for tel URIs, the telephone number.
    public var user: String?
    public var password: String?
    /// The host as written; IPv6 references keep their brackets (RFC 5118).
    public var host: String
    public var port: Int?
    public var parameters: SIPParameters
    /// `?name=value&...` headers, as written.
    public var headers: [(name: String, value: String)]
    /// For schemes Tern does not model, everything after `scheme:`.
    public var opaque: String?

    public init(scheme: Scheme = .sip, user: String? = nil, host: String, port: Int? = nil,
                parameters: SIPParameters = SIPParameters()) {
        self.scheme = scheme
        self.user = user
        self.password = nil
        self.host = host
        self.port = port
        self.parameters = parameters
        self.headers = []
        self.opaque = nil
    }

    /// Every part at once, for the parsers.
    @inline(__always)
    init(scheme: Scheme, user: String?, password: String?, host: String, port: Int?, parameters: SIPParameters,
         headers: [(name: String, value: String)]) {
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.parameters = parameters
        self.headers = headers
        self.opaque = nil
    }

    /// The user part with %-escapes resolved (RFC 3261 §19.1.2).
    public var unescapedUser: String? { user.map(percentDecoded) }

    /// The `transport` URI parameter, lower-cased.
    public var transportParameter: String? {
        guard case .some(.some(let value)) = parameters["transport"] else { return nil }
        return value.lowercased()
    }

    /// The host without IPv6 brackets, as a socket address wants it.
    public var hostWithoutBrackets: String {
        if host.hasPrefix("["), host.hasSuffix("]") { return String(host.dropFirst().dropLast()) }
        return host
    }

    public var description: String {
        switch scheme {
        case .other(let name):
            return name + ":" + (opaque ?? "")
        case .tel:
            return "tel:" + (user ?? "") + parameters.description
        case .sip, .sips:
            // One buffer, reserved up front: bindings, events and every forwarded request spell URIs.
            var out = ""
            out.reserveCapacity(12 + (user?.utf8.count ?? 0) + (password?.utf8.count ?? 0) + host.utf8.count
                                + parameters.estimatedLength)
            out.append(scheme == .sips ? "sips:" : "sip:")
            if let user {
                out.append(user)
                if let password {
                    out.append(":")
                    out.append(password)
                }
                out.append("@")
            }
            out.append(host)
            if let port {
                out.append(":")
                out.append(String(port))
            }
            parameters.append(to: &out)
            if !headers.isEmpty {
                out += "?" + headers.map { $0.name + "=" + $0.value }.joined(separator: "&")
            }
            return out
        }
    }

    /// Equal when every part is as written in both (not RFC 3261 §19.1.4 equivalence): compared part
    /// by part, where spelling both out cost two strings per comparison of bindings.
    public static func == (lhs: SIPURI, rhs: SIPURI) -> Bool {
        lhs.scheme == rhs.scheme && lhs.host == rhs.host && lhs.user == rhs.user && lhs.port == rhs.port
            && lhs.parameters == rhs.parameters && lhs.password == rhs.password && lhs.opaque == rhs.opaque
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(scheme)
        hasher.combine(host)
        hasher.combine(user)
        hasher.combine(port)
        hasher.combine(parameters)
        hasher.combine(password)
        hasher.combine(opaque)
        hasher.combine(headers.count)
        for header in headers {
            hasher.combine(header.name)
            hasher.combine(header.value)
        }
    }
}

// MARK: - Parsing

extension SIPURI {
    /// Parses an absolute URI. sip/sips/tel are parsed fully; any other scheme is kept opaque.
    public init(parsing text: some StringProtocol) throws(ValueError) {
        self = try SIPURI.parse(bytes: Array(text.utf8)[...])
    }

    /// Parses the URI these bytes hold, at their own offsets: an address's `<...>` is read where
    /// its scanner has it, with no String or array of its own. A function, not an initializer: the
    /// parsers build each part in a local and the URI once, at the end. Built field by field in
    /// place (`self = ...`, `uri.port = ...`), the whole URI was copied and destroyed on the way,
    /// a retain and a release per part, a tenth of a request's validation.
    package static func parse(bytes: ArraySlice<UInt8>) throws(ValueError) -> SIPURI {
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > bytes.startIndex else {
            throw ValueError("no scheme")
        }
        let schemeBytes = bytes[..<colon]
        guard let first = schemeBytes.first, isAlpha(first),
              schemeBytes.allSatisfy({ isAlpha($0) || isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E })
        else { throw ValueError("bad scheme") }
        for byte in bytes where byte <= 0x20 || byte == UInt8(ascii: "<") || byte == UInt8(ascii: ">")
            || byte == UInt8(ascii: "\"") || byte >= 0x7F {
            throw ValueError("character not allowed in a URI")
        }
        let start = colon + 1
        if schemeBytes.elementsEqual("sip".utf8, by: asciiFoldedEqual) {
            return try SIPURI.parseSIP(scheme: .sip, bytes, from: start)
        } else if schemeBytes.elementsEqual("sips".utf8, by: asciiFoldedEqual) {
            return try SIPURI.parseSIP(scheme: .sips, bytes, from: start)
        } else if schemeBytes.elementsEqual("tel".utf8, by: asciiFoldedEqual) {
            return try SIPURI.parseTel(bytes, from: start)
        }
        guard start < bytes.endIndex else { throw ValueError("empty URI") }
        var uri = SIPURI(scheme: .other(String(decoding: schemeBytes, as: UTF8.self).lowercased()), host: "")
        uri.opaque = String(decoding: bytes[start...], as: UTF8.self)
        return uri
    }

    private static func parseSIP(scheme: Scheme, _ bytes: ArraySlice<UInt8>, from start: Int) throws(ValueError) -> SIPURI {
        var cursor = start
        var user: String?
        var password: String?
        // The user part may hold ';' and '?' (RFC 4475 §3.1.1.3, §3.1.1.9) but never an unescaped
        // '@', and no later part of a sip URI may hold one either: the first '@' ends the userinfo.
        let at = bytes[start...].firstIndex(of: UInt8(ascii: "@"))
        let headersStart = bytes[(at.map { $0 + 1 } ?? start)...].firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        if let at {
            let userInfo = bytes[start..<at]
            guard !userInfo.isEmpty else { throw ValueError("empty user part") }
            guard isValidEscaping(userInfo) else { throw ValueError("bad %-escape in user part") }
            if let passwordColon = userInfo.firstIndex(of: UInt8(ascii: ":")) {
                user = String(decoding: userInfo[..<passwordColon], as: UTF8.self)
                password = String(decoding: userInfo[(passwordColon + 1)...], as: UTF8.self)
            } else {
                user = String(decoding: userInfo, as: UTF8.self)
            }
            cursor = at + 1
        }
        // host
        let hostStart = cursor
        if cursor < headersStart, bytes[cursor] == UInt8(ascii: "[") {
            guard let close = bytes[cursor..<headersStart].firstIndex(of: UInt8(ascii: "]")) else {
                throw ValueError("unterminated IPv6 reference")
            }
            guard IPv6Address(bytes[(cursor + 1)..<close]) != nil else { throw ValueError("bad IPv6 reference") }
            cursor = close + 1
        } else {
            while cursor < headersStart, isHostByte(bytes[cursor]) { cursor += 1 }
            let hostBytes = bytes[hostStart..<cursor]
            guard !hostBytes.isEmpty else { throw ValueError("empty host") }
            if hostBytes.contains(UInt8(ascii: ":")) { throw ValueError("bad host") }
        }
        let host = String(decoding: bytes[hostStart..<cursor], as: UTF8.self)
        var port: Int?
        var parameters = SIPParameters()
        var headers: [(name: String, value: String)] = []
        // port
        if cursor < headersStart, bytes[cursor] == UInt8(ascii: ":") {
            cursor += 1
            let portStart = cursor
            var value = 0
            while cursor < headersStart, isDigit(bytes[cursor]) {
                value = value * 10 + Int(bytes[cursor] - 0x30)
                guard value <= 65_535 else { throw ValueError("port out of range") }
                cursor += 1
            }
            guard cursor > portStart else { throw ValueError("empty port") }
            port = value
        }
        // parameters
        while cursor < headersStart {
            guard bytes[cursor] == UInt8(ascii: ";") else { throw ValueError("unexpected character after host") }
            cursor += 1
            var end = cursor
            while end < headersStart, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let parameter = bytes[cursor..<end]
            guard !parameter.isEmpty else { throw ValueError("empty URI parameter") }
            if let equals = parameter.firstIndex(of: UInt8(ascii: "=")) {
                parameters.append(String(decoding: parameter[..<equals], as: UTF8.self),
                                  String(decoding: parameter[(equals + 1)...], as: UTF8.self))
            } else {
                parameters.append(String(decoding: parameter, as: UTF8.self), nil)
            }
            cursor = end
        }
        // headers
        if headersStart < bytes.endIndex {
            let text = bytes[(headersStart + 1)...]
            for pair in text.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
                guard let equals = pair.firstIndex(of: UInt8(ascii: "=")) else { throw ValueError("URI header without value") }
                headers.append((String(decoding: pair[..<equals], as: UTF8.self),
                                String(decoding: pair[(equals + 1)...], as: UTF8.self)))
            }
        }
        return SIPURI(scheme: scheme, user: user, password: password, host: host, port: port, parameters: parameters, headers: headers)
    }

    /// tel URIs (RFC 3966): the number, then `;param` pairs.
    private static func parseTel(_ bytes: ArraySlice<UInt8>, from start: Int) throws(ValueError) -> SIPURI {
        let numberEnd = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
        let number = bytes[start..<numberEnd]
        guard !number.isEmpty else { throw ValueError("empty telephone number") }
        let allowed: Set<UInt8> = Set("0123456789abcdefABCDEF*#+-.()pPwW".utf8)
        guard number.allSatisfy(allowed.contains) else { throw ValueError("bad telephone number") }
        var uri = SIPURI(scheme: .tel, user: String(decoding: number, as: UTF8.self), host: "")
        if numberEnd < bytes.endIndex {
            for parameter in bytes[(numberEnd + 1)...].split(separator: UInt8(ascii: ";")) {
                if let equals = parameter.firstIndex(of: UInt8(ascii: "=")) {
                    uri.parameters.append(String(decoding: parameter[..<equals], as: UTF8.self),
                                          String(decoding: parameter[(equals + 1)...], as: UTF8.self))
                } else {
                    uri.parameters.append(String(decoding: parameter, as: UTF8.self), nil)
                }
            }
        }
        return uri
    }
}

// MARK: - Comparison (RFC 3261 §19.1.4)

extension SIPURI {
    /// Whether two URIs are equivalent by the rules of RFC 3261 §19.1.4: escapes resolved, host and
    /// parameter names case-insensitive, user/ttl/method/maddr/transport must agree when either has
    /// them, other parameters only where both have them, headers all must agree. IPv6 hosts are
    /// compared as addresses (RFC 5118 §4.3).
    public func isEquivalent(to other: SIPURI) -> Bool {
        guard scheme == other.scheme else { return false }
        switch scheme {
        case .other:
            return opaque.map(percentDecoded)?.lowercased() == other.opaque.map(percentDecoded)?.lowercased()
        case .tel:
            return telNumberDigits(user) == telNumberDigits(other.user)
                && parametersAgree(other, mustMatch: ["phone-context", "isub", "ext"])
        case .sip, .sips:
            break
        }
        guard unescapedUser == other.unescapedUser, password.map(percentDecoded) == other.password.map(percentDecoded),
              port == other.port, hostsEqual(host, other.host)
        else { return false }
        guard parametersAgree(other, mustMatch: ["user", "ttl", "method", "maddr", "transport"]) else { return false }
        let mine = Set(headers.map { $0.name.lowercased() + "=" + percentDecoded($0.value) })
        let theirs = Set(other.headers.map { $0.name.lowercased() + "=" + percentDecoded($0.value) })
        return mine == theirs
    }

    private func parametersAgree(_ other: SIPURI, mustMatch: Set<String>) -> Bool {
        for name in mustMatch where parameters.contains(name) != other.parameters.contains(name) {
            return false
        }
        for item in parameters {
            // The first occurrence on both sides, so that a repeated name compares reflexively.
            guard case .some(let theirs) = other.parameters[item.name], case .some(let mine) = parameters[item.name]
            else { continue }
            let a = mine.map(percentDecoded)?.lowercased()
            let b = theirs.map(percentDecoded)?.lowercased()
            if a != b { return false }
        }
        return true
    }

    private func hostsEqual(_ a: String, _ b: String) -> Bool {
        if a.caseInsensitiveEquals(b) { return true }
        guard a.hasPrefix("["), b.hasPrefix("["),
              let x = IPv6Address(Array(a.utf8).dropFirst().dropLast()),
              let y = IPv6Address(Array(b.utf8).dropFirst().dropLast())
        else { return false }
        return x == y
    }

    private func telNumberDigits(_ number: String?) -> String? {
        number.map { String($0.filter { !"-.()".contains($0) }).lowercased() }
    }
}

// MARK: - Character helpers

@inline(__always) package func isAlpha(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
@inline(__always) package func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
@inline(__always) private func isHostByte(_ b: UInt8) -> Bool {
    isAlpha(b) || isDigit(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_")
}

private func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: b - 0x30
    case 0x41...0x46: b - 0x41 + 10
    case 0x61...0x66: b - 0x61 + 10
    default: nil
    }
}

private func isValidEscaping(_ bytes: ArraySlice<UInt8>) -> Bool {
    var index = bytes.startIndex
    while index < bytes.endIndex {
        if bytes[index] == UInt8(ascii: "%") {
            guard index + 2 < bytes.endIndex,
                  hexValue(bytes[index + 1]) != nil, hexValue(bytes[index + 2]) != nil
            else { return false }
            index += 3
        } else {
            index += 1
        }
    }
    return true
}

/// Resolves %HH escapes; malformed escapes are kept as written.
package func percentDecoded(_ text: String) -> String {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
    let bytes = Array(text.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
           let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) {
            out.append(high << 4 | low)
            index += 3
        } else {
            out.append(bytes[index])
            index += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}
