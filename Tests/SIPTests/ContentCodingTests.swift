import NIOCore
import SIP
import Testing

@Suite struct ContentCodingTests {
    /// The text inside ``gzipFixture``.
    static let fixtureText = "v=0\r\no=alice 2890844526 2890844526 IN IP4 atlanta.example.com\r\ns=-\r\n"
        + "c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:97 iLBC/8000\r\n"

    /// `gzip -9 -n` of ``fixtureText`` (GNU gzip 1.12).
    static let gzipFixture: [UInt8] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4d, 0x8c,
        0x31, 0x0a, 0x02, 0x31, 0x10, 0x00, 0xfb, 0x40, 0xfe, 0xb0, 0x1f, 0x30,
        0xb7, 0x09, 0xd1, 0x24, 0xc2, 0x16, 0x6a, 0x75, 0x20, 0x12, 0x44, 0xec,
        0x97, 0x98, 0xe2, 0xe0, 0x62, 0x82, 0x46, 0xf1, 0xf9, 0x5e, 0x61, 0x61,
        0x37, 0xc5, 0xcc, 0xbc, 0x09, 0xa5, 0xa8, 0xc4, 0xf3, 0x94, 0x32, 0x18,
        0x1f, 0xd0, 0x5b, 0xbb, 0x36, 0x9b, 0x7f, 0x1c, 0x4f, 0x30, 0x46, 0x0b,
        0xdc, 0x67, 0xbe, 0x77, 0x56, 0xf9, 0xc3, 0xa5, 0xcd, 0x59, 0xa5, 0x5a,
        0xa4, 0x78, 0xd2, 0x4a, 0x8a, 0x44, 0x3f, 0x45, 0x07, 0xa3, 0x50, 0x19,
        0xa5, 0x51, 0x4b, 0xd1, 0x09, 0x61, 0x79, 0x17, 0xe2, 0xd7, 0x6d, 0xaa,
        0x60, 0x83, 0x76, 0x08, 0xe7, 0x4b, 0x1c, 0x76, 0xd7, 0x08, 0x08, 0x1e,
        0x82, 0x93, 0x82, 0xe9, 0xd1, 0x5b, 0xe1, 0xb6, 0x0d, 0x0e, 0xa6, 0xe3,
        0xfe, 0x30, 0x78, 0xc4, 0x25, 0xfa, 0x02, 0xd9, 0xae, 0xe0, 0x1e, 0x96,
        0x00, 0x00, 0x00,
    ]

    /// The text inside ``zlibFixture`` and ``rawDeflateFixture``.
    static let deflateText = String(repeating: "INVITE body, raw deflate\r\n", count: 3)

    /// zlib (RFC 1950) data at level 9, made by another zlib user (Python's `zlib.compress`).
    static let zlibFixture: [UInt8] = [
        0x78, 0xda, 0xf3, 0xf4, 0x0b, 0xf3, 0x0c, 0x71, 0x55, 0x48, 0xca, 0x4f, 0xa9, 0xd4, 0x51, 0x28,
        0x4a, 0x2c, 0x57, 0x48, 0x49, 0x4d, 0xcb, 0x49, 0x2c, 0x49, 0xe5, 0xe5, 0xf2, 0x24, 0x43, 0x06,
        0x00, 0xd4, 0xc4, 0x18, 0xbe,
    ]

    /// The same data as raw RFC 1951 deflate, without the zlib header and Adler-32 trailer.
    static var rawDeflateFixture: [UInt8] { Array(zlibFixture.dropFirst(2).dropLast(4)) }

    static let samples: [String] = [
        "",
        "v=0\r\n",
        fixtureText,
        String(repeating: "a=candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host\r\n", count: 3_000),
    ]

    @Test(arguments: ContentCoding.allCases, samples)
    func roundTrips(_ coding: ContentCoding, _ text: String) throws {
        let body = ByteBuffer(string: text)
        let encoded = try ContentCoding.encode(body, coding: coding)
        #expect(ContentCoding.detect(encoded) == coding)
        let decoded = try ContentCoding.decode(encoded, coding: coding)
        #expect(decoded == body)
    }

    @Test func roundTripsBinaryAtEveryLevel() throws {
        var random = SplitMix64(seed: 1952)
        let bytes = (0..<5_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        for level in [-3, 0, 1, 6, 9, 42] {
            for coding in ContentCoding.allCases {
                let encoded = try ContentCoding.encode(ByteBuffer(bytes: bytes), coding: coding, level: level)
                let decoded = try ContentCoding.decode(encoded, coding: coding)
                #expect(Array(decoded.readableBytesView) == bytes)
            }
        }
    }

    @Test func decodesGzipFromTheCommandLineTool() throws {
        let fixture = ByteBuffer(bytes: Self.gzipFixture)
        #expect(ContentCoding.detect(fixture) == .gzip)
        let decoded = try ContentCoding.decode(fixture, coding: .gzip)
        #expect(String(buffer: decoded) == Self.fixtureText)
    }

    @Test func decodesZlibAndRawDeflate() throws {
        let zlib = ByteBuffer(bytes: Self.zlibFixture)
        let raw = ByteBuffer(bytes: Self.rawDeflateFixture)
        #expect(ContentCoding.detect(zlib) == .deflate)
        #expect(ContentCoding.detect(raw) == nil)
        #expect(String(buffer: try ContentCoding.decode(zlib, coding: .deflate)) == Self.deflateText)
        #expect(String(buffer: try ContentCoding.decode(raw, coding: .deflate)) == Self.deflateText)
    }

    @Test func decodesConcatenatedGzipMembers() throws {
        var twice = ByteBuffer(bytes: Self.gzipFixture)
        twice.writeBytes(Self.gzipFixture)
        #expect(String(buffer: try ContentCoding.decode(twice, coding: .gzip)) == Self.fixtureText + Self.fixtureText)
    }

    @Test func detectsPlainText() {
        #expect(ContentCoding.detect(ByteBuffer(string: "v=0\r\n")) == nil)
        #expect(ContentCoding.detect(ByteBuffer(bytes: [0x1F])) == nil)
        #expect(ContentCoding.detect(ByteBuffer()) == nil)
    }

    @Test func readsContentEncodingTokens() {
        #expect(ContentCoding(headerValue: "GZIP") == .gzip)
        #expect(ContentCoding(headerValue: "x-gzip") == .gzip)
        #expect(ContentCoding(headerValue: "Deflate") == .deflate)
        #expect(ContentCoding(headerValue: "br") == nil)
    }

    @Test func enforcesTheDecodedSizeLimit() throws {
        let bomb = try ContentCoding.encode(ByteBuffer(repeating: 0, count: 2 << 20), coding: .gzip)
        #expect(bomb.readableBytes < 4_096)
        #expect(throws: ContentCoding.Error.decodedSizeExceeded(limit: 1 << 20)) {
            try ContentCoding.decode(bomb, coding: .gzip)
        }
        let exact = try ContentCoding.encode(ByteBuffer(repeating: 7, count: 1_000), coding: .deflate)
        #expect(try ContentCoding.decode(exact, coding: .deflate, maximumDecodedSize: 1_000).readableBytes == 1_000)
        #expect(throws: ContentCoding.Error.decodedSizeExceeded(limit: 999)) {
            try ContentCoding.decode(exact, coding: .deflate, maximumDecodedSize: 999)
        }
        #expect(throws: ContentCoding.Error.decodedSizeExceeded(limit: 0)) {
            try ContentCoding.decode(exact, coding: .deflate, maximumDecodedSize: -5)
        }
    }

    @Test func rejectsTruncatedCorruptAndTrailingData() {
        let truncated = ByteBuffer(bytes: Self.gzipFixture.dropLast(20))
        #expect(throws: ContentCoding.Error.truncated) { try ContentCoding.decode(truncated, coding: .gzip) }
        #expect(throws: ContentCoding.Error.truncated) { try ContentCoding.decode(ByteBuffer(), coding: .gzip) }
        var badCRC = Self.gzipFixture
        badCRC[badCRC.count - 6] ^= 0xFF
        #expect(throws: ContentCoding.Error.corruptData) {
            try ContentCoding.decode(ByteBuffer(bytes: badCRC), coding: .gzip)
        }
        #expect(throws: ContentCoding.Error.corruptData) {
            try ContentCoding.decode(ByteBuffer(string: "v=0\r\n"), coding: .gzip)
        }
        var trailing = ByteBuffer(bytes: Self.zlibFixture)
        trailing.writeString("junk")
        #expect(throws: ContentCoding.Error.trailingData) { try ContentCoding.decode(trailing, coding: .deflate) }
    }

    @Test func decodesOnlyTheReadableBytes() throws {
        var buffer = ByteBuffer(string: "ignored prefix")
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        buffer.writeBytes(Self.gzipFixture)
        #expect(String(buffer: try ContentCoding.decode(buffer, coding: .gzip)) == Self.fixtureText)
    }

    /// Mutated, truncated and random inputs either throw or decode within the limit.
    @Test func randomInputNeverTraps() {
        var random = SplitMix64(seed: 0x1F8B_0800)
        let seeds = [Self.gzipFixture, Self.zlibFixture, Self.rawDeflateFixture]
        for iteration in 0..<2_000 {
            var bytes = seeds[iteration % seeds.count]
            switch iteration % 4 {
            case 0:
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
            case 1, 2:
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            default:
                bytes = (0..<Int.random(in: 0...300, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            for coding in ContentCoding.allCases {
                let limit = 64 + iteration % 200
                if let decoded = try? ContentCoding.decode(ByteBuffer(bytes: bytes), coding: coding, maximumDecodedSize: limit) {
                    #expect(decoded.readableBytes <= limit)
                }
            }
        }
    }

}
