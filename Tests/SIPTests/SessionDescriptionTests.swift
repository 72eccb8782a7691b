import NIOCore
import SIP
import Testing

@Suite struct SessionDescriptionTests {
    /// A typical offer (RFC 3264 §10.1 style) with a telephone-event and an unknown line.
    static let offer = """
        v=0\r
        o=alice 2890844526 2890844526 IN IP4 atlanta.example.com\r
        s=-\r
        c=IN IP4 192.0.2.101\r
        b=AS:64\r
        t=0 0\r
        a=sendrecv\r
        m=audio 49170 RTP/AVP 0 8 97 101\r
        a=rtpmap:0 PCMU/8000\r
        a=rtpmap:8 PCMA/8000\r
        a=rtpmap:97 iLBC/8000\r
        a=fmtp:97 mode=30\r
        a=rtpmap:101 telephone-event/8000\r
        a=fmtp:101 0-15\r
        a=ptime:20\r
        a=x-vendor:some  opaque   value\r
        m=video 51372 RTP/AVPF 96 97\r
        a=rtpmap:96 H264/90000\r
        a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r
        a=rtcp-fb:96 nack pli\r
        a=rtpmap:97 rtx/90000\r
        a=fmtp:97 apt=96\r
        a=rtcp-fb:* ccm fir\r

        """

    @Test func roundTripIsByteIdentical() throws {
        let sdp = try SessionDescription(parsing: Self.offer)
        #expect(sdp.description == Self.offer)
        let fromBytes = try SessionDescription(parsing: ByteBuffer(string: Self.offer))
        #expect(fromBytes == sdp)
        #expect(fromBytes.rendered() == ByteBuffer(string: Self.offer))
    }

    @Test func lineFeedOnlyInputRendersWithCRLF() throws {
        let lf = Self.offer.replacing("\r\n", with: "\n")
        let sdp = try SessionDescription(parsing: lf)
        #expect(sdp.description == Self.offer)
    }

    @Test func unknownLinesRoundTrip() throws {
        let text = "v=0\r\nz=2882844526 -1h\r\nk=prompt\r\nY=upper case type\r\nm=message 7394 TCP/MSRP *\r\nq=?\r\n"
        let sdp = try SessionDescription(parsing: text)
        #expect(sdp.description == text)
        #expect(sdp.media.first?.formats == ["*"])
    }

    @Test func listsMediaAndCodecs() throws {
        let sdp = try SessionDescription(parsing: Self.offer)
        #expect(sdp.media.map(\.mediaType) == ["audio", "video"])
        let audio = try #require(sdp.media.first)
        #expect(audio.port == 49170)
        #expect(audio.proto == "RTP/AVP")
        #expect(audio.formats == ["0", "8", "97", "101"])
        #expect(audio.codecs.map(\.encodingName) == ["PCMU", "PCMA", "iLBC", "telephone-event"])
        #expect(audio.codecs[2] == SessionDescription.Codec(
            format: "97", encodingName: "iLBC", clockRate: 8000, formatParameters: "mode=30"
        ))
        #expect(audio.codecs[3].payloadType == 101)
        #expect(audio.attributes(named: "ptime") == ["20"])
        let video = try #require(sdp.media.last)
        #expect(video.codecs.first?.formatParameter("packetization-mode") == "1")
        #expect(sdp.sessionAttributes(named: "sendrecv") == [""])
    }

    @Test func staticPayloadTypesAreNamedWithoutRtpmap() throws {
        let sdp = try SessionDescription(parsing: "v=0\r\nm=audio 5004 RTP/AVP 0 8 18 99\r\n")
        let codecs = try #require(sdp.media.first).codecs
        #expect(codecs.map(\.encodingName) == ["PCMU", "PCMA", "G729", nil])
        #expect(codecs.map(\.clockRate) == [8000, 8000, 8000, nil])
    }

    @Test func removesPCMAWithItsAttributes() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let removed = sdp.removeCodecs(named: ["pcma"])
        #expect(removed == 1)
        let expected = Self.offer
            .replacing("m=audio 49170 RTP/AVP 0 8 97 101\r\n", with: "m=audio 49170 RTP/AVP 0 97 101\r\n")
            .replacing("a=rtpmap:8 PCMA/8000\r\n", with: "")
        #expect(sdp.description == expected)
    }

    @Test func removesStaticCodecByName() throws {
        var sdp = try SessionDescription(parsing: "v=0\r\nm=audio 5004 RTP/AVP 0 8 18\r\na=fmtp:18 annexb=no\r\n")
        let count = sdp.removeCodecs(named: ["G729"])
        #expect(count == 1)
        #expect(sdp.description == "v=0\r\nm=audio 5004 RTP/AVP 0 8\r\n")
    }

    @Test func removesByPayloadTypeOnlyInTheGivenMedia() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let count = sdp.removeCodecs(payloadTypes: ["97"], mediaType: "audio")
        #expect(count == 1)
        let audio = try #require(sdp.media.first)
        #expect(audio.formats == ["0", "8", "101"])
        #expect(!audio.lines.contains { $0.value.hasPrefix("rtpmap:97") || $0.value.hasPrefix("fmtp:97") })
        // The video section's format 97 (rtx) is untouched.
        #expect(sdp.media.last?.formats == ["96", "97"])
    }

    @Test func removingACodecRemovesItsRetransmissionFormat() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let count = sdp.removeCodecs(named: ["H264"])
        #expect(count == 2)
        let video = try #require(sdp.media.last)
        #expect(video.mediaLineValue == "video 51372 RTP/AVPF")
        #expect(video.lines.map(\.description) == ["a=rtcp-fb:* ccm fir"])
    }

    @Test func keepsOnlyListedCodecs() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let count = sdp.keepOnlyCodecs(named: ["PCMU", "telephone-event"], mediaType: "audio")
        #expect(count == 2)
        let audio = try #require(sdp.media.first)
        #expect(audio.formats == ["0", "101"])
        #expect(audio.attributes(named: "rtpmap") == ["0 PCMU/8000", "101 telephone-event/8000"])
        #expect(audio.attributes(named: "fmtp") == ["101 0-15"])
        #expect(sdp.media.last?.formats == ["96", "97"])
    }

    @Test func removesMediaSections() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let removed = sdp.removeMedia(at: 1)
        #expect(removed?.mediaType == "video")
        let outOfRange = sdp.removeMedia(at: 5)
        let negative = sdp.removeMedia(at: -1)
        #expect(outOfRange == nil && negative == nil)
        let cut = try #require(Self.offer.firstRange(of: "m=video"))
        #expect(sdp.description == String(Self.offer[..<cut.lowerBound]))
        sdp.removeMedia { $0.mediaType == "audio" }
        #expect(sdp.media.isEmpty)
    }

    @Test func removesAttributesEverywhere() throws {
        var sdp = try SessionDescription(parsing: Self.offer)
        let count = sdp.removeAttributes(named: ["sendrecv", "ptime", "rtcp-fb", "x-vendor"])
        #expect(count == 5)
        let text = sdp.description
        #expect(!text.contains("a=sendrecv") && !text.contains("a=ptime") && !text.contains("rtcp-fb"))
        #expect(text.contains("a=rtpmap:97 iLBC/8000\r\n"))
    }

    @Test func editedMediaLineIsRebuiltAndUneditedIsKept() throws {
        var sdp = try SessionDescription(parsing: "v=0\r\nm=audio  49170/2  RTP/AVP 0\r\n")
        #expect(sdp.description == "v=0\r\nm=audio  49170/2  RTP/AVP 0\r\n")
        #expect(sdp.media[0].portCount == 2)
        sdp.media[0].port = 0
        #expect(sdp.description == "v=0\r\nm=audio 0/2 RTP/AVP 0\r\n")
    }

    static let invalid: [(String, SessionDescription.Error)] = [
        ("", .missingVersion),
        ("\r\n\r\n", .missingVersion),
        ("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n", .missingVersion),
        ("v=0\r\ngarbage\r\n", .malformedLine(line: 2)),
        ("v=0\r\n=x\r\n", .malformedLine(line: 2)),
        ("v=0\r\nab=c\r\n", .malformedLine(line: 2)),
        ("v=0\r\n1=c\r\n", .malformedLine(line: 2)),
        ("v=0\r\na=x\0y\r\n", .malformedLine(line: 2)),
        ("v=0\r\na=x\ry\r\n", .malformedLine(line: 2)),
        ("v=0\r\n\r\nm=audio\r\n", .malformedMediaLine(line: 3)),
        ("v=0\r\nm=audio 70000 RTP/AVP 0\r\n", .malformedMediaLine(line: 2)),
        ("v=0\r\nm=audio 5/x RTP/AVP 0\r\n", .malformedMediaLine(line: 2)),
        ("v=0\r\nm=audio -1 RTP/AVP 0\r\n", .malformedMediaLine(line: 2)),
    ]

    @Test(arguments: invalid)
    func rejectsBadInput(_ text: String, _ expected: SessionDescription.Error) {
        let error = #expect(throws: SessionDescription.Error.self) { try SessionDescription(parsing: text) }
        #expect(error == expected)
    }

    @Test func rejectsInvalidUTF8() {
        let bytes = ByteBuffer(bytes: Array("v=0\r\ns=".utf8) + [0xC3, 0x28] + Array("\r\n".utf8))
        #expect(throws: SessionDescription.Error.invalidUTF8) { try SessionDescription(parsing: bytes) }
    }

    /// Mutated, truncated and random inputs either throw or parse, and what parses re-renders stably.
    @Test func randomInputNeverTraps() throws {
        var random = SplitMix64(seed: 0x5D9_0FFE5)
        let seed = Array(Self.offer.utf8)
        for iteration in 0..<2_000 {
            var bytes = seed
            switch iteration % 4 {
            case 0:
                bytes = bytes.prefix(Int.random(in: 0...bytes.count, using: &random)).map { $0 }
            case 1:
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 2:
                let alphabet = Array("vmoa=0123456789 /:\r\n-*xPCMU".utf8)
                bytes = (0..<Int.random(in: 0...120, using: &random)).map { _ in
                    alphabet[Int.random(in: 0..<alphabet.count, using: &random)]
                }
            default:
                bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            guard var sdp = try? SessionDescription(parsing: ByteBuffer(bytes: bytes)) else { continue }
            let rendered = sdp.description
            let again = try SessionDescription(parsing: rendered)
            #expect(again.description == rendered)
            _ = sdp.media.map(\.codecs)
            sdp.removeCodecs(named: ["PCMA"])
            sdp.keepOnlyCodecs(named: ["PCMU"])
            sdp.removeAttributes(named: ["rtpmap"])
            _ = try SessionDescription(parsing: sdp.description)
        }
    }

}
