import NIOCore
import Testing
@testable import SIP

/// The header index built by ``SIPMessageParser`` and every typed accessor of ``SIPMessage``
/// (RFC 3261 §7.3, §20, and the extension RFCs each accessor cites).
@Suite struct SIPMessageParserTests {
    // MARK: - Helpers

    /// A request with the given header lines (joined with CRLF) and body; no Content-Length is added.
    static func request(_ headers: [String], body: String = "", method: String = "INVITE") -> String {
        "\(method) sip:bob@biloxi.example.com SIP/2.0\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n" + body
    }

    static func parse(_ headers: [String], body: String = "") throws -> SIPMessage {
        try SIPMessageParser().parse(request(headers, body: body))
    }

    /// The minimum every request carries (RFC 3261 §8.1.1).
    static let basics = [
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Max-Forwards: 70",
    ]

    // MARK: - Header index

    @Test func indexKeepsOneEntryPerLineInOrder() throws {
        let message = try Self.parse([
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
            "X-First: 1",
            "Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2, SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
            "Subject: hello",
            "x-first: 2",
            "Content-Length: 0",
        ])
        let headers = message.headers
        #expect(headers.map(\.name) == ["Via", "X-First", "Via", "Subject", "x-first", "Content-Length"])
        #expect(headers.map(\.value) == [
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1", "1",
            "SIP/2.0/UDP b.example.com;branch=z9hG4bK2, SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
            "hello", "2", "0",
        ])
        #expect(message.lineCount(.via) == 2)
        #expect(message.values(.via).count == 3)
        #expect(message.lineCount(SIPHeaderName("X-FIRST")) == 2)
        #expect(message.values(SIPHeaderName("X-First")) == ["1", "2"])
        #expect(message.firstValue(.subject) == "hello")
        #expect(!message.contains(.contact))
        #expect(message.firstValue(.contact) == nil)
        #expect(message.values(.contact).isEmpty)
    }

    @Test(arguments: ["Call-ID", "call-id", "CALL-ID", "cAlL-iD", "i", "I"])
    func namesAreCaseInsensitive(_ spelling: String) throws {
        let message = try Self.parse(["\(spelling): abc@host"])
        #expect(message.callID == "abc@host")
        #expect(message.firstValue(.callID) == "abc@host")
        #expect(message.firstValue(SIPHeaderName(spelling)) == "abc@host")
        #expect(message.contains(SIPHeaderName(spelling.uppercased())))
    }

    @Test func whitespaceBeforeColonAndAroundValueIsIgnored() throws {
        let message = try Self.parse(["Subject   :    spaced out   ", "X-Tab\t:\tvalue\t"])
        #expect(message.firstValue(.subject) == "spaced out")
        #expect(message.firstValue(SIPHeaderName("x-tab")) == "value")
    }

    /// RFC 3261 §7.3.3 and the RFCs that added compact forms.
    static let compactForms: [(Character, SIPHeaderName)] = [
        ("i", .callID), ("m", .contact), ("e", .contentEncoding), ("l", .contentLength),
        ("c", .contentType), ("f", .from), ("s", .subject), ("k", .supported), ("t", .to),
        ("v", .via), ("o", .event), ("u", .allowEvents), ("r", SIPHeaderName("Refer-To")),
        ("b", SIPHeaderName("Referred-By")), ("x", SIPHeaderName("Session-Expires")),
        ("y", SIPHeaderName("Identity")), ("j", SIPHeaderName("Reject-Contact")),
        ("a", SIPHeaderName("Accept-Contact")), ("d", SIPHeaderName("Request-Disposition")),
    ]

    @Test(arguments: compactForms)
    func compactFormResolvesToLongName(_ compact: Character, _ long: SIPHeaderName) throws {
        #expect(long.knownIndex != nil, "\(long) should be a known header")
        #expect(long.compactForm == compact)
        #expect(SIPHeaderName(String(compact)) == long)
        #expect(SIPHeaderName(String(compact).uppercased()) == long)
        #expect(SIPHeaderName(String(compact)).canonical == long.canonical)
        let value = compact == "l" ? "0" : "value-of-\(compact)"
        for spelling in [String(compact), String(compact).uppercased(), long.canonical, long.canonical.lowercased()] {
            let message = try Self.parse(["\(spelling): \(value)"])
            #expect(message.firstValue(long) == value, "\(spelling)")
            #expect(message.lineCount(long) == 1)
            #expect(message.headers.first?.name == spelling)
        }
        // Compact and long spellings of one header are lines of one header.
        if long != .contentLength {
            let mixed = try Self.parse(["\(compact): \(value)", "\(long.canonical): \(value)"])
            #expect(mixed.lineCount(long) == 2)
            #expect(mixed.headers.map(\.value) == [value, value])
        }
    }

    @Test func headersWithoutCompactFormHaveNone() {
        #expect(SIPHeaderName.cseq.compactForm == nil)
        #expect(SIPHeaderName.authorization.compactForm == nil)
        #expect(SIPHeaderName("X-Custom").compactForm == nil)
        #expect(SIPHeaderName("X-Custom") == SIPHeaderName("x-custom"))
        #expect(SIPHeaderName("X-Custom") != SIPHeaderName("X-Other"))
        // A single unknown letter is an extension header, not a compact form.
        #expect(SIPHeaderName("z").knownIndex == nil)
    }

    // MARK: - Folding

    static let folded: [(String, String)] = [
        ("Subject: I know you're there,\r\n pick up the phone\r\n   and talk to me!",
         "I know you're there, pick up the phone and talk to me!"),
        ("Subject: tab\r\n\tfolded", "tab folded"),
        ("Subject: trailing   \r\n    spaces", "trailing spaces"),
        ("Subject:\r\n only continuation", "only continuation"),
        ("Subject: a\r\n b\r\n c\r\n d", "a b c d"),
    ]

    @Test(arguments: folded)
    func foldedLinesUnfoldToSingleSpaces(_ line: String, _ expected: String) throws {
        let message = try Self.parse([line, "Call-ID: after@fold"])
        #expect(message.firstValue(.subject) == expected)
        #expect(message.callID == "after@fold")
        #expect(message.headers.count == 2)
    }

    @Test func foldedListHeaderIsSplitAndParsed() throws {
        let message = try Self.parse([
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/UDP b.example.com\r\n\t;branch=z9hG4bK2",
        ])
        #expect(message.values(.via) == [
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1", "SIP/2.0/UDP b.example.com ;branch=z9hG4bK2",
        ])
        let vias = try message.vias()
        #expect(vias.map(\.host) == ["a.example.com", "b.example.com"])
        #expect(vias.map(\.branch) == ["z9hG4bK1", "z9hG4bK2"])
    }

    @Test func continuationWithoutHeaderIsMalformed() {
        #expect(throws: SIPParseError.malformedHeaderLine) {
            try SIPMessageParser().parse("INVITE sip:a@b SIP/2.0\r\n continuation\r\n\r\n")
        }
        #expect(throws: SIPParseError.malformedHeaderLine) {
            try SIPMessageParser().parse("INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n")
        }
        #expect(throws: SIPParseError.malformedHeaderLine) {
            try SIPMessageParser().parse("INVITE sip:a@b SIP/2.0\r\n: empty name\r\n\r\n")
        }
        #expect(throws: SIPParseError.malformedHeaderLine) {
            try SIPMessageParser().parse("INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n")
        }
    }

    // MARK: - Comma-separated lists

    static let listHeaders: [SIPHeaderName] = [
        .via, .contact, .route, .recordRoute, .path, .serviceRoute, .supported, .require, .proxyRequire,
        .unsupported, .allow, .allowEvents, .accept, .acceptEncoding, .contentEncoding, .pAssertedIdentity,
    ]

    @Test(arguments: listHeaders)
    func listHeadersSplitAtCommas(_ name: SIPHeaderName) throws {
        #expect(name.isCommaSeparatedList)
        let message = try Self.parse(["\(name.canonical): one ,two,  three", "\(name.canonical): four"])
        #expect(message.values(name) == ["one", "two", "three", "four"])
        #expect(message.lineCount(name) == 2)
        #expect(message.firstValue(name) == "one ,two,  three")
    }

    static let singleValueHeaders: [SIPHeaderName] = [
        .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate, .subject, .callID,
        .from, .to, .cseq, .date, .userAgent, .server, SIPHeaderName("X-Unknown"),
    ]

    @Test(arguments: singleValueHeaders)
    func otherHeadersAreNotSplit(_ name: SIPHeaderName) throws {
        #expect(!name.isCommaSeparatedList)
        let message = try Self.parse(["\(name.canonical): a, b, c"])
        #expect(message.values(name) == ["a, b, c"])
    }

    @Test func commasInsideQuotesAndAnglesDoNotSplit() throws {
        let message = try Self.parse([
            #"Contact: "Doe, John" <sip:john@example.com;x=1,2>;q=0.5, <sip:jane@example.com>"#,
            #"Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>"#,
            #"Supported: path,, gruu ,"#,
        ])
        #expect(message.values(.contact) == [
            #""Doe, John" <sip:john@example.com;x=1,2>;q=0.5"#, "<sip:jane@example.com>",
        ])
        #expect(message.values(.route) == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
        #expect(message.supported == ["path", "gruu"])
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected addresses")
            return
        }
        #expect(contacts.map(\.displayName) == ["Doe, John", nil])
        #expect(contacts.first?.q == 0.5)
    }

    // MARK: - Via (RFC 3261 §20.42, RFC 3581, RFC 5118)

    @Test func viaFields() throws {
        let message = try Self.parse([
            "Via: SIP/2.0/udp pc33.atlanta.example.com:5066;rport;branch=z9hG4bK776asdhds;received=192.0.2.1",
            "v: SIP / 2.0 / TCP proxy.example.com ; branch=z9hG4bKnashds8 ; rport=5061 ; maddr=224.2.0.1",
            "Via: SIP/2.0/TLS [2001:db8::9:1]:5070;branch=z9hG4bKas;received=[2001:db8::9:255]",
            "Via: SIP/2.0/WSS [2001:db8::1];branch=z9hG4bK;received=2001:db8::2",
        ])
        let vias = try message.vias()
        #expect(vias.count == 4)
        let top = try #require(try message.topVia())
        #expect(top == vias[0])
        #expect(top.protocolName == "SIP" && top.protocolVersion == "2.0")
        #expect(top.transport == "UDP")
        #expect(top.host == "pc33.atlanta.example.com" && top.port == 5066)
        #expect(top.sentBy == "pc33.atlanta.example.com:5066")
        #expect(top.branch == "z9hG4bK776asdhds" && top.hasMagicCookie)
        #expect(top.received == "192.0.2.1")
        // rport flag: present without a value.
        guard case .some(.none) = top.rport else {
            Issue.record("rport flag expected, got \(String(describing: top.rport))")
            return
        }
        let second = vias[1]
        #expect(second.transport == "TCP" && second.host == "proxy.example.com" && second.port == nil)
        #expect(second.branch == "z9hG4bKnashds8")
        #expect(second.rport == .some(5061))
        #expect(second.maddr == "224.2.0.1")
        #expect(second.received == nil)
        let v6 = vias[2]
        #expect(v6.host == "[2001:db8::9:1]" && v6.port == 5070)
        #expect(v6.sentBy == "[2001:db8::9:1]:5070")
        #expect(v6.received == "[2001:db8::9:255]")
        guard case .none = v6.rport else {
            Issue.record("no rport expected")
            return
        }
        // A bare magic cookie is not an RFC 3261 branch (RFC 4475 §3.2.1).
        #expect(vias[3].branch == "z9hG4bK" && !vias[3].hasMagicCookie)
        #expect(vias[3].received == "2001:db8::2")
        #expect(vias[3].port == nil)
    }

    @Test func viaRendersCanonically() throws {
        let via = SIPVia(transport: "UDP", host: "192.0.2.1", port: 5060, branch: "z9hG4bKabc")
        #expect(via.description == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc")
        let reparsed = try #require(try SIPVia.parseList(via.description).first)
        #expect(reparsed == via)
    }

    // MARK: - From, To, Call-ID, CSeq, Max-Forwards

    @Test func dialogIdentifiers() throws {
        let message = try Self.parse([
            #"f: "Alice \"A\" Liddell" <sip:alice@atlanta.example.com>;tag=1928301774"#,
            "t: sip:bob@biloxi.example.com;tag=a6c85cf",
            "i: a84b4c76e66710@pc33.atlanta.example.com",
            "CSeq:   314159    INVITE  ",
            "Max-Forwards: 0068",
        ])
        let from = try #require(try message.from())
        #expect(from.displayName == #"Alice "A" Liddell"#)
        #expect(from.uri.user == "alice" && from.uri.host == "atlanta.example.com")
        #expect(from.tag == "1928301774")
        let to = try #require(try message.to())
        #expect(to.displayName == nil && to.tag == "a6c85cf")
        #expect(to.uri.parameters.isEmpty)
        #expect(message.callID == "a84b4c76e66710@pc33.atlanta.example.com")
        #expect(try message.cseq() == SIPCSeq(314159, .invite))
        #expect(try message.cseq()?.description == "314159 INVITE")
        #expect(try message.maxForwards() == 68)
    }

    @Test func absentHeadersAreNil() throws {
        let message = try Self.parse([])
        #expect(try message.from() == nil)
        #expect(try message.to() == nil)
        #expect(message.callID == nil)
        #expect(try message.cseq() == nil)
        #expect(try message.maxForwards() == nil)
        #expect(try message.topVia() == nil)
        #expect(try message.vias().isEmpty)
        #expect(try message.contacts() == nil)
        #expect(try message.routes().isEmpty)
        #expect(try message.expires() == nil)
        #expect(try message.contentType() == nil)
        #expect(try message.event() == nil)
        #expect(try message.subscriptionState() == nil)
        #expect(try message.credentials().isEmpty)
        #expect(try message.challenges().isEmpty)
        #expect(message.sipETag == nil && message.sipIfMatch == nil)
        #expect(message.supported.isEmpty && message.privacy.isEmpty)
    }

    @Test(arguments: [("0", 0), ("70", 70), ("255", 255), ("000", 0), ("0255", 255)])
    func maxForwardsRange(_ text: String, _ expected: Int) throws {
        #expect(try Self.parse(["Max-Forwards: \(text)"]).maxForwards() == expected)
    }

    // MARK: - Contact (RFC 3261 §20.10, RFC 5626, RFC 5627)

    @Test func contactWildcard() throws {
        let message = try Self.parse(["Contact:  * ", "Expires: 0"])
        #expect(try message.contacts() == .wildcard)
        #expect(try message.expires() == 0)
    }

    @Test func contactParameters() throws {
        let message = try Self.parse([
            "m: <sip:alice@192.0.2.4:5060;transport=tcp;ob>;q=0.7;expires=3600"
                + #";+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1"#
                + #";pub-gruu="sip:alice@example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6""#
                + #";temp-gruu="sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr""#,
            "Contact: \"Bob\" <sips:bob@[2001:db8::1]>;q=1, sip:carol@chicago.example.com;expires=60",
        ])
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected addresses")
            return
        }
        #expect(contacts.count == 3)
        let alice = contacts[0]
        #expect(alice.uri.host == "192.0.2.4" && alice.uri.port == 5060)
        #expect(alice.uri.transportParameter == "tcp")
        #expect(alice.uri.parameters.contains("ob"))
        #expect(alice.q == 0.7)
        #expect(alice.expires == 3600)
        #expect(alice.instanceID == "urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        #expect(alice.regID == 1)
        #expect(alice.publicGRUU == "sip:alice@example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        #expect(alice.temporaryGRUU == "sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr")
        #expect(contacts[1].displayName == "Bob" && contacts[1].uri.scheme == .sips)
        #expect(contacts[1].uri.host == "[2001:db8::1]" && contacts[1].q == 1)
        #expect(contacts[1].expires == nil && contacts[1].instanceID == nil && contacts[1].regID == nil)
        // addr-spec form: the parameters after it belong to the header, not the URI.
        #expect(contacts[2].uri.parameters.isEmpty)
        #expect(contacts[2].expires == 60)
    }

    /// RFC 3261 §20.10: Contact may mix addr-spec and name-addr in one comma-separated line.
    @Test func contactMixesAddrSpecAndNameAddr() throws {
        let message = try Self.parse([
            "Contact: sip:a@one.example.com;q=0.1, <sip:b@two.example.com>, \"C\" <sip:c@three.example.com>",
        ])
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected addresses")
            return
        }
        #expect(contacts.map(\.uri.user) == ["a", "b", "c"])
        #expect(contacts[0].q == 0.1)
    }

    @Test func contactQOutOfRangeIsNil() throws {
        let message = try Self.parse(["Contact: <sip:a@b.example.com>;q=1.5"])
        guard case .addresses(let contacts) = try message.contacts() else {
            Issue.record("expected addresses")
            return
        }
        #expect(contacts.first?.q == nil)
    }

    // MARK: - Route family

    @Test func routeRecordRoutePathServiceRoute() throws {
        let message = try Self.parse([
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Route: <sip:[2001:db8::7]:5070;lr;transport=tcp>",
            "Record-Route: <sip:rr.example.com;lr;ftag=abc>",
            "Path: <sip:pcscf.visited.example.net;lr>",
            "Service-Route: <sip:orig@scscf.home.example.net;lr>",
        ])
        let routes = try message.routes()
        #expect(routes.map(\.uri.host) == ["p1.example.com", "p2.example.com", "[2001:db8::7]"])
        #expect(routes.allSatisfy { $0.uri.parameters.contains("lr") })
        #expect(routes[2].uri.port == 5070 && routes[2].uri.transportParameter == "tcp")
        #expect(try message.recordRoutes().first?.uri.parameters["ftag"] == .some("abc"))
        #expect(try message.paths().map(\.uri.host) == ["pcscf.visited.example.net"])
        #expect(try message.serviceRoutes().first?.uri.user == "orig")
    }

    // MARK: - Scalars and content headers

    @Test func expiresAndContentHeaders() throws {
        let message = try Self.parse([
            "Expires: 4294967295",
            "Min-Expires: 60",
            "c: application/SDP ; charset=UTF-8",
            "e: GZIP, deflate",
            "Content-Disposition: Session;handling=optional",
            "Accept: application/sdp, application/pidf+xml;q=0.5, */*",
            "Accept-Encoding: gzip;q=1.0, Identity",
            "l: 4",
        ], body: "v=0\n")
        #expect(try message.expires() == UInt32.max)
        #expect(try message.minExpires() == 60)
        let type = try #require(try message.contentType())
        #expect(type.essence == "application/sdp")
        #expect(type.parameters.unquoted("charset") == "UTF-8")
        #expect(type.admits(.sdp))
        #expect(message.contentEncodings == ["gzip", "deflate"])
        let disposition = try #require(try message.contentDisposition())
        #expect(disposition.type == "session")
        #expect(disposition.parameters.unquoted("handling") == "optional")
        let accept = try message.accept()
        #expect(accept.map(\.essence) == ["application/sdp", "application/pidf+xml", "*/*"])
        #expect(accept[1].parameters.unquoted("q") == "0.5")
        #expect(accept[2].admits(.pidf))
        #expect(message.acceptEncodings == ["gzip", "identity"])
        #expect(message.firstValue(.contentLength) == "4")
        #expect(message.body.readableBytes == 4)
    }

    // MARK: - Events (RFC 6665) and publication (RFC 3903)

    @Test func eventHeaders() throws {
        let message = try Self.parse([
            "o: presence;id=42",
            "u: presence, dialog;sla, message-summary",
            "Subscription-State: Terminated;reason=timeout;retry-after=30;expires=0",
            "SIP-ETag: dx200xyz",
            "SIP-If-Match: kwj449x",
        ])
        let event = try #require(try message.event())
        #expect(event.package == "presence" && event.id == "42")
        #expect(event.description == "presence;id=42")
        let allowed = try message.allowEvents()
        #expect(allowed.map(\.package) == ["presence", "dialog", "message-summary"])
        #expect(allowed[1].parameters.contains("sla"))
        let state = try #require(try message.subscriptionState())
        #expect(state.state == "terminated")
        #expect(state.reason == "timeout" && state.retryAfter == 30 && state.expires == 0)
        #expect(message.sipETag == "dx200xyz")
        #expect(message.sipIfMatch == "kwj449x")
    }

    // MARK: - Option tags and Allow

    @Test func optionTags() throws {
        let message = try Self.parse([
            "k: path, gruu,outbound",
            "Supported: timer",
            "Require: 100rel",
            "Proxy-Require: sec-agree, foo",
            "Unsupported: bar",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
            "Allow: MESSAGE",
        ])
        #expect(message.supported == ["path", "gruu", "outbound", "timer"])
        #expect(message.optionTags(.supported) == message.supported)
        #expect(message.require == ["100rel"])
        #expect(message.proxyRequire == ["sec-agree", "foo"])
        #expect(message.unsupported == ["bar"])
        #expect(message.allow == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "MESSAGE"])
    }

    // MARK: - Authentication (RFC 3261 §22, RFC 7616)

    @Test func authorizationKeepsCommasInQuotedValues() throws {
        let message = try Self.parse([
            #"Authorization: Digest username="bob", realm="biloxi, the city", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093","#
                + #" uri="sip:bob@biloxi.example.com", qop=auth, nc=00000001, cnonce="0a4f113b","#
                + #" response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
            #"Authorization: Digest username="bob", realm="other.example.com", response="a\"b""#,
            #"Proxy-Authorization: Digest username="alice",realm="atlanta.example.com",nonce="x,y""#,
        ])
        #expect(message.values(.authorization).count == 2)
        let credentials = try message.credentials()
        #expect(credentials.count == 2)
        let first = credentials[0]
        #expect(first.scheme == "Digest")
        #expect(first["username"] == "bob")
        #expect(first["REALM"] == "biloxi, the city")
        #expect(first["uri"] == "sip:bob@biloxi.example.com")
        #expect(first["qop"] == "auth" && first["nc"] == "00000001")
        #expect(first.parameters.count == 9)
        #expect(credentials[1]["response"] == #"a"b"#)
        #expect(credentials[1].description == #"Digest username="bob", realm="other.example.com", response="a\"b""#)
        let proxy = try message.credentials(.proxyAuthorization)
        #expect(proxy.count == 1 && proxy[0]["nonce"] == "x,y")
    }

    /// Quoted values are read in place when they hold no escape, and resolved when they do; a quote
    /// that never closes, with or without an escape before the end, is a malformed header.
    @Test func quotedAuthValuesWithAndWithoutEscapes() throws {
        let escaped = try Self.parse([#"Authorization: Digest username="a\\b", realm="x\"y", nonce="""#])
        let values = try #require(try escaped.credentials().first)
        #expect(values["username"] == #"a\b"# && values["realm"] == #"x"y"# && values["nonce"] == "")
        for line in [#"Authorization: Digest username="bob"#, #"Authorization: Digest username="bob\"#,
                     #"Authorization: Digest username="b\"ob"#] {
            let message = try Self.parse([line])
            #expect(throws: SIPParseError.self) { try message.credentials() }
        }
    }

    @Test func challenges() throws {
        let message = try Self.parse([
            #"WWW-Authenticate: Digest realm="atlanta.example.com", domain="sip:ss1.example.com","#
                + #" qop="auth,auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5"#,
            #"Proxy-Authenticate: Digest realm="proxy.example.com", nonce="abc", algorithm=SHA-256"#,
        ])
        #expect(message.values(.wwwAuthenticate).count == 1)
        let challenge = try #require(try message.challenges().first)
        #expect(challenge["qop"] == "auth,auth-int")
        #expect(challenge["opaque"] == "")
        #expect(challenge["stale"] == "FALSE" && challenge["algorithm"] == "MD5")
        #expect(challenge["missing"] == nil)
        let proxy = try message.challenges(.proxyAuthenticate)
        #expect(proxy.first?["algorithm"] == "SHA-256")
    }

    // MARK: - Asserted identity (RFC 3325) and Privacy (RFC 3323)

    @Test func assertedIdentityAndPrivacy() throws {
        let message = try Self.parse([
            #"P-Asserted-Identity: "Cullen Jennings" <sip:fluffy@cisco.example.com>, <tel:+14085264000>"#,
            "Privacy: id; Header ;user",
        ])
        let identities = try message.pAssertedIdentities()
        #expect(identities.count == 2)
        #expect(identities[0].displayName == "Cullen Jennings")
        #expect(identities[1].uri.scheme == .tel && identities[1].uri.user == "+14085264000")
        #expect(message.privacy == ["id", "header", "user"])
    }

    // MARK: - Malformed values: a specific error, never nil

    enum Accessor: String, Sendable, CaseIterable {
        case vias, topVia, from, to, cseq, maxForwards, expires, minExpires, contacts, routes, recordRoutes
        case paths, serviceRoutes, contentType, contentDisposition, accept, event, allowEvents
        case subscriptionState, credentials, proxyCredentials, challenges, proxyChallenges, pAssertedIdentities
        case requestURI

        func run(_ message: SIPMessage) throws(SIPParseError) {
            switch self {
            case .vias: _ = try message.vias()
            case .topVia: _ = try message.topVia()
            case .from: _ = try message.from()
            case .to: _ = try message.to()
            case .cseq: _ = try message.cseq()
            case .maxForwards: _ = try message.maxForwards()
            case .expires: _ = try message.expires()
            case .minExpires: _ = try message.minExpires()
            case .contacts: _ = try message.contacts()
            case .routes: _ = try message.routes()
            case .recordRoutes: _ = try message.recordRoutes()
            case .paths: _ = try message.paths()
            case .serviceRoutes: _ = try message.serviceRoutes()
            case .contentType: _ = try message.contentType()
            case .contentDisposition: _ = try message.contentDisposition()
            case .accept: _ = try message.accept()
            case .event: _ = try message.event()
            case .allowEvents: _ = try message.allowEvents()
            case .subscriptionState: _ = try message.subscriptionState()
            case .credentials: _ = try message.credentials()
            case .proxyCredentials: _ = try message.credentials(.proxyAuthorization)
            case .challenges: _ = try message.challenges()
            case .proxyChallenges: _ = try message.challenges(.proxyAuthenticate)
            case .pAssertedIdentities: _ = try message.pAssertedIdentities()
            case .requestURI: _ = try message.requestURI()
            }
        }
    }

    struct Malformed: Sendable, CustomTestStringConvertible {
        var lines: [String]
        var accessor: Accessor
        var error: SIPParseError
        var testDescription: String { lines.joined(separator: " | ") }

        init(_ lines: String..., accessor: Accessor, _ error: SIPParseError) {
            self.lines = lines
            self.accessor = accessor
            self.error = error
        }
    }

    static let malformed: [Malformed] = [
        Malformed("Via: SIP/2.0 host", accessor: .vias, .malformedHeader(.via, "bad sent-protocol")),
        Malformed("Via: SIP/2.0/UDP", accessor: .topVia, .malformedHeader(.via, "missing sent-by host")),
        Malformed("Via: SIP/2.0/UDP host:99999", accessor: .vias, .malformedHeader(.via, "port out of range")),
        Malformed("Via: SIP/2.0/UDP host:", accessor: .vias, .malformedHeader(.via, "empty port")),
        Malformed("Via: SIP/2.0/UDP host;branch", accessor: .vias, .malformedHeader(.via, "branch without value")),
        Malformed("Via: SIP/2.0/UDP host;received=nowhere", accessor: .vias,
                  .malformedHeader(.via, "received is not an IP address")),
        Malformed("Via: SIP/2.0/UDP [::1;branch=z9hG4bK1", accessor: .vias,
                  .malformedHeader(.via, "bad IPv6 reference in sent-by")),
        Malformed("Via: SIP/2.0/UDP [::g]", accessor: .vias, .malformedHeader(.via, "bad IPv6 reference in sent-by")),
        Malformed("Via: SIP/2.0/UDP host;;branch=z9hG4bK1", accessor: .vias,
                  .malformedHeader(.via, "parameter without a name")),
        Malformed("Via: SIP/2.0/UDP host;branch=\"z9hG4bK1", accessor: .vias,
                  .malformedHeader(.via, "unterminated quoted string")),
        Malformed("Via: SIP/2.0/UDP host;branch=", accessor: .vias,
                  .malformedHeader(.via, "empty value for parameter branch")),
        Malformed("Via: SIP/2.0/UDP host junk", accessor: .vias, .malformedHeader(.via, "unexpected text: junk")),
        Malformed("Via: SIP/2.0/UDP ok;branch=z9hG4bK1", "Via: SIP/2.0/UDP", accessor: .vias,
                  .malformedHeader(.via, "missing sent-by host")),
        Malformed("From: <sip:alice@atlanta.example.com", accessor: .from, .malformedHeader(.from, "missing >")),
        Malformed("From: \"Alice <sip:alice@atlanta.example.com>", accessor: .from,
                  .malformedHeader(.from, "unterminated quoted display name")),
        Malformed("From: \"Alice\" sip:alice@atlanta.example.com", accessor: .from,
                  .malformedHeader(.from, "display name without <URI>")),
        Malformed("From: Alice, Smith <sip:alice@atlanta.example.com>", accessor: .from,
                  .malformedHeader(.from, "display name is neither a token nor quoted")),
        Malformed("From: <sip:a@b.example.com>;tag=", accessor: .from,
                  .malformedHeader(.from, "empty value for parameter tag")),
        Malformed("To: bob", accessor: .to, .malformedHeader(.to, "no scheme")),
        Malformed("To: <sip:bob@biloxi.example.com> junk", accessor: .to,
                  .malformedHeader(.to, "unexpected text after address: junk")),
        Malformed("To: sip:bob@biloxi.example.com?subject=x", accessor: .to,
                  .malformedHeader(.to, "URI with headers must be in <>")),
        Malformed("To: <sip:bob@:5060>", accessor: .to, .malformedHeader(.to, "empty host")),
        Malformed("CSeq: INVITE", accessor: .cseq, .malformedHeader(.cseq, "missing sequence number")),
        Malformed("CSeq: 1", accessor: .cseq, .malformedHeader(.cseq, "missing method")),
        Malformed("CSeq: 1INVITE", accessor: .cseq, .malformedHeader(.cseq, "missing method")),
        Malformed("CSeq: 4294967296 INVITE", accessor: .cseq, .malformedHeader(.cseq, "sequence number out of range")),
        Malformed("CSeq: 1 INVITE extra", accessor: .cseq, .malformedHeader(.cseq, "unexpected text after method")),
        Malformed("Max-Forwards: 256", accessor: .maxForwards,
                  .malformedHeader(.maxForwards, "not a number from 0 to 255")),
        Malformed("Max-Forwards: -1", accessor: .maxForwards,
                  .malformedHeader(.maxForwards, "not a number from 0 to 255")),
        Malformed("Max-Forwards: seventy", accessor: .maxForwards,
                  .malformedHeader(.maxForwards, "not a number from 0 to 255")),
        Malformed("Max-Forwards:", accessor: .maxForwards,
                  .malformedHeader(.maxForwards, "not a number from 0 to 255")),
        Malformed("Max-Forwards: 99999999999999999999999", accessor: .maxForwards,
                  .malformedHeader(.maxForwards, "not a number from 0 to 255")),
        Malformed("Expires: soon", accessor: .expires, .malformedHeader(.expires, "not a number of seconds")),
        Malformed("Expires: 4294967296", accessor: .expires,
                  .malformedHeader(.expires, "number of seconds out of range")),
        Malformed("Min-Expires: -5", accessor: .minExpires, .malformedHeader(.minExpires, "not a number of seconds")),
        Malformed("Contact: *", "Contact: <sip:a@b.example.com>", accessor: .contacts,
                  .malformedHeader(.contact, "* mixed with other contacts")),
        Malformed("Contact: <sip:a@b.example.com>;expires=", accessor: .contacts,
                  .malformedHeader(.contact, "empty value for parameter expires")),
        Malformed("Contact: <sip:a@b.example.com>, ", accessor: .contacts, .malformedHeader(.contact, "empty address")),
        Malformed("Route: <sip:p1.example.com;lr", accessor: .routes, .malformedHeader(.route, "missing >")),
        Malformed("Record-Route: <sip:p1.example.com;lr> <sip:p2>", accessor: .recordRoutes,
                  .malformedHeader(.recordRoute, "unexpected text in address list: <sip:p2>")),
        Malformed("Path: <foo>", accessor: .paths, .malformedHeader(.path, "no scheme")),
        Malformed("Service-Route: <sip:[::1>", accessor: .serviceRoutes,
                  .malformedHeader(.serviceRoute, "unterminated IPv6 reference")),
        Malformed("Content-Type: text", accessor: .contentType, .malformedHeader(.contentType, "bad media type")),
        Malformed("Content-Type: text/plain garbage", accessor: .contentType,
                  .malformedHeader(.contentType, "unexpected text after media type")),
        Malformed("Content-Disposition: ;handling=optional", accessor: .contentDisposition,
                  .malformedHeader(.contentDisposition, "missing disposition type")),
        Malformed("Content-Disposition: session junk", accessor: .contentDisposition,
                  .malformedHeader(.contentDisposition, "unexpected text after disposition")),
        Malformed("Accept: application/sdp, foo", accessor: .accept, .malformedHeader(.accept, "bad media type")),
        Malformed("Event:", accessor: .event, .malformedHeader(.event, "missing event package")),
        Malformed("Event: presence junk", accessor: .event, .malformedHeader(.event, "unexpected text after event")),
        Malformed("Event: presence;id=", accessor: .event, .malformedHeader(.event, "empty value for parameter id")),
        Malformed("Allow-Events: presence, ;x", accessor: .allowEvents,
                  .malformedHeader(.allowEvents, "missing event package")),
        Malformed("Subscription-State: ;expires=5", accessor: .subscriptionState,
                  .malformedHeader(.subscriptionState, "missing substate")),
        Malformed("Subscription-State: active;expires=", accessor: .subscriptionState,
                  .malformedHeader(.subscriptionState, "empty value for parameter expires")),
        Malformed("Subscription-State: active pending", accessor: .subscriptionState,
                  .malformedHeader(.subscriptionState, "unexpected text after substate")),
        Malformed("Authorization:", accessor: .credentials, .malformedHeader(.authorization, "missing auth scheme")),
        Malformed("Authorization: Digest username", accessor: .credentials,
                  .malformedHeader(.authorization, "auth parameter username without value")),
        Malformed("Authorization: Digest realm=\"x", accessor: .credentials,
                  .malformedHeader(.authorization, "unterminated quoted string")),
        Malformed("Authorization: Digest a=b c=d", accessor: .credentials,
                  .malformedHeader(.authorization, "unexpected text in credentials")),
        Malformed("Proxy-Authorization: Digest ,", accessor: .proxyCredentials,
                  .malformedHeader(.proxyAuthorization, "bad auth parameter")),
        Malformed("WWW-Authenticate: Digest realm=", accessor: .challenges,
                  .malformedHeader(.wwwAuthenticate, "bad value for realm")),
        Malformed("Proxy-Authenticate: Digest realm=\"a\",", accessor: .proxyChallenges,
                  .malformedHeader(.proxyAuthenticate, "bad auth parameter")),
        Malformed("P-Asserted-Identity: <sip:a@b.example.com", accessor: .pAssertedIdentities,
                  .malformedHeader(.pAssertedIdentity, "missing >")),
    ]

    @Test(arguments: malformed)
    func malformedValueGivesSpecificError(_ c: Malformed) throws {
        let message = try Self.parse(c.lines)
        #expect(throws: c.error) { try c.accessor.run(message) }
    }

    @Test(arguments: [
        ("sip:", "empty host"), ("sip:bob@", "empty host"), ("bob", "no scheme"), ("sip:host:99999", "port out of range"),
    ])
    func malformedRequestURI(_ uri: String, _ reason: String) throws {
        let message = try SIPMessageParser().parse("OPTIONS \(uri) SIP/2.0\r\n\r\n")
        #expect(throws: SIPParseError.malformedRequestURI(reason)) { try message.requestURI() }
    }

    @Test func everyAccessorPassesOnAWellFormedMessage() throws {
        let message = try Self.parse(Self.basics + [
            "Contact: <sip:alice@pc33.atlanta.example.com>", "Expires: 60", "Min-Expires: 30",
            "Route: <sip:p1.example.com;lr>", "Record-Route: <sip:p1.example.com;lr>",
            "Path: <sip:p1.example.com;lr>", "Service-Route: <sip:p1.example.com;lr>",
            "Content-Type: text/plain", "Content-Disposition: render", "Accept: text/plain",
            "Event: presence", "Allow-Events: presence", "Subscription-State: active",
            #"Authorization: Digest username="a""#, #"Proxy-Authorization: Digest username="a""#,
            #"WWW-Authenticate: Digest realm="a""#, #"Proxy-Authenticate: Digest realm="a""#,
            "P-Asserted-Identity: <sip:alice@atlanta.example.com>",
        ])
        for accessor in Accessor.allCases {
            #expect(throws: Never.self, "\(accessor)") { try accessor.run(message) }
        }
        try message.validateRequest()
    }

    // MARK: - Start line

    @Test func startLines() throws {
        let request = try SIPMessageParser().parse("\r\n\r\nREGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n\r\n")
        #expect(request.isRequest && request.method == .register)
        #expect(request.requestURIString == "sips:ss2.biloxi.example.com")
        #expect(request.version == "SIP/2.0")
        #expect(request.statusCode == nil && request.reasonPhrase == nil)
        let response = try SIPMessageParser().parse("SIP/2.0 180 Ringing Now\r\n\r\n")
        #expect(!response.isRequest && response.method == nil)
        #expect(response.statusCode == 180 && response.reasonPhrase == "Ringing Now")
        #expect(response.requestURIString == nil)
        #expect(throws: SIPParseError.malformedStartLine("not a request")) { try response.requestURI() }
    }

    @Test(arguments: [
        ("", SIPParseError.emptyMessage),
        ("\r\n\r\n", .emptyMessage),
        ("INVITE\r\n\r\n", .malformedStartLine("no Request-URI")),
        ("INVITE sip:a@b\r\n\r\n", .malformedStartLine("no SIP-Version")),
        ("INVITE sip:a@b SIP/3.0\r\n\r\n", .unsupportedVersion("SIP/3.0")),
        ("INVITE sip:a@b HTTP/1.1\r\n\r\n", .malformedStartLine("bad SIP-Version")),
        ("INV@TE sip:a@b SIP/2.0\r\n\r\n", .malformedStartLine("method is not a token")),
        ("INVITE\tsip:a@b SIP/2.0\r\n\r\n", .malformedStartLine("tab in Request-Line")),
        ("SIP/2.0 99 Low\r\n\r\n", .invalidStatusCode),
        ("SIP/2.0 700 High\r\n\r\n", .invalidStatusCode),
        ("SIP/2.0 2000 OK\r\n\r\n", .invalidStatusCode),
        ("SIP/2.0 200OK\r\n\r\n", .invalidStatusCode),
        ("SIP/2.0\r\n\r\n", .invalidStatusCode),
    ])
    func startLineErrors(_ text: String, _ error: SIPParseError) {
        #expect(throws: error) { try SIPMessageParser().parse(text) }
    }

    // MARK: - Content-Length and body

    @Test func contentLengthFramesTheBody() throws {
        // Datagram: trailing bytes after Content-Length are dropped.
        let message = try SIPMessageParser().parse(Self.request(["l: 5"], body: "helloEXTRA"))
        #expect(String(buffer: message.body) == "hello")
        #expect(!message.serializedString.contains("EXTRA"))
        // Datagram without Content-Length: the rest of the datagram.
        let rest = try SIPMessageParser().parse(Self.request([], body: "whole rest"))
        #expect(String(buffer: rest.body) == "whole rest")
        // No empty line at all: no body.
        let headOnly = try SIPMessageParser().parse("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x")
        #expect(headOnly.callID == "x" && headOnly.body.readableBytes == 0)
        // Bare LF line ends are accepted.
        let lf = try SIPMessageParser().parse("OPTIONS sip:a@b SIP/2.0\nCall-ID: y\nl: 2\n\nhi")
        #expect(lf.callID == "y" && String(buffer: lf.body) == "hi")
    }

    @Test(arguments: [
        (["Content-Length: abc"], "", SIPParseError.invalidContentLength),
        (["Content-Length: -1"], "", .invalidContentLength),
        (["Content-Length:"], "", .invalidContentLength),
        (["Content-Length: 1234567890"], "", .invalidContentLength),
        (["Content-Length: 1 2"], "", .invalidContentLength),
        (["Content-Length: 0", "l: 0"], "", .multipleContentLength),
        (["Content-Length: 10"], "short", .bodyShorterThanContentLength(announced: 10, received: 5)),
        (["l: 999999999"], "", .bodyShorterThanContentLength(announced: 999_999_999, received: 0)),
    ])
    func contentLengthErrors(_ headers: [String], _ body: String, _ error: SIPParseError) {
        #expect(throws: error) { try SIPMessageParser().parse(Self.request(headers, body: body)) }
    }

    // MARK: - Limits

    @Test func messageSizeLimit() throws {
        let limit = SIPMessageParser.Limits().maxMessageSize
        #expect(limit == 65_535)
        let head = Self.request(["Subject: x"])
        let padding = String(repeating: "a", count: limit - head.utf8.count)
        let exact = Self.request(["Subject: x"], body: padding)
        #expect(exact.utf8.count == limit)
        #expect(try SIPMessageParser().parse(exact).body.readableBytes == padding.utf8.count)
        let over = exact + "a"
        #expect(throws: SIPParseError.messageTooLarge(limit: limit)) { try SIPMessageParser().parse(over) }
        let small = SIPMessageParser(limits: .init(maxMessageSize: 40))
        #expect(throws: SIPParseError.messageTooLarge(limit: 40)) { try small.parse(head) }
        // A 60 KB header value fits the default limit.
        let big = try SIPMessageParser().parse(Self.request(["Subject: " + String(repeating: "z", count: 60_000)]))
        #expect(big.firstValue(.subject)?.utf8.count == 60_000)
    }

    @Test func headerLineLimit() throws {
        let limit = SIPMessageParser.Limits().maxHeaderLines
        #expect(limit == 256)
        let lines = (0..<limit).map { "X-H\($0): \($0)" }
        let atLimit = try SIPMessageParser().parse(Self.request(lines))
        #expect(atLimit.headers.count == limit)
        #expect(throws: SIPParseError.messageTooLarge(limit: limit)) {
            try SIPMessageParser().parse(Self.request(lines + ["X-One-Too-Many: 1"]))
        }
        let custom = SIPMessageParser(limits: .init(maxHeaderLines: 3))
        #expect(throws: SIPParseError.messageTooLarge(limit: 3)) {
            try custom.parse(Self.request(["A: 1", "B: 2", "C: 3", "D: 4"]))
        }
        // 300 lines with a larger limit.
        let roomy = SIPMessageParser(limits: .init(maxHeaderLines: 300))
        #expect(try roomy.parse(Self.request((0..<300).map { "X-\($0): v" })).headers.count == 300)
    }

    // MARK: - Salvage

    @Test func salvageReadsWhatItCan() throws {
        let bytes = ByteBuffer(string: "INVITE sip:a@b  SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            + "CSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\n")
        #expect(throws: SIPParseError.self) { try SIPMessageParser().parse(bytes) }
        let salvaged = try #require(SIPMessageParser().salvage(bytes))
        #expect(salvaged.method == .invite)
        #expect(try salvaged.topVia()?.branch == "z9hG4bK1")
        #expect(salvaged.canBeAnswered)
        #expect(SIPMessageParser().salvage(ByteBuffer(string: "SIP/2.0 200 OK\r\n\r\n")) == nil)
    }
}
