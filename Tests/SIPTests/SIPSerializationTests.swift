import Foundation
import NIOCore
import Testing
@testable import SIP

/// Serialization copies untouched bytes and re-renders only what an edit touched (STYLE (b)).
@Suite struct SIPSerializationTests {
    static let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n"
        + "c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

    /// A realistic INVITE with odd spacing, compact names, a folded header and a comma-joined Via line.
    static let invite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        + "v: SIP/2.0/UDP  pc33.atlanta.example.com:5060 ;branch=z9hG4bK776asdhds ;rport\r\n"
        + "Via:SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnashds8,  SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK0\r\n"
        + "Max-Forwards:   70\r\n"
        + "t:   Bob <sip:bob@biloxi.example.com>\r\n"
        + "f: \"Alice\"<sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        + "i: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        + "CSeq:314159    INVITE\r\n"
        + "m: <sip:alice@pc33.atlanta.example.com>\r\n"
        + "Record-Route: <sip:proxy.example.com;lr>\r\n"
        + "Subject: lunch\r\n"
        + "   at noon\r\n"
        + "X-Odd-Header :  keep   me  \r\n"
        + "k: 100rel,timer\r\n"
        + "c: application/sdp\r\n"
        + "l:   \(sdp.utf8.count)\r\n"
        + "\r\n"
        + sdp

    static func parseInvite() throws -> SIPMessage {
        try SIPMessageParser().parse(ByteBuffer(string: invite))
    }

    /// Splits serialized bytes into (head lines, body).
    static func split(_ message: SIPMessage, options: SIPMessage.SerializationOptions = .init()) -> (lines: [String], body: String) {
        let text = String(buffer: message.serialized(options: options))
        guard let end = text.range(of: "\r\n\r\n") else { return (text.components(separatedBy: "\r\n"), "") }
        let head = String(text[..<end.lowerBound])
        return (head.components(separatedBy: "\r\n"), String(text[end.upperBound...]))
    }

    static let originalLines: [String] = {
        let end = invite.range(of: "\r\n\r\n")!
        return String(invite[..<end.lowerBound]).components(separatedBy: "\r\n")
    }()

    /// Lines of the original INVITE by their first characters.
    static func line(_ prefix: String) -> Int {
        originalLines.firstIndex { $0.hasPrefix(prefix) }!
    }

    // MARK: - Unchanged

    @Test func unchangedMessageIsByteForByteIdentical() throws {
        let message = try Self.parseInvite()
        let out = message.serialized()
        #expect(Array(out.readableBytesView) == Array(Self.invite.utf8))
        #expect(message.serializedString == Self.invite)
        // The compact option only concerns rendered headers.
        #expect(String(buffer: message.serialized(options: .init(compactHeaders: true))) == Self.invite)
        var into = ByteBuffer(string: "prefix")
        message.write(into: &into)
        #expect(String(buffer: into) == "prefix" + Self.invite)
    }

    @Test func unchangedFixturesAreIdentical() throws {
        for name in ["wsinv.dat", "esc01.dat", "escnull.dat", "intmeth.dat", "lwsdisp.dat", "longreq.dat", "semiuri.dat",
                     "transports.dat", "mpart01.dat", "unreason.dat"] {
            let bytes = try Fixture.bytes("rfc4475/valid/" + name)
            let message = try SIPMessageParser().parse(bytes)
            #expect(message.serialized() == bytes, "\(name)")
        }
    }

    @Test func serializedMessageParsesBackTheSame() throws {
        let message = try Self.parseInvite()
        let again = try SIPMessageParser().parse(message.serialized())
        #expect(again.headers.map(\.name) == message.headers.map(\.name))
        #expect(again.headers.map(\.value) == message.headers.map(\.value))
        #expect(again.body == message.body)
        try again.validateRequest()
    }

    // MARK: - Edits touch only their lines

    @Test func prependVia() throws {
        var message = try Self.parseInvite()
        message.prependHeader(.via, "SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKnew")
        var expected = Self.originalLines
        expected.insert("Via: SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKnew", at: Self.line("v:"))
        let (lines, body) = Self.split(message)
        #expect(lines == expected)
        #expect(body == Self.sdp)
        #expect(try message.vias().map(\.host) == [
            "proxy2.example.com", "pc33.atlanta.example.com", "proxy.example.com", "192.0.2.7",
        ])
        // Compact rendering of the added line only.
        let compact = Self.split(message, options: .init(compactHeaders: true)).lines
        expected[Self.line("v:")] = "v: SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKnew"
        #expect(compact == expected)
    }

    @Test func prependWithoutExistingHeaderGoesFirst() throws {
        var message = try SIPMessageParser().parse("OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n\r\n")
        message.prependHeader(.recordRoute, "<sip:p.example.com;lr>")
        #expect(message.headers.map(\.name) == ["Record-Route", "Call-ID", "l"])
    }

    @Test func removeFirstViaValue() throws {
        var message = try Self.parseInvite()
        // The first Via line holds one value: the whole line goes.
        let first = message.removeFirstValue(.via)
        #expect(first == "SIP/2.0/UDP  pc33.atlanta.example.com:5060 ;branch=z9hG4bK776asdhds ;rport")
        var expected = Self.originalLines
        expected.remove(at: Self.line("v:"))
        #expect(Self.split(message).lines == expected)
        // The next Via line holds two values: only its first element goes, the line is re-rendered.
        let second = message.removeFirstValue(.via)
        #expect(second == "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnashds8")
        let viaIndex = Self.line("Via:") - 1
        expected[viaIndex] = "Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK0"
        #expect(Self.split(message).lines == expected)
        #expect(try message.topVia()?.host == "192.0.2.7")
        // Then the last one, and then nothing is left.
        #expect(message.removeFirstValue(.via) == "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK0")
        #expect(message.removeFirstValue(.via) == nil)
        #expect(!message.contains(.via))
        expected.remove(at: viaIndex)
        #expect(Self.split(message).lines == expected)
        #expect(Self.split(message).body == Self.sdp)
    }

    @Test func droppingTheFirstValueEditsLikeRemovingIt() throws {
        var removed = try Self.parseInvite()
        var dropped = removed
        for _ in 0..<4 {
            removed.removeFirstValue(.via)
            dropped.dropFirstValue(.via)
            #expect(Self.split(dropped).lines == Self.split(removed).lines)
        }
        var route = try SIPMessageParser().parse(
            "BYE sip:b@c.example.com SIP/2.0\r\nRoute: \"a,b\" <sip:p1.example.com;lr>, <sip:p2.example.com;x=1,2>\r\nRoute: <sip:p3>\r\n\r\n")
        route.dropFirstValue(.route)
        #expect(route.values(.route) == ["<sip:p2.example.com;x=1,2>", "<sip:p3>"])
        route.dropFirstValue(.route)
        #expect(route.values(.route) == ["<sip:p3>"])
        // A compact, folded line with an empty element keeps its name and what follows, as it came.
        var folded = try SIPMessageParser().parse(
            "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 ,\r\n , SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nCSeq: 1 MESSAGE\r\n\r\n")
        folded.dropFirstValue(.via)
        #expect(folded.serializedString.hasPrefix("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n"))
        #expect(try SIPMessageParser().parse(folded.serialized()).vias().map(\.host) == ["b.example.com"])
    }

    @Test func removeFirstRouteValueRespectsQuotesAndAngles() throws {
        var message = try SIPMessageParser().parse(
            "BYE sip:b@c.example.com SIP/2.0\r\nRoute: \"a,b\" <sip:p1.example.com;lr>, <sip:p2.example.com;x=1,2>\r\n\r\n")
        #expect(message.removeFirstValue(.route) == "\"a,b\" <sip:p1.example.com;lr>")
        #expect(message.values(.route) == ["<sip:p2.example.com;x=1,2>"])
    }

    @Test func setHeaderReplacesInPlace() throws {
        var message = try Self.parseInvite()
        message.setHeader(.maxForwards, "69")
        var expected = Self.originalLines
        expected[Self.line("Max-Forwards")] = "Max-Forwards: 69"
        #expect(Self.split(message).lines == expected)
        #expect(try message.maxForwards() == 69)
        // Every Via line collapses into one, in the place of the first.
        message.setHeader(.via, "SIP/2.0/TLS only.example.com;branch=z9hG4bKonly")
        expected[Self.line("v:")] = "Via: SIP/2.0/TLS only.example.com;branch=z9hG4bKonly"
        expected.remove(at: Self.line("Via:"))
        #expect(Self.split(message).lines == expected)
        // A header that was absent is appended (before the Content-Length that is written as it was).
        message.setHeader(.userAgent, "Tern/1.0")
        expected.append("User-Agent: Tern/1.0")
        #expect(Self.split(message).lines == expected)
    }

    @Test func removeHeadersDropsEveryLineIncludingFolds() throws {
        var message = try Self.parseInvite()
        message.removeHeaders(.subject)
        message.removeHeaders(.via)
        message.removeHeaders(SIPHeaderName("x-odd-header"))
        let expected = Self.originalLines.filter {
            !$0.hasPrefix("Subject") && !$0.hasPrefix("   at noon") && !$0.hasPrefix("v:") && !$0.hasPrefix("Via:")
                && !$0.hasPrefix("X-Odd")
        }
        #expect(Self.split(message).lines == expected)
        #expect(!message.contains(.subject) && !message.contains(.via))
    }

    @Test func setRequestURIChangesOnlyTheRequestLine() throws {
        var message = try Self.parseInvite()
        message.setRequestURI(try SIPURI(parsing: "sip:bob@192.0.2.4:5062;transport=tcp"))
        var expected = Self.originalLines
        expected[0] = "INVITE sip:bob@192.0.2.4:5062;transport=tcp SIP/2.0"
        #expect(Self.split(message).lines == expected)
        #expect(message.requestURIString == "sip:bob@192.0.2.4:5062;transport=tcp")
        // A response has no Request-URI to change.
        var response = try SIPMessageParser().parse("SIP/2.0 200 OK\r\nl: 0\r\n\r\n")
        response.setRequestURI(try SIPURI(parsing: "sip:x@y.example.com"))
        #expect(response.serializedString == "SIP/2.0 200 OK\r\nl: 0\r\n\r\n")
    }

    @Test func setBodyRewritesContentTypeAndLength() throws {
        var message = try Self.parseInvite()
        message.setBody(ByteBuffer(string: "hello"), contentType: .textPlain)
        var expected = Self.originalLines
        expected[Self.line("c:")] = "Content-Type: text/plain"
        expected[Self.line("l:")] = "Content-Length: 5"
        let (lines, body) = Self.split(message)
        #expect(lines == expected)
        #expect(body == "hello")
        // Compact option renders the rewritten lines compactly; the rest are still copied.
        expected[Self.line("c:")] = "c: text/plain"
        expected[Self.line("l:")] = "l: 5"
        #expect(Self.split(message, options: .init(compactHeaders: true)).lines == expected)
        // An empty body drops Content-Type and Content-Encoding; Content-Length becomes 0.
        message.setBody(ByteBuffer())
        let empty = Self.split(message)
        #expect(!empty.lines.contains { $0.hasPrefix("Content-Type") || $0.hasPrefix("c:") })
        #expect(empty.lines.last == "Content-Length: 0")
        #expect(empty.body == "")
        let reparsed = try SIPMessageParser().parse(message.serialized(), framing: .exact)
        #expect(reparsed.body.readableBytes == 0)
    }

    // MARK: - Content-Length always matches the body

    @Test func contentLengthAddedWhenMissing() throws {
        let message = try SIPMessageParser().parse("MESSAGE sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\n\r\nhi there")
        #expect(message.serializedString == "MESSAGE sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: 8\r\n\r\nhi there")
        #expect(String(buffer: message.serialized(options: .init(compactHeaders: true)))
            == "MESSAGE sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nl: 8\r\n\r\nhi there")
    }

    /// A datagram may end right after its last header line, without CRLF or an empty line; what is
    /// written after that line must not join its value.
    @Test func lastLineWithoutLineBreakGetsOne() throws {
        let message = try SIPMessageParser().parse("OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nSubject: last")
        #expect(message.firstValue(.subject) == "last")
        let text = message.serializedString
        #expect(text == "OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nSubject: last\r\nContent-Length: 0\r\n\r\n")
        let again = try SIPMessageParser().parse(message.serialized(), framing: .exact)
        #expect(again.firstValue(.subject) == "last")
        let cl = try SIPMessageParser().parse("OPTIONS sip:a@b.example.com SIP/2.0\r\nl: 0")
        #expect(cl.serializedString == "OPTIONS sip:a@b.example.com SIP/2.0\r\nl: 0\r\n\r\n")
        var edited = message
        edited.appendHeader(.userAgent, "Tern")
        #expect(edited.serializedString.contains("Subject: last\r\nUser-Agent: Tern\r\n"))
    }

    @Test func contentLengthFixedWhenWrong() throws {
        var message = try SIPMessageParser().parse("MESSAGE sip:a@b.example.com SIP/2.0\r\nContent-Length: 2\r\nX: y\r\n\r\nhi")
        message.setHeader(.contentLength, "999")
        #expect(message.serializedString == "MESSAGE sip:a@b.example.com SIP/2.0\r\nContent-Length: 2\r\nX: y\r\n\r\nhi")
        message.appendHeader(.contentLength, "7")
        #expect(message.serializedString == "MESSAGE sip:a@b.example.com SIP/2.0\r\nContent-Length: 2\r\nX: y\r\n\r\nhi")
        let built = SIPMessage.request(method: .message, uri: try SIPURI(parsing: "sip:a@b.example.com"),
                                       headers: [(.callID, "c1"), (.contentLength, "42")],
                                       body: ByteBuffer(string: "abc"))
        #expect(built.serializedString == "MESSAGE sip:a@b.example.com SIP/2.0\r\nCall-ID: c1\r\nContent-Length: 3\r\n\r\nabc")
        // Datagram framing drops bytes beyond Content-Length; what is sent matches what was kept.
        let trimmed = try SIPMessageParser().parse("MESSAGE sip:a@b.example.com SIP/2.0\r\nl: 2\r\n\r\nhiEXTRA")
        #expect(trimmed.serializedString == "MESSAGE sip:a@b.example.com SIP/2.0\r\nl: 2\r\n\r\nhi")
    }

    @Test func builtRequestUsesCompactFormsWhenAsked() throws {
        let request = SIPMessage.request(
            method: .register, uri: try SIPURI(parsing: "sip:registrar.example.com"),
            headers: [(.via, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"), (.from, "<sip:a@example.com>;tag=1"),
                      (.to, "<sip:a@example.com>"), (.callID, "reg-1"), (.cseq, "1 REGISTER"),
                      (.contact, "<sip:a@192.0.2.1>"), (.maxForwards, "70")])
        #expect(String(buffer: request.serialized(options: .init(compactHeaders: true))) ==
            "REGISTER sip:registrar.example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            + "f: <sip:a@example.com>;tag=1\r\nt: <sip:a@example.com>\r\ni: reg-1\r\nCSeq: 1 REGISTER\r\n"
            + "m: <sip:a@192.0.2.1>\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n")
        let parsed = try SIPMessageParser().parse(request.serialized())
        try parsed.validateRequest()
    }

    // MARK: - Responses (RFC 3261 §8.2.6.2)

    @Test func responseCopiesDialogHeadersAndAddsTag() throws {
        let request = try Self.parseInvite()
        let response = SIPMessage.response(to: request, status: SIPStatus(200), toTag: "a6c85cf")
        #expect(response.statusCode == 200 && response.reasonPhrase == "OK")
        #expect(response.version == "SIP/2.0")
        #expect(response.lineCount(.via) == 2)
        #expect(response.values(.via) == request.values(.via))
        #expect(response.firstValue(.from) == request.firstValue(.from))
        #expect(response.callID == request.callID)
        #expect(response.firstValue(.cseq) == request.firstValue(.cseq))
        #expect(try response.to()?.tag == "a6c85cf")
        #expect(response.firstValue(.to) == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
        #expect(!response.contains(.recordRoute) && !response.contains(.contact) && !response.contains(.subject))
        #expect(response.headers.map(\.name) == ["Via", "Via", "From", "To", "Call-ID", "CSeq"])
        let text = response.serializedString
        #expect(text.hasPrefix("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP  pc33.atlanta.example.com:5060 ;branch=z9hG4bK776asdhds ;rport\r\n"))
        #expect(text.hasSuffix("Content-Length: 0\r\n\r\n"))
        let parsed = try SIPMessageParser().parse(response.serialized())
        try parsed.validateResponse()
        #expect(try parsed.vias().count == 3)
        #expect(try parsed.cseq() == SIPCSeq(314159, .invite))
    }

    @Test func responseCopiesPlainLinesAsTheyCame() throws {
        let request = try SIPMessageParser().parse(
            "MESSAGE sip:bob@tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKplain;rport=5060;received=192.0.2.1\r\n"
            + "Max-Forwards: 70\r\nFrom: <sip:alice@tern.test>;tag=a1\r\nTo: <sip:bob@tern.test>\r\ncall-id: plain-1\r\n"
            + "CSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
        let response = SIPMessage.response(to: request, status: SIPStatus(202), toTag: "t9")
        #expect(response.serializedString == "SIP/2.0 202 Accepted\r\n"
            + "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKplain;rport=5060;received=192.0.2.1\r\n"
            + "From: <sip:alice@tern.test>;tag=a1\r\nTo: <sip:bob@tern.test>;tag=t9\r\ncall-id: plain-1\r\n"
            + "CSeq: 7 MESSAGE\r\nContent-Length: 0\r\n\r\n")
        #expect(response.callID == "plain-1")
        #expect(response.body.readableBytes == 0)
    }

    @Test(arguments: [
        ("<sip:a@b>;tag=1", true), ("<sip:a@b> ; TAG = 1", true), ("sip:a@b;tag=1", true),
        ("<sip:a@b;tag=inside>", false), ("<sip:a@b>;tagged=1", false), ("<sip:a@b>;xtag=1", false), ("<sip:a@b>", false),
    ])
    func tagParameterIsFoundOnlyOutsideTheURI(_ value: String, _ expected: Bool) {
        #expect(SIPMessage.hasTagParameter(value) == expected)
    }

    @Test func responseKeepsAnExistingToTagAndCanCopyRecordRoute() throws {
        let request = try SIPMessageParser().parse("BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
            + "Via: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKnashds7\r\nRecord-Route: <sip:p1.example.com;lr>\r\n"
            + "From: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\nTo: <sip:alice@atlanta.example.com>;TAG=1928301774\r\n"
            + "Call-ID: a84b4c76e66710\r\nCSeq: 231 BYE\r\nl: 0\r\n\r\n")
        let response = SIPMessage.response(to: request, status: SIPStatus(481), toTag: "ignored", copyRecordRoute: true)
        #expect(try response.to()?.tag == "1928301774")
        #expect(response.firstValue(.to) == "<sip:alice@atlanta.example.com>;TAG=1928301774")
        #expect(response.reasonPhrase == "Call/Transaction Does Not Exist")
        #expect(response.headers.map(\.name) == ["Via", "Record-Route", "From", "To", "Call-ID", "CSeq"])
        let noTag = SIPMessage.response(to: request, status: SIPStatus(100))
        #expect(noTag.firstValue(.to) == request.firstValue(.to))
        let custom = SIPMessage.response(to: request, status: SIPStatus(400, "Bad CSeq"))
        #expect(custom.serializedString.hasPrefix("SIP/2.0 400 Bad CSeq\r\n"))
    }
}
