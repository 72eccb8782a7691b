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

    /// A binding keys a contact already in normal form by its spelling: the key must be the one
    /// normalizing gives, for every contact, normal or not.
    @Test func aBindingsKeyIsTheNormalizedKey() throws {
        for text in ["sip:alice@192.0.2.4:5060", "sip:alice@192.0.2.4:5060;transport=udp", "sips:bob@example.com",
                     "sip:192.0.2.9", "sip:Alice@host.example;ob", "sip:[2001:db8::1]:5070;transport=tcp",
                     "sip:%61lice@Phone.Example.COM:5070;transport=UDP", "sip:alice@phone.example.com;OB;Transport=TCP",
                     "sip:alice@[2001:DB8::1]", "sip:alice@host;maddr=%31.2.3.4", "sip:alice:secret@host",
                     "sip:alice@host?Subject=hi", "sip:%61lice@host", "sip:alice@Phone.Example.COM:5070;Transport=UDP", "sip:Alice@HOST;OB", "sip:HOST.example:5060", "sip:alice@host;transport=tcp;ob", "tel:+15551234567;phone-context=x"] {
            let uri = try SIPURI(parsing: text)
            let binding = Binding(aor: "sip:alice@tern.test", contact: uri, contactParameters: SIPParameters(), expiresAt: 0,
                                  callID: "c", cseq: 1, transport: .udp, flow: nil, source: nil)
            #expect(binding.key == ContactKey.normalized(uri, prefix: "contact:"), "\(text)")
        }
    }
}
