public import NIOCore

/// A SIP request or response, kept as the bytes it arrived in plus an index of its header lines.
///
/// Parsing builds the index in one scan (see ``SIPMessageParser``); typed views such as ``topVia()``
/// or ``cseq()`` parse a header value only when asked. Edits re-render only what they touch: an
/// unchanged header is serialized by copying its original bytes.
public struct SIPMessage: Sendable {
    /// The message as received (or as first rendered), start line first.
    package var buffer: ByteBuffer
    package var startLine: StartLine { didSet { parsed = nil } }
    /// Edited only through SIPMessage+Editing.swift, where each edit forgets what validation parsed
    /// when it touches a header the parsed headers hold (``forgetParsed(editing:)``).
    package internal(set) var fields: [SIPHeaderField]
    /// Headers validation already parsed (``validateRequestKeepingParsed(supportedSchemes:)``), so
    /// that the transaction layer, the proxy and the registrar do not parse them again. Any edit of
    /// the start line or the headers drops them.
    package var parsed: ParsedHeaders?
    /// The message body; its length is what Content-Length says on the wire.
    public internal(set) var body: ByteBuffer

    package enum StartLine: Sendable {
        case request(method: SIPMethod, uri: TextSource, version: TextSource)
        case response(code: Int, reason: TextSource, version: TextSource)
    }

    /// Bytes that are either a range of ``buffer`` or a string set by an edit.
    package enum TextSource: Sendable {
        case original(Range<Int>)
        case text(String)
    }

    package init(buffer: ByteBuffer, startLine: StartLine, fields: [SIPHeaderField], body: ByteBuffer) {
        self.buffer = buffer
        self.startLine = startLine
        self.fields = fields
        self.body = body
    }

    // MARK: - Start line

    public var isRequest: Bool {
        if case .request = startLine { return true }
        return false
    }

    /// The request method, or nil for a response.
    public var method: SIPMethod? {
        if case .request(let method, _, _) = startLine { return method }
        return nil
    }

    /// The status code, or nil for a request.
    public var statusCode: Int? {
        if case .response(let code, _, _) = startLine { return code }
        return nil
    }

    /// The Request-URI as written, or nil for a response.
    public var requestURIString: String? {
        if case .request(_, let uri, _) = startLine { return text(uri) }
        return nil
    }

    /// The reason phrase of a response.
    public var reasonPhrase: String? {
        if case .response(_, let reason, _) = startLine { return text(reason) }
        return nil
    }

    /// The SIP-Version of the start line, as written.
    public var version: String {
        switch startLine {
        case .request(_, _, let version), .response(_, _, let version): text(version)
        }
    }

    /// The Request-URI, parsed.
    public func requestURI() throws(SIPParseError) -> SIPURI {
        if let uri = parsed?.requestURI { return uri }
        guard case .request(_, let source, _) = startLine else { throw .malformedStartLine("not a request") }
        // Read from the message's bytes: through a String first, it took two allocations.
        let bytes: [UInt8]
        switch source {
        case .original(let range): bytes = buffer.getBytes(at: buffer.readerIndex + range.lowerBound, length: range.count) ?? []
        case .text(let text): bytes = Array(text.utf8)
        }
        do {
            return try SIPURI.parse(bytes: bytes[...])
        } catch {
            throw .malformedRequestURI(error.reason)
        }
    }

    package func text(_ source: TextSource) -> String {
        switch source {
        case .original(let range):
            return buffer.getString(at: buffer.readerIndex + range.lowerBound, length: range.count) ?? ""
        case .text(let string):
            return string
        }
    }

    // MARK: - Header access

    /// All header lines, in order, as (name, value) with folding undone.
    public var headers: [(name: String, value: String)] {
        fields.indices.map { (fieldName($0), fieldValue($0)) }
    }

    /// Whether at least one header of this name is present.
    public func contains(_ name: SIPHeaderName) -> Bool {
        firstFieldIndex(name) != nil
    }

    /// How many header lines carry this name (comma-joined values on one line count once).
    public func lineCount(_ name: SIPHeaderName) -> Int {
        var count = 0
        for index in fields.indices where matches(index, name) { count += 1 }
        return count
    }

    /// The value of the first header line with this name.
    public func firstValue(_ name: SIPHeaderName) -> String? {
        firstFieldIndex(name).map { fieldValue($0) }
    }

    /// Every value of this header in order: one per line, and for list headers (RFC 3261 §7.3.1)
    /// each comma-separated element separately.
    public func values(_ name: SIPHeaderName) -> [String] {
        var result: [String] = []
        for index in fields.indices where matches(index, name) {
            let value = fieldValue(index)
            if name.isCommaSeparatedList {
                result.append(contentsOf: HeaderValueSplitter.splitList(value))
            } else {
                result.append(value)
            }
        }
        return result
    }

    package func firstFieldIndex(_ name: SIPHeaderName) -> Int? {
        fields.indices.first { matches($0, name) }
    }

    package func matches(_ index: Int, _ name: SIPHeaderName) -> Bool {
        let field = fields[index]
        if let known = name.knownIndex { return field.knownIndex == known }
        if field.knownIndex != nil { return false }
        return fieldName(index).lowercased() == name.lowercased
    }

    package func fieldName(_ index: Int) -> String {
        let field = fields[index]
        if let added = field.addedName { return added.canonical }
        return buffer.getString(at: buffer.readerIndex + field.nameRange.lowerBound, length: field.nameRange.count) ?? ""
    }

    /// A header value with line folding replaced by single spaces (RFC 3261 §7.3.1).
    /// ``fieldValue(_:)`` as bytes, for the parsers of typed values.
    package func fieldBytes(_ index: Int) -> [UInt8] {
        let field = fields[index]
        if let added = field.addedValue { return Array(added.utf8) }
        let range = field.valueRange
        return buffer.withUnsafeReadableBytes { raw -> [UInt8] in
            guard range.lowerBound >= 0, range.upperBound <= raw.count else { return [] }
            return HeaderValueSplitter.unfoldedBytes(UnsafeRawBufferPointer(rebasing: raw[range]))
        }
    }

    package func fieldValue(_ index: Int) -> String {
        let field = fields[index]
        if let added = field.addedValue { return added }
        let range = field.valueRange
        return buffer.withUnsafeReadableBytes { raw -> String in
            guard range.lowerBound >= 0, range.upperBound <= raw.count else { return "" }
            let slice = UnsafeRawBufferPointer(rebasing: raw[range])
            return HeaderValueSplitter.unfold(slice)
        }
    }
}

/// One header line of a ``SIPMessage``: where its name and value are, or what an edit put there.
///
/// Kept small (offsets as 32-bit integers, edits behind one reference) because a message holds an
/// array of these and the parser builds one per header line.
package struct SIPHeaderField: Sendable {
    package var knownIndex: UInt8?
    private var nameStart: Int32
    private var nameEnd: Int32
    private var valueStart: Int32
    private var valueEnd: Int32
    /// The whole original line including its CRLF; -1 when the field was added or edited.
    private var lineStart: Int32
    private var lineEnd: Int32
    private var edit: Edit?

    /// An added or replaced header: its name and value as text.
    final class Edit: Sendable {
        let name: SIPHeaderName
        let value: String
        init(name: SIPHeaderName, value: String) {
            self.name = name
            self.value = value
        }
    }

    package init(knownIndex: UInt8?, nameRange: Range<Int>, valueRange: Range<Int>, lineRange: Range<Int>?) {
        self.knownIndex = knownIndex
        self.nameStart = Int32(truncatingIfNeeded: nameRange.lowerBound)
        self.nameEnd = Int32(truncatingIfNeeded: nameRange.upperBound)
        self.valueStart = Int32(truncatingIfNeeded: valueRange.lowerBound)
        self.valueEnd = Int32(truncatingIfNeeded: valueRange.upperBound)
        self.lineStart = Int32(truncatingIfNeeded: lineRange?.lowerBound ?? -1)
        self.lineEnd = Int32(truncatingIfNeeded: lineRange?.upperBound ?? -1)
        self.edit = nil
    }

    package init(name: SIPHeaderName, value: String) {
        self.knownIndex = name.knownIndex
        self.nameStart = 0
        self.nameEnd = 0
        self.valueStart = 0
        self.valueEnd = 0
        self.lineStart = -1
        self.lineEnd = -1
        self.edit = Edit(name: name, value: value)
    }

    package var nameRange: Range<Int> { Int(nameStart)..<Int(max(nameStart, nameEnd)) }
    package var valueRange: Range<Int> { Int(valueStart)..<Int(max(valueStart, valueEnd)) }
    package var lineRange: Range<Int>? {
        lineStart < 0 ? nil : Int(lineStart)..<Int(max(lineStart, lineEnd))
    }
    package var addedName: SIPHeaderName? { edit?.name }
    package var addedValue: String? { edit?.value }
}
