/// A cursor over the bytes of one header value, with the small vocabulary of RFC 3261 §25.1:
/// linear whitespace, tokens, quoted strings, separators.
package struct ValueScanner {
    package let bytes: [UInt8]
    package var index: Int

    package init(_ text: some StringProtocol) {
        self.bytes = Array(text.utf8)
        self.index = 0
    }

    /// Over bytes taken straight from a message (``SIPMessage/fieldBytes(_:)``): no String between.
    package init(bytes: [UInt8]) {
        self.bytes = bytes
        self.index = 0
    }

    package var isAtEnd: Bool { index >= bytes.count }

    package var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    package var remainder: String {
        index < bytes.count ? String(decoding: bytes[index...], as: UTF8.self) : ""
    }

    package mutating func skipWhitespace() {
        while index < bytes.count, isWhitespace(bytes[index]) { index += 1 }
    }

    /// Consumes `byte` (after optional whitespace) if it is next.
    package mutating func consume(_ byte: UInt8) -> Bool {
        let saved = index
        skipWhitespace()
        if index < bytes.count, bytes[index] == byte {
            index += 1
            return true
        }
        index = saved
        return false
    }

    package mutating func readToken() -> String? {
        skipWhitespace()
        let start = index
        while index < bytes.count, isTokenByte(bytes[index]) { index += 1 }
        guard index > start else { return nil }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// Reads `"..."` with backslash escapes (RFC 3261 §25.1 quoted-pair), returning the content
    /// without quotes and with escapes resolved; nil if the quotes do not balance.
    package mutating func readQuotedString() -> String? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        // Most quoted strings hold no escape: their text is read from the bytes in place.
        let contentStart = index + 1
        var cursor = firstQuoteOrBackslash(from: contentStart)
        guard cursor < bytes.count else { return nil }
        if bytes[cursor] == UInt8(ascii: "\"") {
            index = cursor + 1
            return String(decoding: bytes[contentStart..<cursor], as: UTF8.self)
        }
        var out = Array(bytes[contentStart..<cursor])
        while cursor < bytes.count {
            let byte = bytes[cursor]
            if byte == UInt8(ascii: "\\") {
                guard cursor + 1 < bytes.count else { return nil }
                out.append(bytes[cursor + 1])
                cursor += 2
                continue
            }
            if byte == UInt8(ascii: "\"") {
                index = cursor + 1
                return String(decoding: out, as: UTF8.self)
            }
            out.append(byte)
            cursor += 1
        }
        return nil
    }

    /// Reads bytes up to (not including) any byte in `stops`, or to the end.
    package mutating func readUntil(_ stops: Set<UInt8>) -> String {
        let start = index
        while index < bytes.count, !stops.contains(bytes[index]) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// Reads `;name[=value]` pairs until something else comes (RFC 3261 generic-param). Values are
    /// tokens, IPv6 references or quoted strings; quoted values keep their quotes so they round-trip.
    /// Room for all of them is taken at once, counted first: grown one at a time, a contact's three
    /// parameters took three allocations, and the exact count leaves no unused room in values kept
    /// long, like a binding's contact.
    /// - Parameter expected: room for at least this many (a Via's branch and rport, and the
    ///   received a server adds, then share one allocation).
    package mutating func readParameters(expected: Int = 0) throws(ValueError) -> SIPParameters {
        var parameters = SIPParameters()
        if peek == UInt8(ascii: ";") || (peek.map(isWhitespace) ?? false) {
            let count = max(parametersAhead(), expected)
            if count > 1 { parameters.reserveCapacity(count) }
        }
        while consume(UInt8(ascii: ";")) {
            guard let name = readToken() else { throw ValueError("parameter without a name") }
            if consume(UInt8(ascii: "=")) {
                skipWhitespace()
                if peek == UInt8(ascii: "\"") {
                    guard let quoted = readQuotedValue() else { throw ValueError("unterminated quoted string") }
                    parameters.append(name, quoted)
                } else {
                    let start = index
                    while index < bytes.count, isParameterValueByte(bytes[index]) { index += 1 }
                    guard index > start else { throw ValueError("empty value for parameter \(name)") }
                    parameters.append(name, String(decoding: bytes[start..<index], as: UTF8.self))
                }
            } else {
                parameters.append(name, nil)
            }
        }
        return parameters
    }

    /// How many `;` come before the end or the next list comma, outside quoted strings: the
    /// number of parameters ``readParameters()`` is about to read.
    private func parametersAhead() -> Int {
        var count = 0
        var cursor = index
        var inQuotes = false
        while cursor < bytes.count {
            let byte = bytes[cursor]
            if inQuotes {
                if byte == UInt8(ascii: "\\") { cursor += 1 } else if byte == UInt8(ascii: "\"") { inQuotes = false }
            } else if byte == UInt8(ascii: "\"") {
                inQuotes = true
            } else if byte == UInt8(ascii: ";") {
                count += 1
            } else if byte == UInt8(ascii: ",") {
                break
            }
            cursor += 1
        }
        return count
    }

    /// A quoted parameter value as it is kept: with its quotes, escapes only where needed. Without
    /// a backslash in it that is the text as written, taken in one piece (unquoted and quoted
    /// again, it took three strings).
    private mutating func readQuotedValue() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let cursor = firstQuoteOrBackslash(from: index + 1)
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "\"") {
            let value = String(decoding: bytes[index...cursor], as: UTF8.self)
            index = cursor + 1
            return value
        }
        guard let quoted = readQuotedString() else { return nil }
        return "\"" + escapeQuoted(quoted) + "\""
    }

    /// The offset of the first `"` or `\` at or after `start`, or the end: where a quoted
    /// string's plain part stops.
    private func firstQuoteOrBackslash(from start: Int) -> Int {
        var cursor = start
        while cursor < bytes.count, bytes[cursor] != UInt8(ascii: "\""), bytes[cursor] != UInt8(ascii: "\\") { cursor += 1 }
        return cursor
    }

    @inline(__always)
    private func isParameterValueByte(_ byte: UInt8) -> Bool {
        isTokenByte(byte) || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: ":")
            || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "@") || byte == UInt8(ascii: "&")
            || byte == UInt8(ascii: "$") || byte == UInt8(ascii: "=")
    }
}

/// Escapes `"` and `\` for a quoted-string.
package func escapeQuoted(_ text: String) -> String {
    guard text.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return text }
    var out = ""
    for character in text {
        if character == "\"" || character == "\\" { out.append("\\") }
        out.append(character)
    }
    return out
}

/// A header value that does not follow its grammar; `reason` names the fault for a 400.
public struct ValueError: Error, Sendable, Hashable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
}
