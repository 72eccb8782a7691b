public import NIOCore

/// Parses one SIP message from bytes into a ``SIPMessage`` (RFC 3261 §7, §25).
///
/// One pass finds the start line, every header line (with folding) and the body; no header value is
/// copied. Semantic checks that need typed values (required headers, CSeq, Via...) are a separate
/// step, ``SIPMessage/validateRequest()``, so that a proxy can still answer what it can read.
public struct SIPMessageParser: Sendable {
    /// Limits applied before anything is buffered or indexed.
    public struct Limits: Sendable, Hashable {
        /// The largest message accepted, start line to end of body (default 65,535 bytes, the largest
        /// UDP payload; 513 above it).
        public var maxMessageSize: Int
        /// The most header lines one message may have (default 256).
        public var maxHeaderLines: Int

        public init(maxMessageSize: Int = 65_535, maxHeaderLines: Int = 256) {
            self.maxMessageSize = maxMessageSize
            self.maxHeaderLines = maxHeaderLines
        }
    }

    /// How the message was framed, which decides how Content-Length is read (RFC 3261 §18.3).
    public enum Framing: Sendable {
        /// One datagram: a missing Content-Length means the rest of the datagram; a Content-Length
        /// smaller than what follows drops the excess; a larger one is an error.
        case datagram
        /// A stream or WebSocket frame already cut to exactly one message.
        case exact
    }

    public var limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Parses `bytes` as one message.
    public func parse(_ bytes: ByteBuffer, framing: Framing = .datagram) throws(SIPParseError) -> SIPMessage {
        guard bytes.readableBytes <= limits.maxMessageSize else {
            throw .messageTooLarge(limit: limits.maxMessageSize)
        }
        let head: ParsedHead
        do {
            head = try bytes.withUnsafeReadableBytes { raw throws(SIPParseError) -> ParsedHead in
                try Self.parseHead(raw, maxHeaderLines: limits.maxHeaderLines)
            }
        }
        let available = bytes.readableBytes - head.bodyStart
        var bodyLength = available
        if let announced = head.contentLength {
            if announced > available {
                throw .bodyShorterThanContentLength(announced: announced, received: available)
            }
            bodyLength = announced
        }
        let body = bytes.getSlice(at: bytes.readerIndex + head.bodyStart, length: bodyLength) ?? ByteBuffer()
        // Keep only what belongs to this message, so trailing bytes of a datagram never leave again.
        let own = bytes.getSlice(at: bytes.readerIndex, length: head.bodyStart + bodyLength) ?? bytes
        return SIPMessage(buffer: own, startLine: head.startLine, fields: head.fields, body: body)
    }

    /// Reads what it can of bytes that ``parse(_:framing:)`` refused, so that a 400 can still be
    /// addressed: a broken request line, a bad or missing Content-Length and a truncated body are
    /// overlooked. Returns nil for responses (never answered) and for anything without headers.
    public func salvage(_ bytes: ByteBuffer) -> SIPMessage? {
        let head = try? bytes.withUnsafeReadableBytes { raw throws(SIPParseError) -> ParsedHead in
            try Self.parseHead(raw, maxHeaderLines: limits.maxHeaderLines, lenient: true)
        }
        guard let head, case .request = head.startLine else { return nil }
        let own = bytes.getSlice(at: bytes.readerIndex, length: min(head.bodyStart, bytes.readableBytes)) ?? bytes
        return SIPMessage(buffer: own, startLine: head.startLine, fields: head.fields, body: ByteBuffer())
    }

    /// Convenience for tests and tools.
    public func parse(_ string: String) throws(SIPParseError) -> SIPMessage {
        try parse(ByteBuffer(string: string))
    }

    // MARK: - Head

    package struct ParsedHead {
        var startLine: SIPMessage.StartLine
        var fields: [SIPHeaderField]
        var bodyStart: Int
        var contentLength: Int?
    }

    package static func parseHead(_ raw: UnsafeRawBufferPointer, maxHeaderLines: Int,
                                  lenient: Bool = false) throws(SIPParseError) -> ParsedHead {
        let count = raw.count
        var position = 0
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        while position < count, raw[position] == 0x0D || raw[position] == 0x0A { position += 1 }
        guard position < count else { throw .emptyMessage }

        let startLineEnd = lineEnd(raw, from: position)
        guard startLineEnd.contentEnd > position else { throw .emptyMessage }
        let startLine: SIPMessage.StartLine
        do {
            startLine = try parseStartLine(raw, position..<startLineEnd.contentEnd)
        } catch {
            guard lenient else { throw error }
            if raw[position] == UInt8(ascii: "S"), case .invalidStatusCode = error { throw error }
            var methodEnd = position
            while methodEnd < startLineEnd.contentEnd, isTokenByte(raw[methodEnd]) { methodEnd += 1 }
            let method = methodEnd > position
                ? SIPMethod.intern(UnsafeRawBufferPointer(rebasing: raw[position..<methodEnd]))
                : SIPMethod("UNKNOWN")
            startLine = .request(method: method, uri: .text("sip:invalid"), version: .text("SIP/2.0"))
        }
        position = startLineEnd.next

        var fields: [SIPHeaderField] = []
        fields.reserveCapacity(16)
        var contentLength: Int?
        var sawContentLength = false
        while true {
            guard position < count else {
                // No empty line: the head ends with the bytes (a datagram without a body separator).
                break
            }
            let byte = raw[position]
            if byte == 0x0D || byte == 0x0A {
                // The empty line that ends the head.
                if byte == 0x0D, position + 1 < count, raw[position + 1] == 0x0A {
                    position += 2
                } else {
                    position += 1
                }
                break
            }
            if byte == 0x20 || byte == 0x09 {
                // A continuation line with no header before it.
                guard lenient else { throw .malformedHeaderLine }
                position = lineEnd(raw, from: position).next
                continue
            }
            guard fields.count < maxHeaderLines else { throw .messageTooLarge(limit: maxHeaderLines) }
            let lineStart = position
            // Header name: a token, then optional whitespace, then a colon.
            var nameEnd = position
            while nameEnd < count, isTokenByte(raw[nameEnd]) { nameEnd += 1 }
            guard nameEnd > position else {
                guard lenient else { throw .malformedHeaderLine }
                position = lineEnd(raw, from: position).next
                continue
            }
            var colon = nameEnd
            while colon < count, raw[colon] == 0x20 || raw[colon] == 0x09 { colon += 1 }
            guard colon < count, raw[colon] == UInt8(ascii: ":") else {
                guard lenient else { throw .malformedHeaderLine }
                position = lineEnd(raw, from: position).next
                continue
            }
            // The value runs to the end of the line and every continuation line after it.
            var valueStart = colon + 1
            var end = lineEnd(raw, from: valueStart)
            while end.next < count, raw[end.next] == 0x20 || raw[end.next] == 0x09 {
                end = lineEnd(raw, from: end.next)
            }
            var valueEnd = end.contentEnd
            while valueStart < valueEnd, isWhitespace(raw[valueStart]) { valueStart += 1 }
            while valueEnd > valueStart, isWhitespace(raw[valueEnd - 1]) { valueEnd -= 1 }

            let name = UnsafeRawBufferPointer(rebasing: raw[position..<nameEnd])
            let known = SIPHeaderName.lookup(name)
            if known == SIPHeaderName.contentLength.knownIndex {
                if sawContentLength, !lenient { throw .multipleContentLength }
                sawContentLength = true
                contentLength = try? parseContentLength(UnsafeRawBufferPointer(rebasing: raw[valueStart..<valueEnd]))
                if contentLength == nil, !lenient { throw .invalidContentLength }
            }
            fields.append(SIPHeaderField(
                knownIndex: known,
                nameRange: position..<nameEnd,
                valueRange: valueStart..<valueEnd,
                lineRange: lineStart..<end.next
            ))
            position = end.next
        }
        return ParsedHead(startLine: startLine, fields: fields, bodyStart: position, contentLength: contentLength)
    }

    /// Where a line's content ends (before CRLF or a bare LF) and where the next line starts.
    @inline(__always)
    private static func lineEnd(_ raw: UnsafeRawBufferPointer, from start: Int) -> (contentEnd: Int, next: Int) {
        var index = start
        let count = raw.count
        while index < count {
            let byte = raw[index]
            if byte == 0x0A { return (index, index + 1) }
            if byte == 0x0D {
                if index + 1 < count, raw[index + 1] == 0x0A { return (index, index + 2) }
                return (index, index + 1)
            }
            index += 1
        }
        return (count, count)
    }

    private static func parseContentLength(_ value: UnsafeRawBufferPointer) throws(SIPParseError) -> Int {
        guard !value.isEmpty, value.count <= 9 else { throw .invalidContentLength }
        var result = 0
        for byte in value {
            guard byte >= 0x30, byte <= 0x39 else { throw .invalidContentLength }
            result = result * 10 + Int(byte - 0x30)
        }
        return result
    }

    // MARK: - Start line

    private static let sipSlash: [UInt8] = Array("sip/".utf8)
    private static let sip20: [UInt8] = Array("sip/2.0".utf8)

    private static func parseStartLine(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) throws(SIPParseError) -> SIPMessage.StartLine {
        let line = UnsafeRawBufferPointer(rebasing: raw[range])
        let base = range.lowerBound
        if line.count >= 4, asciiCaseInsensitiveEqual(UnsafeRawBufferPointer(rebasing: line[0..<4]), Self.sipSlash) {
            return try parseStatusLine(line, base: base)
        }
        return try parseRequestLine(line, base: base)
    }

    /// Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §25.1: exactly one SP each;
    /// RFC 4475 §3.1.2.9/§3.1.2.10 leave extra whitespace to the element, and Tern refuses it).
    private static func parseRequestLine(_ line: UnsafeRawBufferPointer, base: Int) throws(SIPParseError) -> SIPMessage.StartLine {
        guard let first = line.first, !isWhitespace(first) else { throw .malformedStartLine("leading whitespace") }
        if let last = line.last, last == 0x20 || last == 0x09 { throw .malformedStartLine("trailing whitespace") }
        // The two separators, held in locals: an array of them was two allocations per request.
        var firstSpace = -1
        var lastSpace = -1
        for index in 0..<line.count where line[index] == 0x20 || line[index] == 0x09 {
            if firstSpace < 0 {
                firstSpace = index
                continue
            }
            if max(firstSpace, lastSpace) + 1 == index { throw .malformedStartLine("extra whitespace") }
            guard lastSpace < 0 else { throw .malformedStartLine("whitespace in Request-URI") }
            lastSpace = index
        }
        guard lastSpace >= 0 else { throw .malformedStartLine(firstSpace < 0 ? "no Request-URI" : "no SIP-Version") }
        guard line[firstSpace] == 0x20, line[lastSpace] == 0x20 else { throw .malformedStartLine("tab in Request-Line") }
        guard lastSpace > firstSpace + 1 else { throw .malformedStartLine("extra whitespace") }
        let methodBytes = UnsafeRawBufferPointer(rebasing: line[0..<firstSpace])
        guard methodBytes.allSatisfy(isTokenByte) else { throw .malformedStartLine("method is not a token") }
        let uriRange = (firstSpace + 1)..<lastSpace
        let versionRange = (lastSpace + 1)..<line.count
        let versionBytes = UnsafeRawBufferPointer(rebasing: line[versionRange])
        try checkVersion(versionBytes)
        return .request(
            method: SIPMethod.intern(methodBytes),
            uri: .original((base + uriRange.lowerBound)..<(base + uriRange.upperBound)),
            version: .original((base + versionRange.lowerBound)..<(base + versionRange.upperBound))
        )
    }

    /// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §25.1).
    private static func parseStatusLine(_ line: UnsafeRawBufferPointer, base: Int) throws(SIPParseError) -> SIPMessage.StartLine {
        guard let firstSpace = line.firstIndex(of: 0x20) else { throw .invalidStatusCode }
        try checkVersion(UnsafeRawBufferPointer(rebasing: line[0..<firstSpace]))
        var index = firstSpace + 1
        var code = 0
        var digits = 0
        while index < line.count, line[index] >= 0x30, line[index] <= 0x39 {
            digits += 1
            guard digits <= 3 else { throw .invalidStatusCode }
            code = code * 10 + Int(line[index] - 0x30)
            index += 1
        }
        guard digits == 3, (100...699).contains(code) else { throw .invalidStatusCode }
        // RFC 4475 §3.1.1.11: the reason phrase may be empty, with or without the SP before it.
        var reasonStart = index
        if index < line.count {
            guard line[index] == 0x20 else { throw .invalidStatusCode }
            reasonStart = index + 1
        }
        return .response(
            code: code,
            reason: .original((base + reasonStart)..<(base + line.count)),
            version: .original(base..<(base + firstSpace))
        )
    }

    private static func checkVersion(_ bytes: UnsafeRawBufferPointer) throws(SIPParseError) {
        if asciiCaseInsensitiveEqual(bytes, Self.sip20) { return }
        let text = String(decoding: bytes, as: UTF8.self)
        if bytes.count >= 5, asciiCaseInsensitiveEqual(UnsafeRawBufferPointer(rebasing: bytes[0..<4]), Self.sipSlash) {
            throw .unsupportedVersion(text)
        }
        throw .malformedStartLine("bad SIP-Version")
    }
}

// MARK: - Character classes (RFC 3261 §25.1)

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
@inline(__always)
package func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "%"), UInt8(ascii: "*"),
         UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "`"), UInt8(ascii: "'"), UInt8(ascii: "~"): true
    default: false
    }
}

@inline(__always)
package func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
}
