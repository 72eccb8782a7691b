import NIOCore
import NIOTestUtils
import Testing
@testable import SIP

/// Stream framing (RFC 3261 §18.3) and RFC 5626 §3.5.1 keep-alives, through ``SIPStreamFramer``
/// directly and through ``SIPStreamDecoder`` with NIO's ``ByteToMessageDecoderVerifier`` (STYLE (e)).
@Suite struct SIPStreamFramerTests {
    static let options = "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
        + "Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
        + "Max-Forwards: 70\r\nTo: <sip:carol@chicago.example.com>\r\n"
        + "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        + "Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n"

    static let message = "MESSAGE sip:user2@domain.example.com SIP/2.0\r\n"
        + "Via: SIP/2.0/TCP user1pc.domain.example.com;branch=z9hG4bK776sgdkse\r\n"
        + "Max-Forwards: 70\r\nFrom: sip:user1@domain.example.com;tag=49583\r\nTo: sip:user2@domain.example.com\r\n"
        + "Call-ID: asd88asd77a@1.2.3.4\r\nCSeq: 1 MESSAGE\r\nc: text/plain\r\nl:   18\r\n\r\n"
        + "Watson, come here."

    /// No Content-Length: a message without a body is still unambiguous.
    static let noLength = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a.example.com;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n"

    /// Bare LF line ends.
    static let bareLF = "BYE sip:a@b.example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\ncontent-length: 3\n\nbye"

    /// A body that itself contains an empty line and CRLFCRLF.
    static let trickyBody = "INFO sip:a@b.example.com SIP/2.0\r\nContent-Length: 12\r\n\r\n\r\n\r\nab\r\n\r\n\r\n"

    static func frame(_ text: String) -> SIPStreamFramer.Frame { .message(ByteBuffer(string: text)) }

    /// Drains every frame `framer` can read from `buffer`.
    static func drain(_ buffer: inout ByteBuffer, framer: SIPStreamFramer = SIPStreamFramer()) throws(SIPStreamFramer.FramingError) -> [SIPStreamFramer.Frame] {
        var frames: [SIPStreamFramer.Frame] = []
        while case .frame(let frame) = try framer.next(from: &buffer) { frames.append(frame) }
        return frames
    }

    // MARK: - Every split (ByteToMessageDecoderVerifier)

    @Test func decoderUnderEverySplit() throws {
        let pairs: [(ByteBuffer, [SIPStreamFramer.Frame])] = [
            (ByteBuffer(string: Self.options), [Self.frame(Self.options)]),
            (ByteBuffer(string: Self.message), [Self.frame(Self.message)]),
            (ByteBuffer(string: Self.noLength), [Self.frame(Self.noLength)]),
            (ByteBuffer(string: Self.bareLF), [Self.frame(Self.bareLF)]),
            (ByteBuffer(string: Self.trickyBody), [Self.frame(Self.trickyBody)]),
            (ByteBuffer(string: "\r\n\r\n"), [.keepAlivePing]),
            // A single CRLF before a message is skipped.
            (ByteBuffer(string: "\r\n" + Self.options), [Self.frame(Self.options)]),
            // Two messages and a ping in one write.
            (ByteBuffer(string: Self.message + Self.options + "\r\n\r\n"),
             [Self.frame(Self.message), Self.frame(Self.options), .keepAlivePing]),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs, decoderFactory: { SIPStreamDecoder() })
    }

    @Test func decoderWithFixtures() throws {
        var pairs: [(ByteBuffer, [SIPStreamFramer.Frame])] = []
        for name in ["wsinv.dat", "esc01.dat", "mpart01.dat", "unreason.dat", "longreq.dat"] {
            let bytes = try Fixture.bytes("rfc4475/valid/" + name)
            pairs.append((bytes, [.message(bytes)]))
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs, decoderFactory: { SIPStreamDecoder() })
    }

    // MARK: - Keep-alives and stray line breaks

    @Test func keepAlivePing() throws {
        var buffer = ByteBuffer(string: "\r\n\r\n")
        #expect(try SIPStreamFramer().next(from: &buffer) == .frame(.keepAlivePing))
        #expect(buffer.readableBytes == 0)
        #expect(try SIPStreamFramer().next(from: &buffer) == .needMoreData)
    }

    @Test(arguments: ["\r", "\r\n", "\r\n\r"])
    func partialPingWaits(_ prefix: String) throws {
        var buffer = ByteBuffer(string: prefix)
        #expect(try SIPStreamFramer().next(from: &buffer) == .needMoreData)
        buffer.writeBytes(Array("\r\n\r\n".utf8).dropFirst(prefix.utf8.count))
        #expect(try SIPStreamFramer().next(from: &buffer) == .frame(.keepAlivePing))
    }

    @Test func singleCRLFBetweenMessagesIsSkipped() throws {
        var buffer = ByteBuffer(string: Self.options + "\r\n" + Self.message + "\r\n" + Self.options)
        #expect(try Self.drain(&buffer) == [Self.frame(Self.options), Self.frame(Self.message), Self.frame(Self.options)])
        #expect(buffer.readableBytes == 0)
    }

    @Test func pingsBetweenMessages() throws {
        var buffer = ByteBuffer(string: "\r\n\r\n" + Self.options + "\r\n\r\n\r\n\r\n" + Self.noLength)
        #expect(try Self.drain(&buffer) == [
            .keepAlivePing, Self.frame(Self.options), .keepAlivePing, .keepAlivePing, Self.frame(Self.noLength),
        ])
    }

    @Test func severalMessagesInOneBuffer() throws {
        let all = [Self.options, Self.message, Self.noLength, Self.bareLF, Self.trickyBody]
        var buffer = ByteBuffer(string: all.joined())
        let frames = try Self.drain(&buffer)
        #expect(frames == all.map(Self.frame))
        #expect(buffer.readableBytes == 0)
        // Each frame parses as exactly one message.
        for case .message(let bytes) in frames {
            #expect(throws: Never.self) { try SIPMessageParser().parse(bytes, framing: .exact) }
        }
    }

    @Test func partialMessageWaitsAndKeepsItsBytes() throws {
        let text = Self.message
        for cut in [1, 40, text.utf8.count - 19, text.utf8.count - 1] {
            var buffer = ByteBuffer(string: String(decoding: Array(text.utf8)[..<cut], as: UTF8.self))
            #expect(try SIPStreamFramer().next(from: &buffer) == .needMoreData)
            #expect(buffer.readableBytes == cut)
            buffer.writeString(String(decoding: Array(text.utf8)[cut...], as: UTF8.self))
            #expect(try SIPStreamFramer().next(from: &buffer) == .frame(Self.frame(text)))
        }
    }

    // MARK: - Errors

    @Test func oversizedHeadIsTooLarge() throws {
        let framer = SIPStreamFramer(maxMessageSize: 100)
        var buffer = ByteBuffer(string: "INVITE sip:a@b SIP/2.0\r\nSubject: " + String(repeating: "x", count: 200))
        #expect(throws: SIPStreamFramer.FramingError.messageTooLarge(limit: 100)) { try framer.next(from: &buffer) }
        // Just under the limit without an end of head: wait.
        var short = ByteBuffer(string: String(repeating: "y", count: 99))
        #expect(try framer.next(from: &short) == .needMoreData)
        short.writeString("y")
        #expect(throws: SIPStreamFramer.FramingError.messageTooLarge(limit: 100)) { try framer.next(from: &short) }
    }

    @Test func bodyBeyondLimitIsTooLarge() throws {
        var buffer = ByteBuffer(string: "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 999999999\r\n\r\nabc")
        #expect(throws: SIPStreamFramer.FramingError.messageTooLarge(limit: 65_535)) {
            try SIPStreamFramer().next(from: &buffer)
        }
        var exact = ByteBuffer(string: "M sip:a@b SIP/2.0\r\nl: 10\r\n\r\n")
        let headLength = exact.readableBytes
        let framer = SIPStreamFramer(maxMessageSize: headLength + 10)
        exact.writeString(String(repeating: "b", count: 10))
        let whole = exact
        #expect(try framer.next(from: &exact) == .frame(.message(whole)))
        #expect(exact.readableBytes == 0)
        var over = ByteBuffer(string: "M sip:a@b SIP/2.0\r\nl: 11\r\n\r\n")
        #expect(throws: SIPStreamFramer.FramingError.messageTooLarge(limit: headLength + 10)) { try framer.next(from: &over) }
    }

    @Test(arguments: [
        "Content-Length: abc", "Content-Length: -1", "Content-Length:", "Content-Length: 1 2", "l: 0x10",
        "Content-Length: 1234567890", "Content-Length: 0\r\nContent-Length: 0", "l: 3\r\ncontent-length: 3",
    ])
    func badContentLength(_ line: String) {
        var buffer = ByteBuffer(string: "INVITE sip:a@b SIP/2.0\r\n\(line)\r\n\r\nabc")
        #expect(throws: SIPStreamFramer.FramingError.invalidContentLength) { try SIPStreamFramer().next(from: &buffer) }
    }

    @Test(arguments: ["Content-Length:   3   ", "content-LENGTH : 3", "l:3", "L\t:\t3"])
    func contentLengthSpellings(_ line: String) throws {
        let text = "INVITE sip:a@b SIP/2.0\r\n\(line)\r\n\r\nabc"
        var buffer = ByteBuffer(string: text + "NEXT")
        #expect(try SIPStreamFramer().next(from: &buffer) == .frame(Self.frame(text)))
        #expect(String(buffer: buffer) == "NEXT")
    }
}
