import NIOCore
import SIP
import Testing

@Suite struct MultipartBodyTests {
    static let boundary = "unique-boundary-1"

    static let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 8\r\n"

    /// ISUP IAM-like bytes with NUL, CR, LF, and even CRLF "--" that is not a delimiter.
    static let isup: [UInt8] = [
        0x01, 0x00, 0x49, 0x00, 0x00, 0x03, 0x02, 0x00, 0x07, 0x04, 0x10, 0x00, 0x33, 0x63, 0x21, 0x43,
        0x0D, 0x0A, 0x0D, 0x0A, 0x2D, 0x2D, 0x75, 0x0D, 0x00, 0x0A, 0xFF, 0x0D,
    ]

    /// RFC 3204 §3 style: SDP then ISUP, each with its own headers.
    static func sampleBytes(boundary: String = boundary) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("--\(boundary)\r\n")
        buffer.writeString("Content-Type: application/sdp\r\n\r\n")
        buffer.writeString(sdp)
        buffer.writeString("\r\n--\(boundary)\r\n")
        buffer.writeString("Content-Type: application/ISUP;version=itu-t92+\r\n")
        buffer.writeString("Content-Disposition: signal;handling=optional\r\n\r\n")
        buffer.writeBytes(isup)
        buffer.writeString("\r\n--\(boundary)--\r\n")
        return buffer
    }

    @Test func parsesSDPAndBinaryISUP() throws {
        let body = try MultipartBody(parsing: Self.sampleBytes(), boundary: Self.boundary)
        #expect(body.parts.count == 2)
        let sdp = try #require(body.parts.first)
        #expect(sdp.headers == [.init(name: "Content-Type", value: "application/sdp")])
        #expect(sdp.body == ByteBuffer(string: Self.sdp))
        let isup = try #require(body.firstPart(withContentType: "application/isup"))
        #expect(isup.contentType == "application/ISUP;version=itu-t92+")
        #expect(isup[header: "content-disposition"] == "signal;handling=optional")
        #expect(Array(isup.body.readableBytesView) == Self.isup)
    }

    @Test func serializesCanonicalBodyByteIdentical() throws {
        let bytes = Self.sampleBytes()
        let body = try MultipartBody(parsing: bytes, boundary: Self.boundary)
        let rebuilt = try body.serialized(boundary: Self.boundary)
        #expect(rebuilt == bytes)
        #expect(try MultipartBody(parsing: rebuilt, boundary: Self.boundary) == body)
    }

    @Test func rebuildsWithANewBoundary() throws {
        let body = try MultipartBody(parsing: Self.sampleBytes(), boundary: Self.boundary)
        let boundary = MultipartBody.makeBoundary()
        #expect(boundary != MultipartBody.makeBoundary())
        let rebuilt = try body.serialized(boundary: boundary)
        #expect(try MultipartBody(parsing: rebuilt, boundary: boundary) == body)
    }

    @Test func ignoresPreambleAndEpilogueAndPadding() throws {
        var buffer = ByteBuffer(string: "This is a preamble.\r\n--b1 \t\r\nContent-Type: text/plain\r\n\r\nhello")
        buffer.writeString("\r\n--b1\r\n\r\nno headers\r\n--b1--\r\nepilogue --b1\r\n")
        let body = try MultipartBody(parsing: buffer, boundary: "b1")
        #expect(body.parts.map { String(buffer: $0.body) } == ["hello", "no headers"])
        #expect(body.parts[1].headers.isEmpty)
        #expect(body.parts[1].hasContentType("text/plain"))
    }

    @Test func delimiterMustMatchExactlyAtLineStart() throws {
        var buffer = ByteBuffer(string: "--b\r\nContent-Type: text/plain\r\n\r\n")
        buffer.writeString("a --b\r\n--bb\r\n--b-x\r\n--b\tx\r\nend")
        buffer.writeString("\r\n--b--")
        let body = try MultipartBody(parsing: buffer, boundary: "b")
        #expect(body.parts.count == 1)
        #expect(String(buffer: body.parts[0].body) == "a --b\r\n--bb\r\n--b-x\r\n--b\tx\r\nend")
    }

    @Test func foldedPartHeadersAreUnfolded() throws {
        let buffer = ByteBuffer(string: "--b\r\nContent-Type: application/pidf+xml;\r\n charset=utf-8\r\nContent-ID: <x@y>\r\n\r\n<x/>\r\n--b--")
        let part = try #require(try MultipartBody(parsing: buffer, boundary: "b").parts.first)
        #expect(part.contentType == "application/pidf+xml; charset=utf-8")
        #expect(part[header: "Content-ID"] == "<x@y>")
    }

    @Test func replacesRemovesAndAddsParts() throws {
        var body = try MultipartBody(parsing: Self.sampleBytes(), boundary: Self.boundary)
        let newSDP = MultipartBody.Part(contentType: "application/sdp", body: ByteBuffer(string: "v=0\r\n"))
        body.replaceFirstPart(withContentType: "application/sdp", by: newSDP)
        #expect(body.parts.first == newSDP)
        let removed = body.removeParts(withContentType: "application/ISUP")
        #expect(removed == 1)
        body.parts.append(MultipartBody.Part(
            contentType: "application/QSIG",
            body: ByteBuffer(bytes: [0x00, 0x0D, 0x0A]),
            otherHeaders: [.init(name: "Content-Disposition", value: "signal;handling=required")]
        ))
        body.parts[1].setHeader("content-disposition", "signal;handling=optional")
        #expect(body.parts[1].headers.map(\.name) == ["Content-Type", "content-disposition"])
        let reparsed = try MultipartBody(parsing: try body.serialized(boundary: "x"), boundary: "x")
        #expect(reparsed == body)
        #expect(body.firstIndex(ofContentType: "application/qsig") == 1)
    }

    @Test func needsAtLeastOnePart() {
        #expect(throws: MultipartBody.Error.noParts) { try MultipartBody().serialized(boundary: "b") }
        #expect(throws: MultipartBody.Error.missingFirstDelimiter) {
            try MultipartBody(parsing: ByteBuffer(string: "--b--\r\n"), boundary: "b")
        }
    }

    static let malformed: [(String, String, MultipartBody.Error)] = [
        ("", "b", .missingFirstDelimiter),
        ("Content-Type: text/plain\r\n\r\nhi", "b", .missingFirstDelimiter),
        ("--bx\r\n\r\nhi\r\n--b--", "b", .missingFirstDelimiter),
        ("--b\n\nhi\n--b--\n", "b", .missingFirstDelimiter),
        ("--b\r\n\r\nhi", "b", .missingCloseDelimiter),
        ("--b\r\n\r\nhi\r\n--b\r\n\r\nmore", "b", .missingCloseDelimiter),
        ("--b\r\nno colon here\r\n\r\nhi\r\n--b--", "b", .malformedPartHeaders(part: 0)),
        ("--b\r\n\r\nok\r\n--b\r\n folded first\r\n\r\nx\r\n--b--", "b", .malformedPartHeaders(part: 1)),
        ("--b\r\n: empty name\r\n\r\n\r\n--b--", "b", .malformedPartHeaders(part: 0)),
        ("--b--", "", .invalidBoundary),
        ("--b--", String(repeating: "b", count: 71), .invalidBoundary),
        ("--b--", "b\r\n", .invalidBoundary),
    ]

    @Test(arguments: malformed)
    func rejectsMalformedBodies(_ text: String, _ boundary: String, _ expected: MultipartBody.Error) {
        let error = #expect(throws: MultipartBody.Error.self) {
            try MultipartBody(parsing: ByteBuffer(string: text), boundary: boundary)
        }
        #expect(error == expected)
    }

    @Test func rejectsNonUTF8PartHeaders() {
        var buffer = ByteBuffer(string: "--b\r\nContent-Type: ")
        buffer.writeBytes([0xFF, 0xFE])
        buffer.writeString("\r\n\r\nx\r\n--b--")
        #expect(throws: MultipartBody.Error.malformedPartHeaders(part: 0)) {
            try MultipartBody(parsing: buffer, boundary: "b")
        }
    }

    @Test func serializationRefusesAmbiguousOutput() {
        let clash = MultipartBody(parts: [
            .init(contentType: "text/plain", body: ByteBuffer(string: "line\r\n--b--\r\n")),
        ])
        #expect(throws: MultipartBody.Error.boundaryInPart(index: 0)) { try clash.serialized(boundary: "b") }
        #expect(throws: MultipartBody.Error.invalidBoundary) { try clash.serialized(boundary: "bad\"quote") }
        #expect(throws: MultipartBody.Error.invalidBoundary) { try clash.serialized(boundary: "trailing ") }
        let badHeader = MultipartBody(parts: [.init(contentType: "text/plain\r\nX: y", body: ByteBuffer())])
        #expect(throws: MultipartBody.Error.invalidHeader(part: 0)) { try badHeader.serialized(boundary: "b") }
    }

    /// Mutated, truncated and random bodies either throw or parse, and what parses re-serializes.
    @Test func randomInputNeverTraps() throws {
        var random = SplitMix64(seed: 0x3204_5621)
        let seed = Array(Self.sampleBytes(boundary: "b").readableBytesView)
        for iteration in 0..<2_000 {
            var bytes = seed
            switch iteration % 4 {
            case 0:
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
            case 1:
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 2:
                let alphabet = Array("-b\r\n: C\0x".utf8)
                bytes = (0..<Int.random(in: 0...80, using: &random)).map { _ in
                    alphabet[Int.random(in: 0..<alphabet.count, using: &random)]
                }
            default:
                bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            var buffer = ByteBuffer(bytes: bytes)
            buffer.moveReaderIndex(forwardBy: min(iteration % 3, buffer.readableBytes))
            guard let body = try? MultipartBody(parsing: buffer, boundary: "b") else { continue }
            let boundary = MultipartBody.makeBoundary()
            guard let rebuilt = try? body.serialized(boundary: boundary) else { continue }
            #expect(try MultipartBody(parsing: rebuilt, boundary: boundary) == body)
        }
    }

}
