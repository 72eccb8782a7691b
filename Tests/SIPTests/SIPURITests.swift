import Testing
@testable import SIP

/// ``SIPURI`` parsing, rendering and RFC 3261 §19.1.4 comparison; ``SIPAddress`` name-addr vs addr-spec.
@Suite struct SIPURITests {
    // MARK: - Parsing

    @Test func fullSIPURI() throws {
        let uri = try SIPURI(parsing: "sips:alice:secret@atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1"
            + "?subject=project%20x&priority=urgent")
        #expect(uri.scheme == .sips)
        #expect(uri.user == "alice" && uri.password == "secret")
        #expect(uri.host == "atlanta.example.com" && uri.port == 5061)
        #expect(uri.parameters.count == 3)
        #expect(uri.parameters["transport"] == .some("TCP"))
        #expect(uri.transportParameter == "tcp")
        #expect(uri.parameters.contains("LR"))
        #expect(uri.parameters["lr"] == .some(nil))
        #expect(uri.parameters["maddr"] == .some("239.255.255.1"))
        #expect(uri.parameters["missing"] == nil)
        #expect(uri.headers.map(\.name) == ["subject", "priority"])
        #expect(uri.headers.map(\.value) == ["project%20x", "urgent"])
    }

    struct Parsed: Sendable, CustomTestStringConvertible {
        var text: String
        var scheme: SIPURI.Scheme
        var user: String?
        var password: String?
        var host: String
        var port: Int?
        var parameterCount = 0
        var headerCount = 0
        var testDescription: String { text }
    }

    static let parsed: [Parsed] = [
        Parsed(text: "sip:alice@atlanta.example.com", scheme: .sip, user: "alice", host: "atlanta.example.com"),
        Parsed(text: "SIP:Alice@AtLanta.Example.COM", scheme: .sip, user: "Alice", host: "AtLanta.Example.COM"),
        Parsed(text: "sip:192.0.2.4", scheme: .sip, host: "192.0.2.4"),
        Parsed(text: "sip:192.0.2.4:5060", scheme: .sip, host: "192.0.2.4", port: 5060),
        Parsed(text: "sip:+1-212-555-1212:1234@gateway.example.com;user=phone", scheme: .sip,
               user: "+1-212-555-1212", password: "1234", host: "gateway.example.com", parameterCount: 1),
        Parsed(text: "sip:alice;day=tuesday@atlanta.example.com", scheme: .sip, user: "alice;day=tuesday",
               host: "atlanta.example.com"),
        Parsed(text: "sip:user?x@host.example.com", scheme: .sip, user: "user?x", host: "host.example.com"),
        Parsed(text: "sip:[2001:db8::10]", scheme: .sip, host: "[2001:db8::10]"),
        Parsed(text: "sip:[2001:db8::10]:5070", scheme: .sip, host: "[2001:db8::10]", port: 5070),
        Parsed(text: "sip:[2001:db8::10:5070]", scheme: .sip, host: "[2001:db8::10:5070]"),
        Parsed(text: "sips:bob@[::ffff:192.0.2.10]:5061;transport=tls", scheme: .sips, user: "bob",
               host: "[::ffff:192.0.2.10]", port: 5061, parameterCount: 1),
        Parsed(text: "sip:host.example.com:0", scheme: .sip, host: "host.example.com", port: 0),
        Parsed(text: "sip:host.example.com:65535", scheme: .sip, host: "host.example.com", port: 65_535),
        Parsed(text: "sip:a@b.example.com;x;y=1;z?h1=v1&h2=v2", scheme: .sip, user: "a", host: "b.example.com",
               parameterCount: 3, headerCount: 2),
        Parsed(text: "sip:sips%3Auser%40example.com@example.net", scheme: .sip, user: "sips%3Auser%40example.com",
               host: "example.net"),
        Parsed(text: "sip:my_host-1.example.com", scheme: .sip, host: "my_host-1.example.com"),
    ]

    @Test(arguments: parsed)
    func parsesComponents(_ c: Parsed) throws {
        let uri = try SIPURI(parsing: c.text)
        #expect(uri.scheme == c.scheme)
        #expect(uri.user == c.user)
        #expect(uri.password == c.password)
        #expect(uri.host == c.host)
        #expect(uri.port == c.port)
        #expect(uri.parameters.count == c.parameterCount)
        #expect(uri.headers.count == c.headerCount)
        #expect(uri.opaque == nil)
    }

    @Test func ipv6HostWithoutBrackets() throws {
        let uri = try SIPURI(parsing: "sip:[2001:db8::10]:5070")
        #expect(uri.hostWithoutBrackets == "2001:db8::10")
        #expect(try SIPURI(parsing: "sip:example.com").hostWithoutBrackets == "example.com")
    }

    @Test func telURIs() throws {
        let global = try SIPURI(parsing: "tel:+1-201-555-0123")
        #expect(global.scheme == .tel && global.user == "+1-201-555-0123" && global.host == "")
        let local = try SIPURI(parsing: "TEL:7042;phone-context=example.com;ext=22")
        #expect(local.scheme == .tel && local.user == "7042")
        #expect(local.parameters["phone-context"] == .some("example.com"))
        #expect(local.parameters["ext"] == .some("22"))
        #expect(local.description == "tel:7042;phone-context=example.com;ext=22")
        #expect(try SIPURI(parsing: "tel:+1-201-555-0123").isEquivalent(to: SIPURI(parsing: "tel:+12015550123")))
        #expect(try !SIPURI(parsing: "tel:+12015550123").isEquivalent(to: SIPURI(parsing: "tel:+12015550124")))
        #expect(try !SIPURI(parsing: "tel:7042;phone-context=a.example.com")
            .isEquivalent(to: SIPURI(parsing: "tel:7042;phone-context=b.example.com")))
        #expect(try !SIPURI(parsing: "tel:7042").isEquivalent(to: SIPURI(parsing: "sip:7042@example.com")))
    }

    @Test(arguments: [
        ("mailto:bob@example.com", "mailto", "bob@example.com"),
        ("urn:service:sos", "urn", "service:sos"),
        ("HTTP://www.example.com/a?b=c", "http", "//www.example.com/a?b=c"),
        ("im:alice@example.com", "im", "alice@example.com"),
        ("nobodyknowsthisscheme:totallyopaquecontent", "nobodyknowsthisscheme", "totallyopaquecontent"),
    ])
    func otherSchemesAreOpaque(_ text: String, _ scheme: String, _ opaque: String) throws {
        let uri = try SIPURI(parsing: text)
        #expect(uri.scheme == .other(scheme))
        #expect(uri.scheme.description == scheme)
        #expect(uri.opaque == opaque)
        #expect(uri.description == scheme + ":" + opaque)
        #expect(uri.isEquivalent(to: try SIPURI(parsing: uri.description)))
    }

    @Test func escaping() throws {
        let uri = try SIPURI(parsing: "sip:sips%3Auser%40example.com@example.net")
        #expect(uri.unescapedUser == "sips:user@example.com")
        #expect(uri.description == "sip:sips%3Auser%40example.com@example.net")
        #expect(try SIPURI(parsing: "sip:%61lice@atlanta.example.com").unescapedUser == "alice")
        #expect(try SIPURI(parsing: "sip:I%20have%20spaces@example.net").unescapedUser == "I have spaces")
        #expect(try SIPURI(parsing: "sip:null-%00-null@example.net").unescapedUser?.utf8.count == 11)
        #expect(percentDecoded("100%") == "100%")
        #expect(percentDecoded("%zz%4") == "%zz%4")
        #expect(percentDecoded("%41%62") == "Ab")
    }

    @Test(arguments: [
        ("alice@atlanta.example.com", "no scheme"),
        (":alice@atlanta.example.com", "no scheme"),
        ("1sip:alice@atlanta.example.com", "bad scheme"),
        ("s_p:alice", "bad scheme"),
        ("sip:", "empty host"),
        ("sip:alice@", "empty host"),
        ("sip:@atlanta.example.com", "empty user part"),
        ("sip:a%4@host.example.com", "bad %-escape in user part"),
        ("sip:a%zz@host.example.com", "bad %-escape in user part"),
        ("sip:host.example.com:99999", "port out of range"),
        ("sip:host.example.com:", "empty port"),
        ("sip:host.example.com:abc", "empty port"),
        ("sip:[2001:db8::10", "unterminated IPv6 reference"),
        ("sip:[2001:db8::g]", "bad IPv6 reference"),
        ("sip:[1:2:3:4:5:6:7:8:9]", "bad IPv6 reference"),
        ("sip:[]", "bad IPv6 reference"),
        ("sip:[2001:db8::10]5070", "unexpected character after host"),
        ("sip:host.example.com;;x", "empty URI parameter"),
        ("sip:host.example.com;", "empty URI parameter"),
        ("sip:host.example.com?novalue", "URI header without value"),
        ("sip:host.example.com/path", "unexpected character after host"),
        ("sip:alice smith@host.example.com", "character not allowed in a URI"),
        ("sip:<alice>@host.example.com", "character not allowed in a URI"),
        ("sip:alice@host\u{7F}", "character not allowed in a URI"),
        ("sip:alice@hôst.example.com", "character not allowed in a URI"),
        ("tel:", "empty telephone number"),
        ("tel:555 1212", "character not allowed in a URI"),
        ("tel:555!1212", "bad telephone number"),
        ("mailto:", "empty URI"),
    ])
    func malformed(_ text: String, _ reason: String) {
        #expect(throws: ValueError(reason)) { try SIPURI(parsing: text) }
    }

    // MARK: - Rendering

    @Test(arguments: [
        "sip:alice@atlanta.example.com",
        "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent",
        "sip:[2001:db8::10]:5070;maddr=[2001:db8::1]",
        "sip:sips%3Auser%40example.com@example.net",
        "sip:+1-212-555-1212:1234@gateway.example.com;user=phone",
        "tel:+1-201-555-0123;phone-context=example.com",
        "urn:service:sos",
        "sip:host.example.com;x;y=1",
        "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr",
        "sip:user00017@127.0.0.1:40123;transport=UDP",
        "sip:127.0.0.1",
        "sips:[::1]:5061;ob",
        "sip:%C3%A9l%C3%A8ve@example.com;Rinstance=ab12",
    ])
    func renderingRoundTrips(_ text: String) throws {
        let uri = try SIPURI(parsing: text)
        #expect(uri.description == text)
        let again = try SIPURI(parsing: uri.description)
        #expect(again == uri)
        #expect(again.isEquivalent(to: uri))
    }

    @Test func builtURIsRender() {
        var parameters = SIPParameters()
        parameters.append("transport", "tcp")
        parameters.append("lr", nil)
        let uri = SIPURI(scheme: .sips, user: "bob", host: "biloxi.example.com", port: 5061, parameters: parameters)
        #expect(uri.description == "sips:bob@biloxi.example.com:5061;transport=tcp;lr")
        var edited = uri
        edited.parameters.set("transport", "udp")
        edited.parameters.remove("lr")
        edited.port = nil
        #expect(edited.description == "sips:bob@biloxi.example.com;transport=udp")
        #expect(SIPURI(host: "[::1]").description == "sip:[::1]")
    }

    // MARK: - RFC 3261 §19.1.4 comparison

    /// The RFC's own lists of equivalent and non-equivalent pairs, then the RFC 5118 §4.3 IPv6 forms.
    static let comparisons: [(String, String, Bool)] = [
        // "The URIs within each of the following sets are equivalent"
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanta.CoM;Transport=tcp", true),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", true),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on", true),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on", true),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", true),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x", true),
        // "The URIs within each of the following sets are not equivalent"
        ("SIP:ALICE@AtLanta.CoM;Transport=udp", "sip:alice@AtLanta.CoM;Transport=UDP", false),  // different usernames
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", false),  // can resolve to different ports
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", false),  // can resolve to different transports
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp", false),  // different port and transport
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting", false),  // different header
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4", false),  // even if that is what it resolves to
        // "Note that equality is not transitive"
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=off", true),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", false),
        // The other rules of §19.1.4
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com", false),
        ("sip:alice@atlanta.com", "sip:atlanta.com", false),
        ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com", false),
        ("sip:alice:pw@atlanta.com", "sip:alice:PW@atlanta.com", false),
        ("sip:alice@atlanta.com", "sip:alice@atlanta.com;user=phone", false),
        ("sip:alice@atlanta.com", "sip:alice@atlanta.com;ttl=1", false),
        ("sip:alice@atlanta.com", "sip:alice@atlanta.com;method=INVITE", false),
        ("sip:alice@atlanta.com", "sip:alice@atlanta.com;maddr=239.255.255.1", false),
        ("sip:alice@atlanta.com;maddr=239.255.255.1", "sip:alice@atlanta.com;MADDR=239.255.255.1", true),
        ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com;lr", true),
        ("sip:alice@atlanta.com;foo=bar", "sip:alice@atlanta.com;foo=baz", false),
        ("sip:alice@atlanta.com?a=b", "sip:alice@atlanta.com?a=b&c=d", false),
        // RFC 5118 §4.3: IPv6 references compare as addresses.
        ("sip:[::1]", "sip:[0:0:0:0:0:0:0:1]", true),
        ("sip:alice@[2001:db8::10]:5070", "sip:alice@[2001:DB8:0:0:0:0:0:10]:5070", true),
        ("sip:[2001:db8::9:1]", "sip:[2001:db8::9:01]", true),
        ("sip:[::ffff:192.0.2.10]", "sip:[::ffff:c000:20a]", true),
        ("sip:[2001:db8:::192.0.2.1]", "sip:[2001:db8::192.0.2.1]", true),
        ("sip:[::1]", "sip:[::2]", false),
        ("sip:[::1]", "sip:[::1]:5060", false),
        ("sip:[2001:db8::10]", "sip:2001.db8.example.com", false),
    ]

    @Test(arguments: comparisons)
    func equivalence(_ a: String, _ b: String, _ equivalent: Bool) throws {
        let x = try SIPURI(parsing: a)
        let y = try SIPURI(parsing: b)
        #expect(x.isEquivalent(to: y) == equivalent)
        #expect(y.isEquivalent(to: x) == equivalent, "comparison must be symmetric")
        #expect(x.isEquivalent(to: x) && y.isEquivalent(to: y))
    }

    /// RFC 3261 §19.1.1 forbids a repeated parameter name, but a peer may send one: comparison stays
    /// reflexive and symmetric (the first occurrence counts).
    @Test func repeatedParameterStillComparesReflexively() throws {
        let uri = try SIPURI(parsing: "sip:carol@chicago.com;name=v;name=value")
        #expect(uri.isEquivalent(to: uri))
        #expect(uri.isEquivalent(to: try SIPURI(parsing: uri.description)))
        let other = try SIPURI(parsing: "sip:carol@chicago.com;name=v")
        #expect(uri.isEquivalent(to: other) && other.isEquivalent(to: uri))
        let different = try SIPURI(parsing: "sip:carol@chicago.com;name=value")
        #expect(!uri.isEquivalent(to: different) && !different.isEquivalent(to: uri))
    }

    // MARK: - name-addr vs addr-spec (RFC 3261 §20.10)

    @Test func addrSpecParametersBelongToTheHeader() throws {
        let address = try SIPAddress(parsing: "sip:alice@atlanta.example.com;transport=tcp;tag=1234")
        #expect(address.displayName == nil)
        #expect(address.uri.parameters.isEmpty)
        #expect(address.uri.description == "sip:alice@atlanta.example.com")
        #expect(address.parameters["transport"] == .some("tcp"))
        #expect(address.tag == "1234")
        #expect(address.description == "<sip:alice@atlanta.example.com>;transport=tcp;tag=1234")
    }

    @Test func nameAddrParametersBelongToTheURI() throws {
        let address = try SIPAddress(parsing: "<sip:alice@atlanta.example.com;transport=tcp?subject=hi>;tag=1234")
        #expect(address.uri.parameters["transport"] == .some("tcp"))
        #expect(address.uri.headers.count == 1)
        #expect(address.parameters.count == 1)
        #expect(address.tag == "1234")
        #expect(address.description == "<sip:alice@atlanta.example.com;transport=tcp?subject=hi>;tag=1234")
    }

    @Test(arguments: [
        (#""Alice Smith" <sip:alice@atlanta.example.com>"#, "Alice Smith"),
        (#"Alice   Smith <sip:alice@atlanta.example.com>"#, "Alice   Smith"),
        (#"Alice<sip:alice@atlanta.example.com>"#, "Alice"),
        (#""" <sip:alice@atlanta.example.com>"#, ""),
        (#""A \"quoted\" \\ name" <sip:alice@atlanta.example.com>"#, #"A "quoted" \ name"#),
        (#""Ünïcödé" <sip:alice@atlanta.example.com>"#, "Ünïcödé"),
    ])
    func displayNames(_ text: String, _ name: String) throws {
        let address = try SIPAddress(parsing: text)
        #expect(address.displayName == name)
        #expect(address.uri.user == "alice")
        let again = try SIPAddress(parsing: address.description)
        #expect(again == address)
    }

    @Test func tagEditing() throws {
        var address = try SIPAddress(parsing: "<sip:bob@biloxi.example.com>")
        #expect(address.tag == nil)
        address.tag = "a6c85cf"
        #expect(address.description == "<sip:bob@biloxi.example.com>;tag=a6c85cf")
        address.tag = "other"
        #expect(address.parameters.count == 1 && address.tag == "other")
        address.tag = nil
        #expect(address.parameters.isEmpty)
    }

    @Test func addressLists() throws {
        let list = try SIPAddress.parseList(
            #"<sip:p1.example.com;lr>, "Two, Three" <sip:p2.example.com>;x=1 ,sip:p3.example.com;y"#)
        #expect(list.count == 3)
        #expect(list[1].displayName == "Two, Three" && list[1].parameters["x"] == .some("1"))
        #expect(list[2].uri.host == "p3.example.com" && list[2].parameters.contains("y"))
        #expect(list[2].uri.parameters.isEmpty)
    }

    @Test(arguments: [
        ("sip:bob@biloxi.example.com?subject=x", "URI with headers must be in <>"),
        ("Bob Smith sip:bob@biloxi.example.com", "no scheme"),
        ("<sip:bob@biloxi.example.com", "missing >"),
        ("<>", "no scheme"),
        ("", "empty address"),
        ("<sip:bob@biloxi.example.com>;", "parameter without a name"),
        ("<sip:bob@biloxi.example.com> <sip:x@y>", "unexpected text after address: <sip:x@y>"),
        ("Bob@Home <sip:bob@biloxi.example.com>", "display name is neither a token nor quoted"),
    ])
    func malformedAddresses(_ text: String, _ reason: String) {
        #expect(throws: ValueError(reason)) { try SIPAddress(parsing: text) }
    }
}
