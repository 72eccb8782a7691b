public import NIOCore

/// An SDP body (RFC 8866, formerly RFC 4566) kept as ordered lines, with codec and media editing.
///
/// Session-level lines (`v=` up to the first `m=`) and each media section are stored in their
/// original order, and every line that no edit touches renders back exactly as received: unknown
/// types and attributes round-trip unchanged. Rendering always ends lines with CRLF
/// (RFC 8866 §5), so a CRLF body renders byte-identical and an LF-only body gains the CRs.
///
/// Edits follow the offer/answer rules of RFC 3264: removing a codec removes its format from the
/// `m=` line together with the `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines for that format.
public struct SessionDescription: Sendable, Hashable, CustomStringConvertible {
    /// The lines before the first `m=` line, starting with `v=`.
    public var sessionLines: [Line]
    /// The media sections, in order.
    public var media: [Media]

    /// Creates a description from lines; the first session line should be `v=0`.
    public init(sessionLines: [Line], media: [Media] = []) {
        self.sessionLines = sessionLines
        self.media = media
    }

    /// Parses an SDP body.
    ///
    /// Lines end in CRLF or LF; blank lines are skipped. The first line must be `v=`, and every
    /// other line must be `<letter>=<value>` without NUL or a stray CR (RFC 8866 §5).
    /// - Throws: ``SessionDescription/Error`` naming the first fault.
    public init(parsing text: some StringProtocol) throws(SessionDescription.Error) {
        try self.init(utf8: Array(text.utf8))
    }

    /// Parses an SDP body from the readable bytes of `buffer`, which must be UTF-8 (RFC 8866 §5).
    /// - Throws: ``SessionDescription/Error``; ``SessionDescription/Error/invalidUTF8`` for bytes
    ///   that are not UTF-8.
    public init(parsing buffer: ByteBuffer) throws(SessionDescription.Error) {
        let bytes = Array(buffer.readableBytesView)
        // Lossy decoding replaces each invalid sequence, so the bytes survive only if valid.
        guard String(decoding: bytes, as: UTF8.self).utf8.elementsEqual(bytes) else { throw .invalidUTF8 }
        try self.init(utf8: bytes)
    }

    private init(utf8 bytes: [UInt8]) throws(SessionDescription.Error) {
        var session: [Line] = []
        var media: [Media] = []
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            let next = end + 1
            lineNumber += 1
            var contentEnd = end
            if contentEnd > start, bytes[contentEnd - 1] == UInt8(ascii: "\r") { contentEnd -= 1 }
            defer { start = next }
            if contentEnd == start { continue }  // blank line
            let line = try Self.parseLine(bytes[start..<contentEnd], lineNumber: lineNumber)
            if session.isEmpty {
                guard line.type == "v" else { throw .missingVersion }
                session.append(line)
            } else if line.type == "m" {
                guard let section = Media(mediaLineValue: line.value) else {
                    throw .malformedMediaLine(line: lineNumber)
                }
                media.append(section)
            } else if media.isEmpty {
                session.append(line)
            } else {
                media[media.count - 1].lines.append(line)
            }
        }
        guard !session.isEmpty else { throw .missingVersion }
        self.sessionLines = session
        self.media = media
    }

    private static func parseLine(
        _ bytes: ArraySlice<UInt8>, lineNumber: Int
    ) throws(SessionDescription.Error) -> Line {
        // RFC 8866 §5: <type>=<value>, type is exactly one case-significant letter.
        guard bytes.count >= 2, let first = bytes.first, SDPSyntax.isSDPTypeLetter(first),
              bytes[bytes.startIndex + 1] == UInt8(ascii: "=")
        else { throw .malformedLine(line: lineNumber) }
        let value = bytes.dropFirst(2)
        guard !value.contains(0), !value.contains(UInt8(ascii: "\r")) else {
            throw .malformedLine(line: lineNumber)
        }
        return Line(type: Character(Unicode.Scalar(first)), value: String(decoding: value, as: UTF8.self))
    }

    // MARK: - Rendering

    /// The body as text, every line ended by CRLF.
    public var description: String {
        var out = ""
        for line in sessionLines { line.render(into: &out) }
        for section in media { section.render(into: &out) }
        return out
    }

    /// The body as bytes, every line ended by CRLF.
    public func rendered(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        let text = description
        var buffer = allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        return buffer
    }

    // MARK: - Codecs

    /// Removes the codecs whose encoding name matches one of `names` (ASCII case-insensitive,
    /// RFC 4855 §3), in every media section or only those of `mediaType` (such as `"audio"`).
    /// - Returns: How many formats were removed in all.
    @discardableResult
    public mutating func removeCodecs(named names: some Sequence<String>, mediaType: String? = nil) -> Int {
        let wanted = Set(names.map { SDPSyntax.sdpLowercased($0) })
        return editMedia(mediaType) { section in
            section.removeFormats(section.codecs.filter { codec in
                codec.encodingName.map { wanted.contains(SDPSyntax.sdpLowercased($0)) } ?? false
            }.map(\.format))
        }
    }

    /// Removes the codecs whose format (payload type, such as `"8"`) is in `payloadTypes`.
    /// - Returns: How many formats were removed in all.
    @discardableResult
    public mutating func removeCodecs(payloadTypes: some Sequence<String>, mediaType: String? = nil) -> Int {
        let removed = Array(payloadTypes)
        return editMedia(mediaType) { $0.removeFormats(removed) }
    }

    /// Keeps only the codecs whose encoding name is in `names`, removing every other format.
    ///
    /// Formats without a known encoding name (no `a=rtpmap` and not a static RTP/AVP payload
    /// type) are removed too. A section may end up with no formats; the caller then rejects it
    /// with port 0 or removes it (RFC 3264 §6). Retransmission formats (`rtx`) go unless listed.
    /// - Returns: How many formats were removed in all.
    @discardableResult
    public mutating func keepOnlyCodecs(named names: some Sequence<String>, mediaType: String? = nil) -> Int {
        let wanted = Set(names.map { SDPSyntax.sdpLowercased($0) })
        return editMedia(mediaType) { section in
            section.removeFormats(section.codecs.filter { codec in
                !(codec.encodingName.map { wanted.contains(SDPSyntax.sdpLowercased($0)) } ?? false)
            }.map(\.format))
        }
    }

    private mutating func editMedia(_ mediaType: String?, _ edit: (inout Media) -> Int) -> Int {
        var total = 0
        for index in media.indices where mediaType == nil || media[index].mediaType == mediaType {
            total += edit(&media[index])
        }
        return total
    }

    // MARK: - Sections and attributes

    /// Removes the media section at `index`, if there is one.
    /// - Returns: The section removed, or nil if `index` is out of range.
    @discardableResult
    public mutating func removeMedia(at index: Int) -> Media? {
        guard media.indices.contains(index) else { return nil }
        return media.remove(at: index)
    }

    /// Removes every media section for which `predicate` is true (for example all `video`).
    public mutating func removeMedia(where predicate: (Media) -> Bool) {
        media.removeAll(where: predicate)
    }

    /// Removes `a=` lines whose attribute name is in `names`, at session level and in every media
    /// section; names compare case-sensitively, as RFC 8866 §5.13 defines them.
    /// - Returns: How many lines were removed.
    @discardableResult
    public mutating func removeAttributes(named names: some Sequence<String>) -> Int {
        let names = Set(names)
        let before = sessionLines.count
        sessionLines.removeAll { $0.attributeName.map(names.contains) ?? false }
        var total = before - sessionLines.count
        for index in media.indices { total += media[index].removeAttributes(named: names) }
        return total
    }

    /// The values of the session-level `a=name` / `a=name:value` lines (`""` for a flag).
    public func sessionAttributes(named name: String) -> [String] {
        sessionLines.compactMap { $0.attributeName == name ? ($0.attributeValue ?? "") : nil }
    }
}

// MARK: - Line

extension SessionDescription {
    /// One `<type>=<value>` line, kept as received.
    public struct Line: Sendable, Hashable, CustomStringConvertible {
        /// The one-letter type, such as `v`, `o`, `c` or `a`.
        public var type: Character
        /// Everything after `=`, without the line ending.
        public var value: String

        public init(type: Character, value: String) {
            self.type = type
            self.value = value
        }

        /// Makes an `a=name` or `a=name:value` line.
        public static func attribute(_ name: String, _ value: String? = nil) -> Line {
            Line(type: "a", value: value.map { name + ":" + $0 } ?? name)
        }

        /// For an `a=` line, the attribute name (before the first `:`); nil for other types.
        public var attributeName: String? {
            guard type == "a" else { return nil }
            if let colon = value.utf8.firstIndex(of: UInt8(ascii: ":")) {
                return String(value[..<colon])
            }
            return value
        }

        /// For an `a=name:value` line, the text after the first `:`; nil for flags and other types.
        public var attributeValue: String? {
            guard type == "a", let colon = value.utf8.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            return String(value[value.index(after: colon)...])
        }

        public var description: String { String(type) + "=" + value }

        fileprivate func render(into out: inout String) {
            out.append(type)
            out.append("=")
            out.append(value)
            out.append("\r\n")
        }
    }
}

// MARK: - Media

extension SessionDescription {
    /// One media section: its `m=` line and the lines that follow it up to the next `m=`.
    public struct Media: Sendable, Hashable {
        /// The media type, such as `audio`, `video` or `application`.
        public var mediaType: String { didSet { verbatim = nil } }
        /// The transport port; 0 rejects or disables the stream (RFC 3264 §6).
        public var port: UInt16 { didSet { verbatim = nil } }
        /// The number of ports after `/`, if present.
        public var portCount: UInt16? { didSet { verbatim = nil } }
        /// The transport protocol, such as `RTP/AVP` or `UDP/TLS/RTP/SAVPF`.
        public var proto: String { didSet { verbatim = nil } }
        /// The formats in preference order; payload types for RTP protocols.
        public var formats: [String] { didSet { verbatim = nil } }
        /// The lines after the `m=` line (`i=`, `c=`, `b=`, `k=`, `a=`, and any other).
        public var lines: [Line]
        /// The `m=` value as received, reused while no field above changes.
        private var verbatim: String?

        public init(
            mediaType: String, port: UInt16, portCount: UInt16? = nil, proto: String,
            formats: [String], lines: [Line] = []
        ) {
            self.mediaType = mediaType
            self.port = port
            self.portCount = portCount
            self.proto = proto
            self.formats = formats
            self.lines = lines
            self.verbatim = nil
        }

        /// Parses `<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 8866 §5.14).
        init?(mediaLineValue value: String) {
            let fields = value.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            guard fields.count >= 3 else { return nil }
            let portField = fields[1].split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            guard portField.count <= 2, let port = SDPSyntax.parseDecimalUInt16(portField[0]) else { return nil }
            var count: UInt16?
            if portField.count == 2 {
                guard let parsed = SDPSyntax.parseDecimalUInt16(portField[1]) else { return nil }
                count = parsed
            }
            self.mediaType = String(decoding: fields[0], as: UTF8.self)
            self.port = port
            self.portCount = count
            self.proto = String(decoding: fields[2], as: UTF8.self)
            self.formats = fields.dropFirst(3).map { String(decoding: $0, as: UTF8.self) }
            self.lines = []
            self.verbatim = value
        }

        /// The `m=` value: as received while unchanged, otherwise rebuilt with single spaces.
        public var mediaLineValue: String {
            if let verbatim { return verbatim }
            var out = mediaType + " " + String(port)
            if let portCount { out += "/" + String(portCount) }
            out += " " + proto
            for format in formats { out += " " + format }
            return out
        }

        /// The codecs of this section in `m=` order, from `a=rtpmap` and `a=fmtp`, with the
        /// static RTP/AVP payload types of RFC 3551 §6 named when no `a=rtpmap` is given.
        public var codecs: [Codec] {
            var maps: [String: Substring] = [:]
            var parameters: [String: String] = [:]
            for line in lines {
                guard let name = line.attributeName, let value = line.attributeValue else { continue }
                guard name == "rtpmap" || name == "fmtp" else { continue }
                let (formatSlice, rest) = SDPSyntax.splitFormat(value)
                let format = String(formatSlice)
                if name == "rtpmap", maps[format] == nil {
                    maps[format] = rest
                } else if name == "fmtp", parameters[format] == nil {
                    parameters[format] = String(rest)
                }
            }
            let isRTP = proto.split(separator: "/").contains("RTP")
            return formats.map { format in
                var codec = Codec(format: format)
                if let map = maps[format] {
                    // <encoding name>/<clock rate>[/<encoding parameters>] (RFC 8866 §6.6)
                    let parts = map.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
                    codec.encodingName = parts.first.map { String($0) }
                    if parts.count > 1 { codec.clockRate = UInt32(parts[1]) }
                    if parts.count > 2 { codec.encodingParameters = String(parts[2]) }
                } else if isRTP, let known = SDPSyntax.staticPayloadTypes[format] {
                    codec.encodingName = known.name
                    codec.clockRate = known.clockRate
                    codec.encodingParameters = known.channels
                }
                codec.formatParameters = parameters[format]
                return codec
            }
        }

        /// Removes formats from the `m=` line with their `a=rtpmap`, `a=fmtp` and `a=rtcp-fb`
        /// lines, and any retransmission format tied to them by `apt=` (RFC 4588 §8.6).
        /// - Returns: How many formats were removed.
        @discardableResult
        public mutating func removeFormats(_ removed: some Sequence<String>) -> Int {
            var gone = Set(removed).intersection(formats)
            guard !gone.isEmpty else { return 0 }
            // RFC 4588: a=fmtp:<rtx> apt=<pt> is meaningless once <pt> is gone.
            for codec in codecs where !gone.contains(codec.format) {
                if let apt = codec.formatParameter("apt"), gone.contains(apt) { gone.insert(codec.format) }
            }
            let before = formats.count
            formats.removeAll { gone.contains($0) }
            lines.removeAll { line in
                guard let name = line.attributeName, name == "rtpmap" || name == "fmtp" || name == "rtcp-fb",
                      let value = line.attributeValue
                else { return false }
                return gone.contains(String(SDPSyntax.splitFormat(value).format))
            }
            return before - formats.count
        }

        /// Removes `a=` lines whose attribute name is in `names`.
        /// - Returns: How many lines were removed.
        @discardableResult
        public mutating func removeAttributes(named names: some Sequence<String>) -> Int {
            let names = Set(names)
            let before = lines.count
            lines.removeAll { $0.attributeName.map(names.contains) ?? false }
            return before - lines.count
        }

        /// The values of this section's `a=name` / `a=name:value` lines (`""` for a flag).
        public func attributes(named name: String) -> [String] {
            lines.compactMap { $0.attributeName == name ? ($0.attributeValue ?? "") : nil }
        }

        fileprivate func render(into out: inout String) {
            Line(type: "m", value: mediaLineValue).render(into: &out)
            for line in lines { line.render(into: &out) }
        }
    }
}

// MARK: - Codec

extension SessionDescription {
    /// One format of a media section, described by its `a=rtpmap` and `a=fmtp` lines.
    public struct Codec: Sendable, Hashable {
        /// The format token from the `m=` line; the payload type for RTP.
        public var format: String
        /// The encoding name, such as `PCMA`, `opus` or `telephone-event`; nil if unknown.
        public var encodingName: String?
        /// The RTP clock rate in Hz.
        public var clockRate: UInt32?
        /// The encoding parameters after the clock rate (the channel count for audio).
        public var encodingParameters: String?
        /// The `a=fmtp` parameters for this format, as one string.
        public var formatParameters: String?

        public init(
            format: String, encodingName: String? = nil, clockRate: UInt32? = nil,
            encodingParameters: String? = nil, formatParameters: String? = nil
        ) {
            self.format = format
            self.encodingName = encodingName
            self.clockRate = clockRate
            self.encodingParameters = encodingParameters
            self.formatParameters = formatParameters
        }

        /// The payload type as a number, if the format is one (0–127, RFC 3551 §3).
        public var payloadType: UInt8? {
            guard let value = SDPSyntax.parseDecimalUInt16(Substring(format).utf8), value <= 127 else { return nil }
            return UInt8(value)
        }

        /// The value of one `name=value` parameter in ``formatParameters`` (`;`-separated).
        public func formatParameter(_ name: String) -> String? {
            guard let formatParameters else { return nil }
            for item in formatParameters.split(separator: ";") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2 else { continue }
                if SDPSyntax.sdpLowercased(SDPSyntax.trimmedSpaces(pair[0])) == SDPSyntax.sdpLowercased(name) {
                    return SDPSyntax.trimmedSpaces(pair[1])
                }
            }
            return nil
        }
    }
}

// MARK: - Error

extension SessionDescription {
    /// Why a body is not acceptable SDP; the line numbers count from 1, blank lines included.
    public enum Error: Swift.Error, Sendable, Hashable {
        /// The body is empty or its first line is not `v=` (RFC 8866 §5).
        case missingVersion
        /// A line is not `<letter>=<value>`, or holds NUL or a stray CR.
        case malformedLine(line: Int)
        /// An `m=` line lacks media, port or proto, or its port is not a number up to 65535.
        case malformedMediaLine(line: Int)
        /// The bytes are not UTF-8 (RFC 8866 §5).
        case invalidUTF8
    }
}

// MARK: - Helpers

/// Byte-level helpers for SDP text, namespaced so they cannot clash with module-wide names.
private enum SDPSyntax {
    /// The static audio/video payload types of RFC 3551 §6 (Table 4 and 5) that still see use.
    static let staticPayloadTypes: [String: (name: String, clockRate: UInt32, channels: String?)] = [
        "0": ("PCMU", 8000, "1"), "3": ("GSM", 8000, "1"), "4": ("G723", 8000, "1"),
        "5": ("DVI4", 8000, "1"), "6": ("DVI4", 16000, "1"), "7": ("LPC", 8000, "1"),
        "8": ("PCMA", 8000, "1"), "9": ("G722", 8000, "1"), "10": ("L16", 44100, "2"),
        "11": ("L16", 44100, "1"), "12": ("QCELP", 8000, "1"), "13": ("CN", 8000, "1"),
        "14": ("MPA", 90000, nil), "15": ("G728", 8000, "1"), "16": ("DVI4", 11025, "1"),
        "17": ("DVI4", 22050, "1"), "18": ("G729", 8000, "1"), "25": ("CelB", 90000, nil),
        "26": ("JPEG", 90000, nil), "28": ("nv", 90000, nil), "31": ("H261", 90000, nil),
        "32": ("MPV", 90000, nil), "33": ("MP2T", 90000, nil), "34": ("H263", 90000, nil),
    ]

    /// The SDP line types are single letters (RFC 8866 §5, `ALPHA` in the ABNF of §9).
    static func isSDPTypeLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    /// Splits `<format> <rest>` as used by rtpmap, fmtp and rtcp-fb values.
    static func splitFormat(_ value: String) -> (format: Substring, rest: Substring) {
        guard let space = value.firstIndex(of: " ") else { return (value[...], "") }
        return (value[..<space], value[value.index(after: space)...])
    }

    /// Parses 1–5 ASCII digits into a value no greater than 65535.
    static func parseDecimalUInt16(_ digits: some Collection<UInt8>) -> UInt16? {
        guard !digits.isEmpty, digits.count <= 5 else { return nil }
        var value: UInt32 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt32(byte - UInt8(ascii: "0"))
        }
        return value <= UInt32(UInt16.max) ? UInt16(value) : nil
    }

    /// ASCII-only lowercasing, so comparisons do not depend on locale or Unicode tables.
    static func sdpLowercased(_ text: some StringProtocol) -> String {
        String(decoding: text.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// Drops leading and trailing spaces and tabs.
    static func trimmedSpaces(_ text: Substring) -> String {
        var text = text
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}
