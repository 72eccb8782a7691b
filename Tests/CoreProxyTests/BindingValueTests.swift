@testable import CoreProxy
import NIOCore
import SIP
import Testing

/// A binding is a value: its fields sit behind one shared reference, and a change to a copy must
/// leave every other copy as it was, with the key and the contact's text following the change.
@Suite struct BindingValueTests {
    private func binding(_ contact: String) throws -> Binding {
        Binding(aor: "sip:alice@example.com", contact: try SIPURI(parsing: contact), contactParameters: SIPParameters(),
                expiresAt: 1_000, callID: "call-1", cseq: 1, transport: .udp, flow: nil,
                source: try SocketAddress(ipAddress: "192.0.2.4", port: 5060))
    }

    @Test func aChangedCopyLeavesTheOriginalAlone() throws {
        let original = try binding("sip:alice@192.0.2.4:5060")
        var copy = original
        #expect(copy == original)
        copy.expiresAt = 2_000
        copy.cseq = 2
        copy.path = ["<sip:edge.example.com;lr>"]
        copy.isBehindNAT = true
        #expect(original.expiresAt == 1_000 && original.cseq == 1 && original.path.isEmpty && !original.isBehindNAT)
        #expect(copy.expiresAt == 2_000 && copy.cseq == 2 && copy.path.count == 1 && copy.isBehindNAT)
        #expect(copy != original)
    }

    @Test func theKeyAndTextFollowTheContactAndTheInstance() throws {
        let original = try binding("sip:alice@192.0.2.4:5060")
        var moved = original
        moved.contact = try SIPURI(parsing: "sip:alice@192.0.2.7:5070")
        #expect(moved.contactText == "sip:alice@192.0.2.7:5070")
        #expect(moved.key == "contact:sip:alice@192.0.2.7:5070")
        #expect(original.contactText == "sip:alice@192.0.2.4:5060")
        #expect(original.key == "contact:sip:alice@192.0.2.4:5060")
        var device = original
        device.instanceID = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
        device.regID = 1
        #expect(device.key == "instance:<urn:uuid:00000000-0000-1000-8000-000A95A0E128>;reg-id=1")
        #expect(original.key == "contact:sip:alice@192.0.2.4:5060")
        var copies: Set<Binding> = [original, moved, device, original]
        #expect(copies.count == 3)
        copies.remove(moved)
        #expect(copies.contains(original) && copies.contains(device))
    }
}
