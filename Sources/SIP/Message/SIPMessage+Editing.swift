public import NIOCore

/// Edits that a proxy or server makes. Each touches only the lines it changes; the rest keep their
/// original bytes.
extension SIPMessage {
    /// Appends a header line at the end of the header section.
    public mutating func appendHeader(_ name: SIPHeaderName, _ value: String) {
        forgetParsed(editing: name)
        fields.append(SIPHeaderField(name: name, value: value))
    }

    /// Makes room for `extra` more header lines: a copy about to be edited (a forwarded request)
    /// then takes one allocation instead of a copy and a second one to grow.
    public mutating func reserveHeaderLines(_ extra: Int) {
        fields.reserveCapacity(fields.count + extra)
    }

    /// Inserts a header line before every other line of that name (or at the top if none), as a
    /// proxy prepends Via and Record-Route.
    public mutating func prependHeader(_ name: SIPHeaderName, _ value: String) {
        forgetParsed(editing: name)
        let index = firstFieldIndex(name) ?? 0
        fields.insert(SIPHeaderField(name: name, value: value), at: index)
    }

    /// Removes every line of this header.
    public mutating func removeHeaders(_ name: SIPHeaderName) {
        forgetParsed(editing: name)
        var kept: [SIPHeaderField] = []
        kept.reserveCapacity(fields.count)
        for index in fields.indices where !matches(index, name) { kept.append(fields[index]) }
        fields = kept
    }

    /// Removes every header line whose name `keep` refuses; returns how many lines went.
    @discardableResult
    public mutating func keepHeaders(where keep: (SIPHeaderName) -> Bool) -> Int {
        forgetParsed(editing: nil)
        var kept: [SIPHeaderField] = []
        kept.reserveCapacity(fields.count)
        for index in fields.indices {
            let field = fields[index]
            let name: SIPHeaderName
            if let known = field.knownIndex {
                name = SIPHeaderName.known[Int(known)]
            } else {
                name = field.addedName ?? SIPHeaderName(fieldName(index))
            }
            if keep(name) { kept.append(field) }
        }
        let removed = fields.count - kept.count
        fields = kept
        return removed
    }

    /// Replaces every line of this header by one line with `value` (in the place of the first).
    public mutating func setHeader(_ name: SIPHeaderName, _ value: String) {
        forgetParsed(editing: name)
        guard let first = firstFieldIndex(name) else {
            appendHeader(name, value)
            return
        }
        // In place: a proxy sets Max-Forwards on every request it forwards, and a rebuilt list grew
        // one allocation at a time. Later lines of the name (rare) are dropped after.
        fields[first] = SIPHeaderField(name: name, value: value)
        guard fields.indices.dropFirst(first + 1).contains(where: { matches($0, name) }) else { return }
        var kept: [SIPHeaderField] = []
        kept.reserveCapacity(fields.count - 1)
        for index in fields.indices where index <= first || !matches(index, name) {
            kept.append(fields[index])
        }
        fields = kept
    }

    /// ``removeFirstValue(_:)`` for a caller that does not want the value (a proxy dropping its
    /// own Via or Route). Nothing is read into a String: a line that holds one value goes, and one
    /// that holds more keeps its name and the bytes after the first element's comma, as they came.
    public mutating func dropFirstValue(_ name: SIPHeaderName) {
        forgetParsed(editing: name)
        guard let index = firstFieldIndex(name) else { return }
        let field = fields[index]
        guard field.addedValue == nil else {
            removeFirstValue(name)
            return
        }
        let range = field.valueRange
        let rest = buffer.withUnsafeReadableBytes { raw -> Range<Int>? in
            guard range.lowerBound >= 0, range.upperBound <= raw.count else { return nil }
            let value = UnsafeRawBufferPointer(rebasing: raw[range])
            guard var start = HeaderValueSplitter.firstListComma(in: value, from: 0) else { return nil }
            // Past the comma, whitespace, folds, and empty elements ("a, , b").
            while start < value.count, isWhitespace(value[start]) || value[start] == UInt8(ascii: ",") { start += 1 }
            return start < value.count ? range.lowerBound + start..<range.upperBound : nil
        }
        guard let rest else {
            fields.remove(at: index)
            return
        }
        fields[index] = SIPHeaderField(knownIndex: field.knownIndex, nameRange: field.nameRange, valueRange: rest, lineRange: nil)
    }

    /// Removes the first value of a list header: the whole line if it holds one value, otherwise the
    /// first comma-separated element (a proxy removing its own Via or Route). Returns the removed value.
    @discardableResult
    public mutating func removeFirstValue(_ name: SIPHeaderName) -> String? {
        forgetParsed(editing: name)
        guard let index = firstFieldIndex(name) else { return nil }
        let value = fieldValue(index)
        let elements = HeaderValueSplitter.splitList(value)
        guard elements.count > 1, let first = elements.first else {
            fields.remove(at: index)
            return value
        }
        fields[index] = SIPHeaderField(name: name, value: elements.dropFirst().joined(separator: ", "))
        return first
    }

    /// Changes the Request-URI; the rest of the request line is kept.
    public mutating func setRequestURI(_ uri: SIPURI) {
        setRequestURI(spelled: uri.description)
    }

    /// Sets the Request-URI to a URI already spelled out (a binding keeps its contact's text).
    public mutating func setRequestURI(spelled text: String) {
        guard case .request(let method, _, let version) = startLine else { return }
        startLine = .request(method: method, uri: .text(text), version: version)
    }

    /// Replaces the body; Content-Type is set when given and removed for an empty body.
    public mutating func setBody(_ newBody: ByteBuffer, contentType: SIPMediaType? = nil) {
        body = newBody
        if let contentType {
            setHeader(.contentType, contentType.description)
        } else if newBody.readableBytes == 0 {
            removeHeaders(.contentType)
            removeHeaders(.contentEncoding)
        }
    }
}

// MARK: - Building messages

extension SIPMessage {
    /// A new request with the given header lines, in order. Content-Length is added on serialization.
    public static func request(method: SIPMethod, uri: SIPURI, headers: [(SIPHeaderName, String)],
                               body: ByteBuffer = ByteBuffer()) -> SIPMessage {
        SIPMessage(
            buffer: ByteBuffer(),
            startLine: .request(method: method, uri: .text(uri.description), version: .text("SIP/2.0")),
            fields: headers.map { SIPHeaderField(name: $0.0, value: $0.1) },
            body: body
        )
    }

    /// Whether a From/To value carries a `tag` parameter (after the URI's closing `>` when there
    /// is one, so a `;tag=` inside the URI does not count). A byte scan: this runs for every response.
    static func hasTagParameter(_ value: String) -> Bool {
        var value = value
        // Native Strings are contiguous after this, so the scan reads them in place.
        return value.withUTF8(hasTagParameter(in:))
    }

    private static func hasTagParameter(in utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = utf8.lastIndex(of: UInt8(ascii: ">")).map { $0 + 1 } ?? 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: ";") {
                var cursor = index + 1
                while cursor < utf8.count, utf8[cursor] == 0x20 || utf8[cursor] == 0x09 { cursor += 1 }
                if cursor + 3 <= utf8.count, utf8[cursor] | 0x20 == UInt8(ascii: "t"), utf8[cursor + 1] | 0x20 == UInt8(ascii: "a"),
                   utf8[cursor + 2] | 0x20 == UInt8(ascii: "g") {
                    cursor += 3
                    while cursor < utf8.count, utf8[cursor] == 0x20 || utf8[cursor] == 0x09 { cursor += 1 }
                    if cursor < utf8.count, utf8[cursor] == UInt8(ascii: "=") { return true }
                }
            }
            index += 1
        }
        return false
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): Via, From, To, Call-ID and CSeq copied (Record-Route
    /// too for 18x/2xx when asked), a To tag added when `toTag` is given and the To has none.
    public static func response(to request: SIPMessage, status: SIPStatus, toTag: String? = nil,
                                copyRecordRoute: Bool = false) -> SIPMessage {
        var fields: [SIPHeaderField] = []
        fields.reserveCapacity(8)
        let copied = copyRecordRoute ? Self.responseHeadersWithRecordRoute : Self.responseHeaders
        for name in copied {
            for index in request.fields.indices where request.matches(index, name) {
                if name == .to, let toTag {
                    let value = request.fieldValue(index)
                    if !Self.hasTagParameter(value) {
                        // Joined in one String: `value + ";tag=" + toTag` made a second one in between.
                        var tagged = ""
                        tagged.reserveCapacity(value.utf8.count + 5 + toTag.utf8.count)
                        tagged += value
                        tagged += ";tag="
                        tagged += toTag
                        fields.append(SIPHeaderField(name: name, value: tagged))
                        continue
                    }
                }
                // The request's line itself when it is written plainly: the response shares the
                // request's bytes and copies the line when written, with no string or edit made
                // for it. A compact name or a folded value is rendered anew, in full and unfolded.
                if request.isPlainLine(index, name) {
                    fields.append(request.fields[index])
                } else {
                    fields.append(SIPHeaderField(name: name, value: request.fieldValue(index)))
                }
            }
        }
        return SIPMessage(
            buffer: request.buffer,
            startLine: .response(code: status.code, reason: .text(status.reason), version: .text("SIP/2.0")),
            fields: fields,
            body: ByteBuffer()
        )
    }

    /// Whether a header line came with the full name and on one line, so it can be copied as it is.
    func isPlainLine(_ index: Int, _ name: SIPHeaderName) -> Bool {
        let field = fields[index]
        // An edited line is already a value of its own, shared as it is.
        guard field.lineRange != nil else { return true }
        guard field.nameRange.count == name.canonical.utf8.count else { return false }
        let range = field.valueRange
        return buffer.withUnsafeReadableBytes { raw in
            guard range.lowerBound >= 0, range.upperBound <= raw.count else { return false }
            return !raw[range].contains { $0 == 0x0D || $0 == 0x0A }
        }
    }

    private static let responseHeaders: [SIPHeaderName] = [.via, .from, .to, .callID, .cseq]
    private static let responseHeadersWithRecordRoute: [SIPHeaderName] = [.via, .recordRoute, .from, .to, .callID, .cseq]
}
