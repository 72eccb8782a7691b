@testable import CoreProxy
import SIP
import Testing

/// A binding without +sip.instance is known by its contact, compared as RFC 3261 §19.1.4 says:
/// escapes resolved, host and parameters case-insensitive, parameters in any order.
@Suite struct ContactKeyTests {
    private func key(_ text: String) throws -> String {
        ContactKey.normalized(try SIPURI(parsing: text), prefix: "contact:")
    }

    @Test func equivalentContactsShareAKey() throws {
        #expect(try key("sip:alice@192.0.2.4:5060") == "contact:sip:alice@192.0.2.4:5060")
        #expect(try key("sip:%61lice@Phone.Example.COM:5070;transport=UDP") == key("sip:alice@phone.example.com:5070;transport=udp"))
        #expect(try key("sip:alice@phone.example.com;transport=tcp;ob") == key("sip:alice@phone.example.com;OB;Transport=TCP"))
        #expect(try key("sip:alice@phone.example.com;transport=tcp") == "contact:sip:alice@phone.example.com;transport=tcp")
    }

    @Test func differentContactsDoNot() throws {
        #expect(try key("sip:alice@192.0.2.4:5060") != key("sip:alice@192.0.2.4:5061"))
        #expect(try key("sip:alice@192.0.2.4") != key("sip:bob@192.0.2.4"))
        #expect(try key("sip:alice@192.0.2.4;transport=tcp") != key("sip:alice@192.0.2.4;transport=udp"))
        #expect(try key("sips:alice@192.0.2.4") != key("sip:alice@192.0.2.4"))
    }
}
