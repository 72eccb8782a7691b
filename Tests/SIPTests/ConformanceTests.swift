import NIOCore
import Testing
@testable import SIP

/// Every RFC 4475 torture message and every RFC 5118 IPv6 message (Fixtures/README.md gives their
/// provenance) with what the RFC says a server does with it. Policies where the RFC leaves a choice:
/// Tern refuses extra whitespace in the request line, `<>` around the Request-URI, headers in the
/// Request-URI, and unquoted display names with separators (400); it accepts the RFC 3261-ABNF
/// form `x:::IPv4` that RFC 5118 §4.10 asks parsers to tolerate.
@Suite struct ConformanceTests {
    enum Outcome: Sendable, CustomTestStringConvertible {
        /// Parses and passes the server's sanity checks.
        case accepted
        /// A response that parses and passes the proxy's checks.
        case acceptedResponse
        /// The parser refuses it with this error.
        case parseError(SIPParseError)
        /// It parses, and the sanity checks refuse it with this error.
        case rejected(SIPParseError)
        /// A response that is dropped.
        case droppedResponse

        var testDescription: String {
            switch self {
            case .accepted: "accepted"
            case .acceptedResponse: "accepted response"
            case .parseError(let error): "parse error \(error)"
            case .rejected(let error): "rejected \(error) → \(SIPStatus(error))"
            case .droppedResponse: "dropped response"
            }
        }
    }

    static let expectations: [(String, Outcome)] = [
        // RFC 4475 §3.1.1: valid messages
        ("rfc4475/valid/wsinv.dat", .accepted),
        ("rfc4475/valid/intmeth.dat", .accepted),
        ("rfc4475/valid/esc01.dat", .accepted),
        ("rfc4475/valid/escnull.dat", .accepted),
        ("rfc4475/valid/esc02.dat", .accepted),
        ("rfc4475/valid/lwsdisp.dat", .accepted),
        ("rfc4475/valid/longreq.dat", .accepted),
        ("rfc4475/valid/dblreq.dat", .accepted),
        ("rfc4475/valid/semiuri.dat", .accepted),
        ("rfc4475/valid/transports.dat", .accepted),
        ("rfc4475/valid/mpart01.dat", .accepted),
        ("rfc4475/valid/unreason.dat", .acceptedResponse),
        ("rfc4475/valid/noreason.dat", .acceptedResponse),
        // RFC 4475 §3.1.2: invalid messages
        ("rfc4475/invalid/badinv01.dat", .rejected(.malformedHeader(.via, "parameter without a name"))),
        ("rfc4475/invalid/clerr.dat", .parseError(.bodyShorterThanContentLength(announced: 9999, received: 154))),
        ("rfc4475/invalid/ncl.dat", .parseError(.invalidContentLength)),
        ("rfc4475/invalid/scalar02.dat", .rejected(.malformedHeader(.cseq, "sequence number out of range"))),
        ("rfc4475/invalid/scalarlg.dat", .droppedResponse),
        ("rfc4475/invalid/quotbal.dat", .rejected(.malformedHeader(.to, "unterminated quoted display name"))),
        ("rfc4475/invalid/ltgtruri.dat", .rejected(.malformedRequestURI("bad scheme"))),
        ("rfc4475/invalid/lwsruri.dat", .parseError(.malformedStartLine("whitespace in Request-URI"))),
        ("rfc4475/invalid/lwsstart.dat", .parseError(.malformedStartLine("extra whitespace"))),
        ("rfc4475/invalid/trws.dat", .parseError(.malformedStartLine("trailing whitespace"))),
        ("rfc4475/invalid/escruri.dat", .rejected(.malformedRequestURI("headers are not allowed in a Request-URI"))),
        ("rfc4475/invalid/baddate.dat", .accepted),
        ("rfc4475/invalid/regbadct.dat", .rejected(.malformedHeader(.contact, "URI with headers must be in <>"))),
        ("rfc4475/invalid/badaspec.dat", .rejected(.malformedHeader(.to, "bad scheme"))),
        ("rfc4475/invalid/baddn.dat", .rejected(.malformedHeader(.from, "display name is neither a token nor quoted"))),
        ("rfc4475/invalid/badvers.dat", .parseError(.unsupportedVersion("SIP/7.0"))),
        ("rfc4475/invalid/mismatch01.dat", .rejected(.cseqMethodMismatch)),
        ("rfc4475/invalid/mismatch02.dat", .rejected(.cseqMethodMismatch)),
        ("rfc4475/invalid/bigcode.dat", .parseError(.invalidStatusCode)),
        // RFC 4475 §3.2, §3.3, §3.4: transaction, application-layer and 2543 cases (handled later)
        ("rfc4475/invalid/badbranch.dat", .accepted),
        ("rfc4475/invalid/insuf.dat", .rejected(.missingHeader(.from))),
        ("rfc4475/invalid/unkscm.dat", .rejected(.unsupportedURIScheme("nobodyknowsthisscheme"))),
        ("rfc4475/invalid/novelsc.dat", .rejected(.unsupportedURIScheme("soap.beep"))),
        ("rfc4475/invalid/unksm2.dat", .accepted),
        ("rfc4475/invalid/bext01.dat", .accepted),
        ("rfc4475/invalid/invut.dat", .accepted),
        ("rfc4475/invalid/regaut01.dat", .accepted),
        ("rfc4475/invalid/multi01.dat", .rejected(.duplicateHeader(.from))),
        ("rfc4475/invalid/mcl01.dat", .parseError(.multipleContentLength)),
        ("rfc4475/invalid/bcast.dat", .acceptedResponse),
        ("rfc4475/invalid/zeromf.dat", .accepted),
        ("rfc4475/invalid/cparam01.dat", .accepted),
        ("rfc4475/invalid/cparam02.dat", .accepted),
        ("rfc4475/invalid/regescrt.dat", .accepted),
        ("rfc4475/invalid/sdp01.dat", .accepted),
        ("rfc4475/invalid/inv2543.dat", .accepted),
        // RFC 5118 §4
        ("rfc5118/ipv6-good", .accepted),
        ("rfc5118/ipv6-bad", .rejected(.malformedRequestURI("empty port"))),
        ("rfc5118/port-ambiguous", .accepted),
        ("rfc5118/port-unambiguous", .accepted),
        ("rfc5118/via-received-param-with-delim", .accepted),
        ("rfc5118/via-received-param-no-delim", .accepted),
        ("rfc5118/ipv6-in-sdp", .accepted),
        ("rfc5118/mult-ip-in-header", .accepted),
        ("rfc5118/mult-ip-in-sdp", .accepted),
        ("rfc5118/ipv4-mapped-ipv6", .accepted),
        ("rfc5118/ipv6-bug-abnf-3-colons", .accepted),
        ("rfc5118/ipv6-correct-abnf-2-colons", .accepted),
    ]

    @Test func everyFixtureHasAnExpectation() {
        let all = ["rfc4475/valid", "rfc4475/invalid", "rfc5118"].flatMap { folder in
            Fixture.names(in: folder).filter { !$0.hasPrefix(".") }.map { folder + "/" + $0 }
        }
        #expect(all.count == 61)
        #expect(Set(all) == Set(Self.expectations.map(\.0)))
    }

    @Test(arguments: expectations)
    func fixture(_ path: String, _ expected: Outcome) throws {
        let bytes = try Fixture.bytes(path)
        let parser = SIPMessageParser()
        switch expected {
        case .parseError(let error):
            #expect(throws: error) { try parser.parse(bytes) }
        case .accepted:
            let message = try parser.parse(bytes)
            #expect(message.isRequest)
            try message.validateRequest()
            #expect(message.canBeAnswered)
        case .rejected(let error):
            let message = try parser.parse(bytes)
            #expect(throws: error) { try message.validateRequest() }
            #expect(message.canBeAnswered)
        case .acceptedResponse:
            let message = try parser.parse(bytes)
            #expect(!message.isRequest)
            try message.validateResponse()
        case .droppedResponse:
            let message = try parser.parse(bytes)
            #expect(throws: SIPParseError.self) { try message.validateResponse() }
        }
    }

    // MARK: - Parsed fields of the valid messages

    @Test func wsinvTortuousInvite() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/wsinv.dat"))
        #expect(message.method == .invite)
        let uri = try message.requestURI()
        #expect(uri.user == "vivekg" && uri.host == "chair-dnrc.example.com")
        #expect(uri.parameters.contains("unknownparam"))
        #expect(try message.to()?.tag == "1918181833n")
        let from = try #require(try message.from())
        #expect(from.tag == "98asjd8")
        #expect(from.displayName == "J Rosenberg \\\"")
        #expect(try message.maxForwards() == 68)
        #expect(try message.cseq() == SIPCSeq(9, .invite))
        #expect(message.callID == "wsinv.ndaksdj@192.0.2.1")
        let vias = try message.vias()
        #expect(vias.count == 3)
        #expect(vias[0].branch == "390skdjuw" && !vias[0].hasMagicCookie)
        #expect(vias[1].transport == "TCP" && vias[1].host == "spindle.example.com")
        #expect(vias[2].branch == "z9hG4bK30239")
        #expect(message.body.readableBytes == 150)
        #expect(try message.contentType() == .sdp)
        #expect(message.firstValue(.subject) == "")
        #expect(message.firstValue(SIPHeaderName("UnknownHeaderWithUnusualValue")) == ";;,,;;,;")
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected contacts")
            return
        }
        #expect(contacts.first?.displayName == "Quoted string \"\"")
        #expect(contacts.first?.q == 0.33)
        #expect(contacts.first?.parameters.contains("secondparam") == true)
    }

    @Test func esc01Escapes() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/esc01.dat"))
        let uri = try message.requestURI()
        #expect(uri.unescapedUser == "sips:user@example.com")
        #expect(uri.host == "example.net")
        let to = try #require(try message.to())
        #expect(to.uri.isEquivalent(to: try SIPURI(parsing: "sip:user@example.com")))
        #expect(try message.from()?.uri.unescapedUser == "I have spaces")
        #expect(message.callID == "esc01.239409asdfakjkn23onasd0-3234")
        guard case .addresses(let contacts) = try message.contacts(), let contact = contacts.first else {
            Issue.record("expected one contact")
            return
        }
        #expect(contact.uri.unescapedUser == "caller")
    }

    @Test func escnullKeepsEmbeddedNulls() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/escnull.dat"))
        let to = try #require(try message.to())
        #expect(to.uri.unescapedUser?.utf8.count == 11)
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected contacts")
            return
        }
        #expect(contacts.count == 2)
        #expect(!contacts[0].uri.isEquivalent(to: contacts[1].uri))
    }

    @Test func esc02UnknownMethodWithPercent() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/esc02.dat"))
        #expect(message.method == SIPMethod("RE%47IST%45R"))
        #expect(message.method != .register)
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected contacts")
            return
        }
        #expect(contacts.count == 2)
        #expect(message.firstValue(SIPHeaderName("C%6Fntact")) == "<sip:alias2@host2.example.com>")
    }

    @Test func dblreqIgnoresTrailingOctets() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/dblreq.dat"))
        #expect(message.method == .register)
        #expect(message.callID == "dblreq.0ha0isndaksdj99sdfafnl3lk233412")
        #expect(message.body.readableBytes == 0)
        #expect(!message.serializedString.contains("INVITE"))
    }

    @Test func semiuriUserPart() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/semiuri.dat"))
        let uri = try message.requestURI()
        #expect(uri.unescapedUser == "user;par=u@example.net")
        #expect(uri.host == "example.com")
        #expect(uri.parameters.isEmpty)
        #expect(try message.accept().count == 6)
    }

    @Test func mpart01BinaryBodyFramed() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/mpart01.dat"))
        #expect(message.method == .message)
        let length = try #require(Int(message.firstValue(.contentLength) ?? ""))
        #expect(message.body.readableBytes == length)
        let type = try #require(try message.contentType())
        #expect(type.essence == "multipart/mixed")
        let boundary = try #require(type.parameters.unquoted("boundary"))
        let multipart = try MultipartBody(parsing: message.body, boundary: boundary)
        #expect(multipart.parts.count == 2)
    }

    @Test func noreasonAndUnreason() throws {
        let noreason = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/noreason.dat"))
        #expect(noreason.statusCode == 100)
        #expect(noreason.reasonPhrase == "")
        let unreason = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/unreason.dat"))
        #expect(unreason.statusCode == 200)
        #expect((unreason.reasonPhrase ?? "").utf8.count > 20)
    }

    @Test func transportsUnknownViaTransports() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/transports.dat"))
        let transports = try message.vias().map(\.transport)
        #expect(transports.contains("UDP"))
        #expect(transports.count >= 4)
    }

    @Test func intmethUnusualMethodAndURI() throws {
        let message = try SIPMessageParser().parse(try Fixture.bytes("rfc4475/valid/intmeth.dat"))
        #expect(message.method?.rawValue == "!interesting-Method0123456789_*+`.%indeed'~")
        let uri = try message.requestURI()
        #expect(uri.host == "example.com")
        #expect(uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    }

    // MARK: - RFC 5118

    @Test func portAmbiguity() throws {
        let ambiguous = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/port-ambiguous"))
        let a = try ambiguous.requestURI()
        #expect(a.host == "[2001:db8::10:5070]" && a.port == nil)
        let unambiguous = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/port-unambiguous"))
        let b = try unambiguous.requestURI()
        #expect(b.host == "[2001:db8::10]" && b.port == 5070)
    }

    @Test func receivedParameterWithAndWithoutBrackets() throws {
        for name in ["via-received-param-with-delim", "via-received-param-no-delim"] {
            let message = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/" + name))
            let via = try #require(try message.topVia())
            let received = try #require(via.received)
            let bare = received.hasPrefix("[") ? String(received.dropFirst().dropLast()) : received
            #expect(IPv6Address(bare.utf8) != nil, "\(name): \(received)")
        }
    }

    @Test func ipv4MappedAndThreeColonForms() throws {
        let mapped = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/ipv4-mapped-ipv6"))
        #expect(try mapped.topVia()?.host == "[::ffff:192.0.2.10]")
        let three = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/ipv6-bug-abnf-3-colons"))
        let two = try SIPMessageParser().parse(try Fixture.bytes("rfc5118/ipv6-correct-abnf-2-colons"))
        #expect(try three.requestURI().isEquivalent(to: two.requestURI()))
    }
}
