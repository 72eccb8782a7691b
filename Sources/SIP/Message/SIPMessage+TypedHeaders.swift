/// Typed views of header values, parsed on each call: callers keep what they need.
/// A malformed value is a ``SIPParseError/malformedHeader(_:_:)`` naming the header, never "absent".
extension SIPMessage {
    private func parse<T>(_ name: SIPHeaderName, _ body: (String) throws(ValueError) -> T) throws(SIPParseError) -> T? {
        guard let value = firstValue(name) else { return nil }
        do {
            return try body(value)
        } catch {
            throw .malformedHeader(name, error.reason)
        }
    }

    private func parseAll<T>(_ name: SIPHeaderName, _ body: (String) throws(ValueError) -> [T]) throws(SIPParseError) -> [T] {
        var result: [T] = []
        for index in fields.indices where matches(index, name) {
            do {
                result.append(contentsOf: try body(fieldValue(index)))
            } catch {
                throw .malformedHeader(name, error.reason)
            }
        }
        return result
    }

    /// Like ``parse(_:_:)`` for values read by ``ValueScanner``: it scans the value's bytes as
    /// they sit in the message, with no String made first.
    private func scan<T>(_ name: SIPHeaderName, _ body: (inout ValueScanner) throws(ValueError) -> T) throws(SIPParseError) -> T? {
        guard let index = firstFieldIndex(name) else { return nil }
        return try scan(index, name, body)
    }

    private func scan<T>(_ index: Int, _ name: SIPHeaderName, _ body: (inout ValueScanner) throws(ValueError) -> T) throws(SIPParseError) -> T {
        var scanner = ValueScanner(bytes: fieldBytes(index))
        do {
            return try body(&scanner)
        } catch {
            throw .malformedHeader(name, error.reason)
        }
    }

    private func scanAll<T>(_ name: SIPHeaderName, _ body: (inout ValueScanner) throws(ValueError) -> [T]) throws(SIPParseError) -> [T] {
        var result: [T] = []
        for index in fields.indices where matches(index, name) {
            let values = try scan(index, name, body)
            if result.isEmpty { result = values } else { result.append(contentsOf: values) }
        }
        return result
    }

    private func addresses(_ name: SIPHeaderName) throws(SIPParseError) -> [SIPAddress] {
        try scanAll(name) { scanner throws(ValueError) in try SIPAddress.parseList(scanner: &scanner) }
    }

    /// Every Via, top first.
    public func vias() throws(SIPParseError) -> [SIPVia] {
        if let parsed, parsed.isComplete { return parsed.vias }
        return try scanAll(.via) { scanner throws(ValueError) in try SIPVia.parseList(scanner: &scanner) }
    }

    /// The topmost Via.
    public func topVia() throws(SIPParseError) -> SIPVia? {
        if let parsed { return parsed.vias.first }
        return try scan(.via) { scanner throws(ValueError) in try SIPVia.parseList(scanner: &scanner).first } ?? nil
    }

    public func from() throws(SIPParseError) -> SIPAddress? {
        if let parsed, parsed.isComplete { return parsed.from }
        return try scan(.from) { scanner throws(ValueError) in try SIPAddress.parse(wholeValue: &scanner) }
    }

    public func to() throws(SIPParseError) -> SIPAddress? {
        if let parsed, parsed.isComplete { return parsed.to }
        return try scan(.to) { scanner throws(ValueError) in try SIPAddress.parse(wholeValue: &scanner) }
    }

    public var callID: String? {
        if let parsed, parsed.isComplete { return parsed.callID }
        return firstValue(.callID)
    }

    public func cseq() throws(SIPParseError) -> SIPCSeq? {
        if let parsed { return parsed.cseq }
        return try parse(.cseq) { text throws(ValueError) in try SIPCSeq(parsing: text) }
    }

    /// Max-Forwards (RFC 3261 §20.22): 0–255.
    public func maxForwards() throws(SIPParseError) -> Int? {
        if let parsed, parsed.isComplete { return parsed.maxForwards }
        return try parse(.maxForwards) { text throws(ValueError) in
            // Read on the bytes: leading zeros are allowed (RFC 4475 §3.1.1.1 sends 0068), so the
            // value is bounded as it grows, not by the count of digits.
            var value = 0
            for byte in text.utf8 {
                guard isDigit(byte) else { throw ValueError("not a number from 0 to 255") }
                value = value * 10 + Int(byte &- UInt8(ascii: "0"))
                guard value <= 255 else { throw ValueError("not a number from 0 to 255") }
            }
            guard !text.isEmpty else { throw ValueError("not a number from 0 to 255") }
            return value
        }
    }

    /// Expires (RFC 3261 §20.19): delta-seconds, at most 2^32-1.
    public func expires() throws(SIPParseError) -> UInt32? {
        try parse(.expires) { text throws(ValueError) in try parseDeltaSeconds(text) }
    }

    public func minExpires() throws(SIPParseError) -> UInt32? {
        try parse(.minExpires) { text throws(ValueError) in try parseDeltaSeconds(text) }
    }

    /// Contact: `*` or every address of every Contact line.
    public func contacts() throws(SIPParseError) -> SIPContactValue? {
        if let parsed, parsed.isComplete { return parsed.contacts }
        guard contains(.contact) else { return nil }
        if lineCount(.contact) == 1, let only = firstFieldIndex(.contact), isWildcard(fieldBytes(only)) { return .wildcard }
        if fields.indices.contains(where: { matches($0, .contact) && isWildcard(fieldBytes($0)) }) {
            throw .malformedHeader(.contact, "* mixed with other contacts")
        }
        return .addresses(try addresses(.contact))
    }

    public func routes() throws(SIPParseError) -> [SIPAddress] {
        try addresses(.route)
    }

    public func recordRoutes() throws(SIPParseError) -> [SIPAddress] {
        try addresses(.recordRoute)
    }

    public func paths() throws(SIPParseError) -> [SIPAddress] {
        try addresses(.path)
    }

    public func serviceRoutes() throws(SIPParseError) -> [SIPAddress] {
        try addresses(.serviceRoute)
    }

    public func pAssertedIdentities() throws(SIPParseError) -> [SIPAddress] {
        try addresses(.pAssertedIdentity)
    }

    public func contentType() throws(SIPParseError) -> SIPMediaType? {
        try parse(.contentType) { text throws(ValueError) in try SIPMediaType(parsing: text) }
    }

    public func contentDisposition() throws(SIPParseError) -> SIPContentDisposition? {
        try parse(.contentDisposition) { text throws(ValueError) in try SIPContentDisposition(parsing: text) }
    }

    /// Content-Encoding tokens, lower-cased, in the order applied.
    public var contentEncodings: [String] { values(.contentEncoding).map { $0.lowercased() } }

    public func accept() throws(SIPParseError) -> [SIPMediaType] {
        try parseAll(.accept) { text throws(ValueError) in
            try HeaderValueSplitter.splitList(text).map { item throws(ValueError) in try SIPMediaType(parsing: item) }
        }
    }

    /// Accept-Encoding codings, lower-cased, parameters (q) dropped.
    public var acceptEncodings: [String] {
        values(.acceptEncoding).map { String($0.split(separator: ";").first ?? "").trimmingWhitespace.lowercased() }
    }

    public func event() throws(SIPParseError) -> SIPEvent? {
        try parse(.event) { text throws(ValueError) in try SIPEvent(parsing: text) }
    }

    public func allowEvents() throws(SIPParseError) -> [SIPEvent] {
        try parseAll(.allowEvents) { text throws(ValueError) in
            try HeaderValueSplitter.splitList(text).map { item throws(ValueError) in try SIPEvent(parsing: item) }
        }
    }

    public func subscriptionState() throws(SIPParseError) -> SIPSubscriptionState? {
        try parse(.subscriptionState) { text throws(ValueError) in try SIPSubscriptionState(parsing: text) }
    }

    public var sipETag: String? { firstValue(.sipETag) }
    public var sipIfMatch: String? { firstValue(.sipIfMatch) }

    /// Option tags of Supported / Require / Proxy-Require / Unsupported (RFC 3261 §20.37 etc.).
    public func optionTags(_ name: SIPHeaderName) -> [String] { values(name) }

    public var supported: [String] { values(.supported) }
    public var require: [String] { values(.require) }
    public var proxyRequire: [String] { values(.proxyRequire) }
    public var unsupported: [String] { values(.unsupported) }
    public var allow: [String] { values(.allow) }

    /// Every credential in Authorization (or Proxy-Authorization) headers.
    public func credentials(_ name: SIPHeaderName = .authorization) throws(SIPParseError) -> [SIPAuthValue] {
        try scanAll(name) { scanner throws(ValueError) in [try SIPAuthValue(scanning: &scanner)] }
    }

    /// Every challenge in WWW-Authenticate (or Proxy-Authenticate) headers.
    public func challenges(_ name: SIPHeaderName = .wwwAuthenticate) throws(SIPParseError) -> [SIPAuthValue] {
        try scanAll(name) { scanner throws(ValueError) in [try SIPAuthValue(scanning: &scanner)] }
    }

    /// Privacy (RFC 3323 §4.2): priv-values separated by ';'.
    public var privacy: [String] {
        values(.privacy).flatMap { $0.split(separator: ";").map { String($0).trimmingWhitespace.lowercased() } }
    }
}

/// A Contact value that is `*` alone (RFC 3261 §10.2.2), whitespace around it allowed.
private func isWildcard(_ bytes: [UInt8]) -> Bool {
    var star = false
    for byte in bytes {
        if byte == UInt8(ascii: "*"), !star { star = true } else if !isWhitespace(byte) { return false }
    }
    return star
}

private func parseDeltaSeconds(_ text: String) throws(ValueError) -> UInt32 {
    guard !text.isEmpty, text.utf8.allSatisfy(isDigit) else { throw ValueError("not a number of seconds") }
    guard let value = UInt32(text) else { throw ValueError("number of seconds out of range") }
    return value
}
