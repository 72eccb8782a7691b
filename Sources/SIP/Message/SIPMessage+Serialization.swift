public import NIOCore

extension SIPMessage {
    /// How headers are written.
    public struct SerializationOptions: Sendable, Hashable {
        /// Render edited and added headers in compact form where one exists (RFC 3261 §7.3.3).
        /// Unchanged headers are copied as they came, whatever this says.
        public var compactHeaders: Bool
        /// Render every header name that has a compact form compactly, unchanged ones included (their
        /// values are still copied byte for byte): the egress tuning for mobile links.
        public var compactEveryHeader: Bool

        public init(compactHeaders: Bool = false, compactEveryHeader: Bool = false) {
            self.compactHeaders = compactHeaders || compactEveryHeader
            self.compactEveryHeader = compactEveryHeader
        }
    }

    /// Writes the message: unchanged header lines are copied byte for byte, edited ones are rendered,
    /// and Content-Length always equals the body (added when missing).
    public func write(into out: inout ByteBuffer, options: SerializationOptions = SerializationOptions()) {
        out.reserveCapacity(minimumWritableBytes: estimatedSize)
        writeStartLine(into: &out)
        let bodyLength = body.readableBytes
        var wroteContentLength = false
        let contentLengthIndex = SIPHeaderName.contentLength.knownIndex
        for field in fields {
            if field.knownIndex == contentLengthIndex, field.knownIndex != nil {
                if wroteContentLength { continue }
                wroteContentLength = true
                if let line = field.lineRange, originalContentLength(field) == bodyLength {
                    copyLine(line, into: &out)
                } else {
                    writeContentLength(bodyLength, compact: options.compactHeaders, into: &out)
                }
                continue
            }
            if let line = field.lineRange {
                if options.compactEveryHeader, let index = field.knownIndex, let compact = SIPHeaderName.known[Int(index)].compactForm {
                    out.writeString(String(compact))
                    out.writeStaticString(": ")
                    copy(field.valueRange, into: &out)
                    out.writeStaticString("\r\n")
                } else {
                    copyLine(line, into: &out)
                }
                continue
            }
            if let name = field.addedName {
                if options.compactHeaders, let compact = name.compactForm {
                    out.writeString(String(compact))
                } else {
                    out.writeString(name.canonical)
                }
            } else {
                copy(field.nameRange, into: &out)
            }
            out.writeStaticString(": ")
            if let value = field.addedValue {
                out.writeString(value)
            } else {
                copy(field.valueRange, into: &out)
            }
            out.writeStaticString("\r\n")
        }
        if !wroteContentLength {
            writeContentLength(bodyLength, compact: options.compactHeaders, into: &out)
        }
        out.writeStaticString("\r\n")
        var bodyCopy = body
        out.writeBuffer(&bodyCopy)
    }

    /// About the bytes ``write(into:options:)`` writes, to take them in one allocation: a response
    /// shares its request's bytes, of which it writes a few lines.
    private var estimatedSize: Int {
        var size = 64 + body.readableBytes
        switch startLine {
        case .request(let method, let uri, _): size += method.rawValue.utf8.count + length(uri)
        case .response(_, let reason, _): size += length(reason)
        }
        for field in fields {
            if let line = field.lineRange {
                size += line.count + 2
            } else {
                size += (field.addedName?.canonical.utf8.count ?? field.nameRange.count) + (field.addedValue?.utf8.count ?? field.valueRange.count) + 4
            }
        }
        return size
    }

    private func length(_ source: TextSource) -> Int {
        switch source {
        case .original(let range): range.count
        case .text(let text): text.utf8.count
        }
    }

    /// The serialized message as a new buffer.
    public func serialized(options: SerializationOptions = SerializationOptions()) -> ByteBuffer {
        var out = ByteBuffer()
        write(into: &out, options: options)
        return out
    }

    /// The serialized message as text (tests, logs).
    public var serializedString: String {
        String(buffer: serialized())
    }

    private func writeStartLine(into out: inout ByteBuffer) {
        switch startLine {
        case .request(let method, let uri, let version):
            out.writeString(method.rawValue)
            out.writeStaticString(" ")
            write(uri, into: &out)
            out.writeStaticString(" ")
            write(version, into: &out)
        case .response(let code, let reason, let version):
            write(version, into: &out)
            out.writeStaticString(" ")
            out.writeString(String(code))
            out.writeStaticString(" ")
            write(reason, into: &out)
        }
        out.writeStaticString("\r\n")
    }

    private func write(_ source: TextSource, into out: inout ByteBuffer) {
        switch source {
        case .original(let range): copy(range, into: &out)
        case .text(let text): out.writeString(text)
        }
    }

    private func copy(_ range: Range<Int>, into out: inout ByteBuffer) {
        guard let slice = buffer.viewBytes(at: buffer.readerIndex + range.lowerBound, length: range.count) else { return }
        out.writeBytes(slice)
    }

    /// Copies an original header line; the last line of a datagram that ended without a line break
    /// gets its CRLF, so that nothing written after it joins its value.
    private func copyLine(_ range: Range<Int>, into out: inout ByteBuffer) {
        copy(range, into: &out)
        let last = buffer.getInteger(at: buffer.readerIndex + range.upperBound - 1, as: UInt8.self)
        if let last, last != 0x0A, last != 0x0D { out.writeStaticString("\r\n") }
    }

    private func writeContentLength(_ length: Int, compact: Bool, into out: inout ByteBuffer) {
        if compact {
            out.writeStaticString("l: ")
        } else {
            out.writeStaticString("Content-Length: ")
        }
        out.writeString(String(length))
        out.writeStaticString("\r\n")
    }

    private func originalContentLength(_ field: SIPHeaderField) -> Int? {
        guard field.addedValue == nil else { return Int(field.addedValue ?? "") }
        return buffer.getString(at: buffer.readerIndex + field.valueRange.lowerBound, length: field.valueRange.count)
            .flatMap { Int($0) }
    }
}
