public import NIOCore

/// A `multipart/mixed` body (RFC 2046 §5.1), as SIP carries SDP beside ISUP or other
/// application data (RFC 3204, RFC 5621).
///
/// Part bodies stay bytes from end to end, since ISUP and similar parts are binary; only part
/// headers are text. Parsing ignores the preamble and the epilogue.
public struct MultipartBody: Sendable, Hashable {
    /// The parts, in order.
    public var parts: [Part]

    public init(parts: [Part] = []) {
        self.parts = parts
    }

    /// Parses the readable bytes of `body`, split at `boundary` (the `boundary` parameter of the
    /// message's Content-Type, without quotes).
    ///
    /// A delimiter is `"--" + boundary` at the start of the body or right after CRLF, followed by
    /// optional spaces or tabs and CRLF; the close delimiter is `"--" + boundary + "--"`
    /// (RFC 2046 §5.1.1). The CRLF before a delimiter belongs to the delimiter, not to the part.
    /// Part bodies are slices of `body`: copy them if they must outlive it.
    /// - Throws: ``MultipartBody/Error`` naming the first fault.
    public init(parsing body: ByteBuffer, boundary: String) throws(MultipartBody.Error) {
        try Self.validate(boundary: boundary)
        let bytes = Array(body.readableBytesView)
        let dashBoundary = Array("--".utf8) + Array(boundary.utf8)
        let scanner = DelimiterScanner(bytes: bytes, dashBoundary: dashBoundary)
        // RFC 2046 §5.1.1: dash-boundary CRLF body-part ... close-delimiter; at least one part.
        guard var current = scanner.next(from: 0), !current.isClose else { throw .missingFirstDelimiter }
        var parts: [Part] = []
        while !current.isClose {
            guard let next = scanner.next(from: current.end) else { throw .missingCloseDelimiter }
            // The part runs from after the delimiter line to the CRLF before the next delimiter.
            let partStart = current.end
            let partEnd = max(partStart, next.start - 2)
            parts.append(try Self.parsePart(
                bytes, range: partStart..<partEnd, in: body, index: parts.count
            ))
            current = next
        }
        self.parts = parts
    }

    /// Serializes the parts with `boundary`, with no preamble or epilogue.
    ///
    /// Each part is written as its delimiter line, its header lines, a blank line and its body.
    /// - Throws: ``MultipartBody/Error/invalidBoundary`` for a boundary RFC 2046 §5.1.1 does not
    ///   allow (use ``makeBoundary()`` if a received one fails), ``MultipartBody/Error/noParts``
    ///   for an empty body, ``MultipartBody/Error/boundaryInPart(index:)`` if a part's body or
    ///   headers contain the delimiter, and ``MultipartBody/Error/invalidHeader(part:)`` for a header that would
    ///   break the framing.
    public func serialized(
        boundary: String, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(MultipartBody.Error) -> ByteBuffer {
        try Self.validate(boundary: boundary)
        guard !parts.isEmpty else { throw .noParts }
        guard boundary.utf8.allSatisfy(MultipartSyntax.isBoundaryCharacter),
              boundary.utf8.last != UInt8(ascii: " ")
        else {
            throw .invalidBoundary
        }
        let delimiter = Array("--".utf8) + Array(boundary.utf8)
        var capacity = delimiter.count + 4
        for part in parts {
            capacity += delimiter.count + 6 + part.body.readableBytes
            for field in part.headers { capacity += field.name.utf8.count + field.value.utf8.count + 4 }
        }
        var out = allocator.buffer(capacity: capacity)
        for (index, part) in parts.enumerated() {
            for field in part.headers {
                guard MultipartSyntax.isValidHeaderName(field.name),
                      MultipartSyntax.isValidHeaderValue(field.value)
                else {
                    throw .invalidHeader(part: index)
                }
                if field.name.utf8.starts(with: delimiter) { throw .boundaryInPart(index: index) }
            }
            if MultipartSyntax.containsLineStarting(with: delimiter, in: part.body) {
                throw .boundaryInPart(index: index)
            }
            if index > 0 { out.writeStaticString("\r\n") }
            out.writeBytes(delimiter)
            out.writeStaticString("\r\n")
            for field in part.headers {
                out.writeString(field.name)
                out.writeStaticString(": ")
                out.writeString(field.value)
                out.writeStaticString("\r\n")
            }
            out.writeStaticString("\r\n")
            out.writeImmutableBuffer(part.body)
        }
        out.writeStaticString("\r\n")
        out.writeBytes(delimiter)
        out.writeStaticString("--\r\n")
        return out
    }

    /// A fresh random boundary of 32 hexadecimal digits after a fixed prefix.
    public static func makeBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return "tern-" + MultipartSyntax.hex16(high) + MultipartSyntax.hex16(low)
    }

    // MARK: - Editing

    /// The index of the first part whose Content-Type media type is `mediaType`
    /// (such as `application/sdp`; parameters ignored, ASCII case-insensitive).
    public func firstIndex(ofContentType mediaType: String) -> Int? {
        parts.firstIndex { $0.hasContentType(mediaType) }
    }

    /// The first part whose Content-Type media type is `mediaType`.
    public func firstPart(withContentType mediaType: String) -> Part? {
        firstIndex(ofContentType: mediaType).map { parts[$0] }
    }

    /// Replaces the first part of `mediaType` with `part`, or appends `part` if there is none.
    public mutating func replaceFirstPart(withContentType mediaType: String, by part: Part) {
        if let index = firstIndex(ofContentType: mediaType) {
            parts[index] = part
        } else {
            parts.append(part)
        }
    }

    /// Removes every part whose Content-Type media type is `mediaType`.
    /// - Returns: How many parts were removed.
    @discardableResult
    public mutating func removeParts(withContentType mediaType: String) -> Int {
        let before = parts.count
        parts.removeAll { $0.hasContentType(mediaType) }
        return before - parts.count
    }

    // MARK: - Parsing helpers

    private static func validate(boundary: String) throws(MultipartBody.Error) {
        // RFC 2046 §5.1.1: 1 to 70 characters; parsing also tolerates any byte but CR and LF.
        let utf8 = boundary.utf8
        guard !utf8.isEmpty, utf8.count <= 70,
              !utf8.contains(UInt8(ascii: "\r")), !utf8.contains(UInt8(ascii: "\n"))
        else { throw .invalidBoundary }
    }

    private static func parsePart(
        _ bytes: [UInt8], range: Range<Int>, in body: ByteBuffer, index: Int
    ) throws(MultipartBody.Error) -> Part {
        // RFC 2046 §5.1.1: body-part := MIME-part-headers [CRLF *OCTET]. With no headers the
        // part starts with the blank line; with no blank line at all it is headers only.
        var headerEnd = range.upperBound
        var bodyStart = range.upperBound
        if range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\r"),
           bytes[range.lowerBound + 1] == UInt8(ascii: "\n") {
            headerEnd = range.lowerBound
            bodyStart = range.lowerBound + 2
        } else if let blank = firstBlankLine(in: bytes, range: range) {
            headerEnd = blank + 2  // keep the CRLF ending the last header line
            bodyStart = blank + 4
        }
        let headers = try parseHeaders(bytes[range.lowerBound..<headerEnd], part: index)
        let length = range.upperBound - bodyStart
        guard length >= 0,
              let slice = body.getSlice(at: body.readerIndex + bodyStart, length: length)
        else { throw .malformedPartHeaders(part: index) }
        return Part(headers: headers, body: slice)
    }

    /// The offset of the first CRLFCRLF in `range`.
    private static func firstBlankLine(in bytes: [UInt8], range: Range<Int>) -> Int? {
        var index = range.lowerBound
        while index + 3 < range.upperBound {
            if bytes[index] == UInt8(ascii: "\r"), bytes[index + 1] == UInt8(ascii: "\n"),
               bytes[index + 2] == UInt8(ascii: "\r"), bytes[index + 3] == UInt8(ascii: "\n") {
                return index
            }
            index += 1
        }
        return nil
    }

    /// Parses `Name: value` lines ending in CRLF, unfolding continuation lines (RFC 5322 §2.2.3).
    private static func parseHeaders(
        _ bytes: ArraySlice<UInt8>, part: Int
    ) throws(MultipartBody.Error) -> [HeaderField] {
        guard String(decoding: bytes, as: UTF8.self).utf8.elementsEqual(bytes) else {
            throw .malformedPartHeaders(part: part)
        }
        var fields: [HeaderField] = []
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "\r"), index + 1 < bytes.endIndex, bytes[index + 1] == UInt8(ascii: "\n") {
                lines.append(bytes[start..<index])
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        if start < bytes.endIndex { lines.append(bytes[start..<bytes.endIndex]) }
        for line in lines {
            guard let first = line.first else { throw .malformedPartHeaders(part: part) }
            if first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
                guard !fields.isEmpty else { throw .malformedPartHeaders(part: part) }
                let more = MultipartSyntax.trimmedWhitespace(line)
                if !more.isEmpty {
                    fields[fields.count - 1].value += " " + String(decoding: more, as: UTF8.self)
                }
                continue
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw .malformedPartHeaders(part: part) }
            let name = MultipartSyntax.trimmedWhitespace(line[line.startIndex..<colon])
            guard !name.isEmpty, name.allSatisfy(MultipartSyntax.isHeaderNameByte) else {
                throw .malformedPartHeaders(part: part)
            }
            let value = MultipartSyntax.trimmedWhitespace(line[(colon + 1)...])
            guard !value.contains(UInt8(ascii: "\r")), !value.contains(UInt8(ascii: "\n")), !value.contains(0) else {
                throw .malformedPartHeaders(part: part)
            }
            fields.append(HeaderField(
                name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)
            ))
        }
        return fields
    }
}

// MARK: - Part

extension MultipartBody {
    /// One `Name: value` line of a part's header section.
    public struct HeaderField: Sendable, Hashable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// One body part: its own header fields and its bytes.
    public struct Part: Sendable, Hashable {
        /// The header fields in order (Content-Type, Content-Disposition, Content-ID, …).
        public var headers: [HeaderField]
        /// The part's bytes, without the CRLF that precedes the next delimiter.
        public var body: ByteBuffer

        public init(headers: [HeaderField], body: ByteBuffer) {
            self.headers = headers
            self.body = body
        }

        /// A part with a Content-Type and optional further headers, such as Content-Disposition.
        public init(contentType: String, body: ByteBuffer, otherHeaders: [HeaderField] = []) {
            self.headers = [HeaderField(name: "Content-Type", value: contentType)] + otherHeaders
            self.body = body
        }

        /// The value of the first header named `name` (ASCII case-insensitive).
        public subscript(header name: String) -> String? {
            headers.first { MultipartSyntax.headerNamesEqual($0.name, name) }?.value
        }

        /// The Content-Type value, parameters included.
        public var contentType: String? { self[header: "Content-Type"] }

        /// The Content-Disposition value, parameters included.
        public var contentDisposition: String? { self[header: "Content-Disposition"] }

        /// Replaces every header named `name` by one with `value`, or appends it; nil removes them.
        public mutating func setHeader(_ name: String, _ value: String?) {
            let position = headers.firstIndex { MultipartSyntax.headerNamesEqual($0.name, name) }
            headers.removeAll { MultipartSyntax.headerNamesEqual($0.name, name) }
            guard let value else { return }
            let field = HeaderField(name: name, value: value)
            if let position, position <= headers.count {
                headers.insert(field, at: position)
            } else {
                headers.append(field)
            }
        }

        /// Whether the Content-Type media type (before any `;`) equals `mediaType`, ignoring ASCII case.
        /// A part without Content-Type is `text/plain` (RFC 2046 §5.1.1).
        public func hasContentType(_ mediaType: String) -> Bool {
            let value = Array((contentType ?? "text/plain").utf8)
            let bare = value.prefix { $0 != UInt8(ascii: ";") }
            return MultipartSyntax.headerNamesEqual(MultipartSyntax.trimmedWhitespace(bare), mediaType.utf8)
        }
    }
}

// MARK: - Error

extension MultipartBody {
    /// Why a multipart body cannot be parsed or serialized.
    public enum Error: Swift.Error, Sendable, Hashable {
        /// The boundary is empty, longer than 70 characters or holds CR/LF; when serializing,
        /// also a character outside RFC 2046 `bchars` or a trailing space.
        case invalidBoundary
        /// No `--boundary` line opens a first part (a close delimiter alone does not).
        case missingFirstDelimiter
        /// The body ends without the `--boundary--` close delimiter.
        case missingCloseDelimiter
        /// A part's header section is not `Name: value` lines of UTF-8 (index from 0).
        case malformedPartHeaders(part: Int)
        /// Serializing: there are no parts, which RFC 2046 §5.1.1 does not allow.
        case noParts
        /// Serializing: a part's body, or a header line, starts a line with the delimiter.
        case boundaryInPart(index: Int)
        /// Serializing: a header name is not a token or its value holds CR, LF or NUL.
        case invalidHeader(part: Int)
    }
}

// MARK: - Delimiter scanning

extension MultipartBody {
    /// Finds delimiter lines: `--boundary` at offset 0 or after CRLF, then `--` or LWSP* CRLF.
    private struct DelimiterScanner {
        struct Delimiter {
            /// Offset of the first `-`.
            var start: Int
            /// Offset just past the delimiter line's CRLF (or past `--` of a close delimiter).
            var end: Int
            var isClose: Bool
        }

        let bytes: [UInt8]
        let dashBoundary: [UInt8]

        func next(from offset: Int) -> Delimiter? {
            var candidate = offset
            while candidate + dashBoundary.count <= bytes.count {
                let atLineStart = candidate == 0 || (candidate >= 2
                    && bytes[candidate - 2] == UInt8(ascii: "\r") && bytes[candidate - 1] == UInt8(ascii: "\n"))
                if atLineStart, bytes[candidate..<(candidate + dashBoundary.count)].elementsEqual(dashBoundary),
                   let delimiter = finish(at: candidate) {
                    return delimiter
                }
                candidate += 1
            }
            return nil
        }

        private func finish(at start: Int) -> Delimiter? {
            var index = start + dashBoundary.count
            if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "-"), bytes[index + 1] == UInt8(ascii: "-") {
                return Delimiter(start: start, end: index + 2, isClose: true)
            }
            while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") {
                index += 1
            }
            guard index + 1 < bytes.count,
                  bytes[index] == UInt8(ascii: "\r"), bytes[index + 1] == UInt8(ascii: "\n")
            else { return nil }
            return Delimiter(start: start, end: index + 2, isClose: false)
        }
    }
}

// MARK: - Helpers

/// Byte-level helpers for MIME framing, namespaced so they cannot clash with module-wide names.
private enum MultipartSyntax {
    /// RFC 2046 §5.1.1 `bchars`: DIGIT / ALPHA / `'()+_,-./:=?` and space.
    static func isBoundaryCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return true
        default:
            return "'()+_,-./:=? ".utf8.contains(byte)
        }
    }

    /// RFC 5322 §3.6.8 field name: printable ASCII except `:`.
    static func isHeaderNameByte(_ byte: UInt8) -> Bool {
        byte > 32 && byte < 127 && byte != UInt8(ascii: ":")
    }

    static func isValidHeaderName(_ name: String) -> Bool {
        !name.utf8.isEmpty && name.utf8.allSatisfy(isHeaderNameByte)
    }

    static func isValidHeaderValue(_ value: String) -> Bool {
        !value.utf8.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
    }

    static func headerNamesEqual(_ lhs: String, _ rhs: String) -> Bool {
        headerNamesEqual(lhs.utf8, rhs.utf8)
    }

    /// ASCII case-insensitive byte comparison.
    static func headerNamesEqual(_ lhs: some Collection<UInt8>, _ rhs: some Collection<UInt8>) -> Bool {
        lhs.count == rhs.count && zip(lhs, rhs).allSatisfy { a, b in
            (a >= 65 && a <= 90 ? a + 32 : a) == (b >= 65 && b <= 90 ? b + 32 : b)
        }
    }

    static func trimmedWhitespace(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var bytes = bytes
        while let first = bytes.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { bytes.removeFirst() }
        while let last = bytes.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { bytes.removeLast() }
        return bytes
    }

    /// Whether `buffer` has `prefix` at its start or right after a CRLF.
    static func containsLineStarting(with prefix: [UInt8], in buffer: ByteBuffer) -> Bool {
        let bytes = Array(buffer.readableBytesView)
        var index = 0
        while index + prefix.count <= bytes.count {
            let atLineStart = index == 0
                || (index >= 2 && bytes[index - 2] == UInt8(ascii: "\r") && bytes[index - 1] == UInt8(ascii: "\n"))
            if atLineStart, bytes[index..<(index + prefix.count)].elementsEqual(prefix) { return true }
            index += 1
        }
        return false
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
