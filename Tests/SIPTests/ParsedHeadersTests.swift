import SIP
import Testing

/// What validation parses is kept for later readers, and never outlives an edit.
struct ParsedHeadersTests {
    static let text = "REGISTER sip:tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-a;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b\r\n"
        + "Max-Forwards: 70\r\nFrom: <sip:alice@tern.test>;tag=1\r\nTo: <sip:alice@tern.test>\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\n"
        + "Contact: <sip:alice@192.0.2.1:5060>\r\nContent-Length: 0\r\n\r\n"

    @Test func editsAreSeenByTheTypedAccessors() throws {
        var message = try SIPMessageParser().parse(Self.text)
        try message.validateRequestKeepingParsed()
        #expect(try message.to()?.uri.user == "alice" && message.cseq()?.sequence == 7)
        message.setHeader(.to, "<sip:bob@tern.test>")
        #expect(try message.to()?.uri.user == "bob", "an edit drops what was parsed")
        message.setRequestURI(try SIPURI(parsing: "sip:other.test"))
        #expect(try message.requestURI().host == "other.test")
        message.setHeader(.contact, "<sip:alice@198.51.100.7>")
        guard case .addresses(let contacts)? = try message.contacts() else { Issue.record("no contacts"); return }
        #expect(contacts.first?.uri.host == "198.51.100.7")
    }

    @Test func callIDAndMaxForwardsAreKeptUntilAnEdit() throws {
        var message = try SIPMessageParser().parse(Self.text)
        try message.validateRequestKeepingParsed()
        #expect(try message.callID == "c1" && message.maxForwards() == 70)
        // A proxy lowers Max-Forwards before it forwards; the new value is what is read.
        message.setHeader(.maxForwards, "69")
        #expect(try message.maxForwards() == 69)
        try message.validateRequestKeepingParsed()
        message.setHeader(.callID, "c2")
        #expect(message.callID == "c2")
        // Replacing the top Via keeps both.
        try message.validateRequestKeepingParsed()
        var top = try #require(try message.topVia())
        top.parameters.set("received", "203.0.113.9")
        message.replaceTopVia(top)
        #expect(try message.callID == "c2" && message.maxForwards() == 69)
    }

    @Test func editsOfHeadersItDoesNotHoldKeepWhatWasParsed() throws {
        let routed = Self.text.replacingOccurrences(of: "Max-Forwards: 70\r\n",
                                                    with: "Max-Forwards: 70\r\nRoute: <sip:tern.test;lr>, <sip:next.test;lr>\r\n")
        var message = try SIPMessageParser().parse(routed)
        try message.validateRequestKeepingParsed()
        // A proxy removes its own Route, adds Record-Route, sets other headers: nothing validation parsed changes.
        message.dropFirstValue(.route)
        message.prependHeader(.recordRoute, "<sip:tern.test;lr>")
        message.setHeader(SIPHeaderName("X-Note"), "kept")
        message.appendHeader(.allow, "INVITE, ACK")
        message.removeHeaders(SIPHeaderName("X-Note"))
        #expect(message.parsed != nil, "an edit of Route, Record-Route, Allow or an extension kept the parsed headers")
        #expect(try message.routes().map(\.uri.host) == ["next.test"])
        #expect(try message.requestURI().host == "tern.test" && message.to()?.uri.user == "alice" && message.vias().count == 2)
        // An edit of a header they hold drops them, and the accessors read the message again.
        message.removeHeaders(.contact)
        #expect(message.parsed == nil)
        #expect(try message.contacts() == nil)
    }

    @Test func replacingTheTopViaKeepsTheOthers() throws {
        var message = try SIPMessageParser().parse(Self.text)
        try message.validateRequestKeepingParsed()
        var top = try #require(try message.topVia())
        top.parameters.set("received", "203.0.113.9")
        message.replaceTopVia(top)
        let vias = try message.vias()
        #expect(vias.count == 2 && vias[0].received == "203.0.113.9" && vias[1].branch == "z9hG4bK-b")
        // The same, as a fresh parse of the edited text reads it.
        let reparsed = try SIPMessageParser().parse(message.serializedString)
        #expect(try reparsed.vias() == vias)
    }
}
