public import NIOCore

/// Cuts a byte stream (TCP, TLS) into SIP messages by the empty line and Content-Length
/// (RFC 3261 §18.3), and recognises RFC 5626 §3.5.1 keep-alives between messages.
///
/// Pure: it never touches a channel, so it is tested byte by byte without sockets.
public struct SIPStreamFramer: Sendable {
    public enum Frame: Sendable, Equatable {
        /// One whole message, start line to end of body.
        case message(ByteBuffer)
        /// A double-CRLF ping: the server answers with a single CRLF pong.
        case keepAlivePing
    }

    public enum Step: Sendable, Equatable {
        case frame(Frame)
        case needMoreData
    }

    public enum FramingError: Error, Sendable, Equatable {
        /// No end of headers within the size limit, or a message larger than the limit: the stream
        /// can no longer be trusted and is closed.
        case messageTooLarge(limit: Int)
        /// Content-Length unreadable or repeated: the message boundary is unknown.
        case invalidContentLength
    }

    public var maxMessageSize: Int

    public init(maxMessageSize: Int = 65_535) {
        self.maxMessageSize = maxMessageSize
    }

    /// Reads at most one frame from the front of `buffer`, consuming it.
    public func next(from buffer: inout ByteBuffer) throws(FramingError) -> Step {
        let step = try buffer.withUnsafeReadableBytes { raw throws(FramingError) -> (consume: Int, kind: Kind) in
            try Self.scan(raw, maxMessageSize: maxMessageSize)
        }
        switch step.kind {
        case .needMore:
            buffer.moveReaderIndex(forwardBy: step.consume)
            return .needMoreData
        case .ping:
            buffer.moveReaderIndex(forwardBy: step.consume)
            return .frame(.keepAlivePing)
        case .message(let skip):
            buffer.moveReaderIndex(forwardBy: skip)
            guard let slice = buffer.readSlice(length: step.consume - skip) else { return .needMoreData }
            return .frame(.message(slice))
        }
    }

    private enum Kind {
        case needMore
        case ping
        /// A message starting after `skip` bytes of stray line breaks.
        case message(skip: Int)
    }

    private static func scan(_ raw: UnsafeRawBufferPointer, maxMessageSize: Int) throws(FramingError) -> (consume: Int, kind: Kind) {
        let count = raw.count
        // Keep-alives and stray CRLFs between messages.
        var start = 0
        while start < count, raw[start] == 0x0D || raw[start] == 0x0A {
            if start + 3 < count, raw[start] == 0x0D, raw[start + 1] == 0x0A, raw[start + 2] == 0x0D, raw[start + 3] == 0x0A {
                return (start + 4, .ping)
            }
            if start + 1 < count, raw[start] == 0x0D, raw[start + 1] == 0x0A {
                // A lone CRLF might be the first half of a ping: wait until we can tell.
                if start + 2 >= count || (start + 3 >= count && raw[start + 2] == 0x0D) { return (start, .needMore) }
                start += 2
                continue
            }
            if raw[start] == 0x0D, start + 1 >= count { return (start, .needMore) }
            start += 1
        }
        guard start < count else { return (start, .needMore) }

        // Find the empty line that ends the head.
        var index = start
        var headEnd: Int?
        let limit = min(count, start + maxMessageSize)
        while index < limit {
            if raw[index] == 0x0A {
                if index + 1 < count, raw[index + 1] == 0x0A {
                    headEnd = index + 2
                    break
                }
                if index + 2 < count, raw[index + 1] == 0x0D, raw[index + 2] == 0x0A {
                    headEnd = index + 3
                    break
                }
            }
            index += 1
        }
        guard let headEnd else {
            if count - start >= maxMessageSize { throw .messageTooLarge(limit: maxMessageSize) }
            return (start, .needMore)
        }
        let contentLength = try findContentLength(UnsafeRawBufferPointer(rebasing: raw[start..<headEnd]))
        let total = headEnd - start + contentLength
        guard total <= maxMessageSize else { throw .messageTooLarge(limit: maxMessageSize) }
        guard start + total <= count else { return (start, .needMore) }
        return (start + total, .message(skip: start))
    }

    /// Finds the Content-Length value in a head; 0 when absent (RFC 3261 §18.3 makes it mandatory on
    /// streams, but a message without a body is unambiguous without it).
    private static func findContentLength(_ head: UnsafeRawBufferPointer) throws(FramingError) -> Int {
        var result: Int?
        var lineStart = 0
        let count = head.count
        while lineStart < count {
            var lineEnd = lineStart
            while lineEnd < count, head[lineEnd] != 0x0A { lineEnd += 1 }
            var nameEnd = lineStart
            while nameEnd < lineEnd, isTokenByte(head[nameEnd]) { nameEnd += 1 }
            let name = UnsafeRawBufferPointer(rebasing: head[lineStart..<nameEnd])
            if (name.count == 14 || name.count == 1), SIPHeaderName.lookup(name) == SIPHeaderName.contentLength.knownIndex {
                var cursor = nameEnd
                while cursor < lineEnd, head[cursor] == 0x20 || head[cursor] == 0x09 { cursor += 1 }
                if cursor < lineEnd, head[cursor] == UInt8(ascii: ":") {
                    cursor += 1
                    while cursor < lineEnd, head[cursor] == 0x20 || head[cursor] == 0x09 { cursor += 1 }
                    var value = 0
                    var digits = 0
                    while cursor < lineEnd, head[cursor] >= 0x30, head[cursor] <= 0x39 {
                        value = value * 10 + Int(head[cursor] - 0x30)
                        digits += 1
                        guard digits <= 9 else { throw .invalidContentLength }
                        cursor += 1
                    }
                    while cursor < lineEnd, isWhitespace(head[cursor]) { cursor += 1 }
                    guard digits > 0, cursor == lineEnd else { throw .invalidContentLength }
                    if result != nil { throw .invalidContentLength }
                    result = value
                }
            }
            lineStart = lineEnd + 1
        }
        return result ?? 0
    }
}
