@testable import SIP
import Testing

/// Header parameters as the address and Via parsers read them: quoted values kept as written when
/// they need no escape and normalised when they do; every parameter of a list element, and none of
/// the next one's.
struct HeaderParameterTests {
    @Test func aQuotedValueWithoutEscapesIsKeptAsWritten() throws {
        let contact = try SIPAddress(parsing: #"<sip:bob@192.0.2.4>;expires=60;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1"#)
        #expect(contact.parameters.count == 3)
        #expect(contact.parameters["+sip.instance"] == .some(#""<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>""#))
        #expect(contact.parameters.unquoted("+sip.instance") == "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>")
        #expect(contact.parameters["reg-id"] == .some("1"))
    }

    @Test func aQuotedValueWithEscapesKeepsOnlyTheNeededOnes() throws {
        // \a needs no escape and loses it; \" and \\ keep theirs.
        let address = try SIPAddress(parsing: #"<sip:a@example.com>;note="say \"hi\" \a \\ ok";x"#)
        #expect(address.parameters["note"] == .some(#""say \"hi\" a \\ ok""#))
        #expect(address.parameters["x"] == .some(nil))
    }

    @Test func settingAParameterReplacesTheFirstInPlaceDropsLaterOnesAndAppendsWhenAbsent() throws {
        var parameters = try SIPAddress(parsing: "<sip:a@example.com>;Expires=60;q=0.5;expires=30;lr").parameters
        parameters.set("expires", "3600")
        #expect(parameters.description == ";Expires=3600;q=0.5;lr")
        parameters.set("lr", nil)
        #expect(parameters.description == ";Expires=3600;q=0.5;lr")
        parameters.set("pub-gruu", #""sip:a@example.com;gr=x""#)
        #expect(parameters.description == #";Expires=3600;q=0.5;lr;pub-gruu="sip:a@example.com;gr=x""#)
        var empty = SIPParameters()
        empty.set("expires", "0")
        #expect(empty.description == ";expires=0")
    }

    @Test func eachElementOfAListGetsItsOwnParameters() throws {
        // A ';' and a ',' inside quotes belong to the value, not to the list.
        let list = try SIPAddress.parseList(#"<sip:a@example.com>;q=0.5;n="x;y, z", <sip:b@example.com>;q=1"#)
        #expect(list.count == 2)
        #expect(list[0].parameters.count == 2 && list[0].parameters["n"] == .some(#""x;y, z""#))
        #expect(list[1].parameters.count == 1 && list[1].parameters["q"] == .some("1"))
    }

    @Test func anUnterminatedQuotedValueIsAFault() {
        #expect(throws: ValueError.self) { try SIPAddress(parsing: #"<sip:a@example.com>;n="open"#) }
    }

    @Test func headerValuesAreCopiedWholeOrUnfolded() {
        let plain = Array("SIP/2.0/UDP a.example.com;branch=z9hG4bK1".utf8)
        let folded = Array("SIP/2.0/UDP a.example.com\r\n ;branch=z9hG4bK1".utf8)
        #expect(plain.withUnsafeBytes { HeaderValueSplitter.unfoldedBytes($0) } == plain)
        #expect(folded.withUnsafeBytes { HeaderValueSplitter.unfoldedBytes($0) } == Array("SIP/2.0/UDP a.example.com ;branch=z9hG4bK1".utf8))
        #expect([UInt8]().withUnsafeBytes { HeaderValueSplitter.unfoldedBytes($0) }.isEmpty)
    }
}
