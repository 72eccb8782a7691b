@testable import CoreProxy
import EventBus
@testable import Messaging
import NIOCore
import SIP
import Testing
@testable import TernServer

/// What the event bridge puts in the outbox for module events.
struct EventBridgeTests {
    static func payload(_ event: TernEvent) -> [String: JSONValue] {
        Dictionary(event.payload, uniquingKeysWith: { first, _ in first })
    }

    @Test func aStoredMessageCarriesItsChargingIdentifierAndOthersDoNot() {
        let outbox = EventOutbox(capacity: 10, policy: .dropNewest)
        let bridge = EventBridge(outbox: outbox)
        bridge.messagingEvent(MessagingEvent(kind: .stored, messageID: "m1", sender: "<sip:a@x>", recipient: "sip:b@x", time: 1,
                                             storedAt: 1, attempts: 0, icid: "icid-42"))
        bridge.messagingEvent(MessagingEvent(kind: .delivered, messageID: "m1", sender: "<sip:a@x>", recipient: "sip:b@x", time: 2,
                                             storedAt: 1, attempts: 1))
        let events = outbox.take(max: 10, timeout: 0)
        #expect(events.map(\.type) == ["message.stored", "message.delivered"])
        #expect(Self.payload(events[0])["icid"] == .string("icid-42"))
        #expect(Self.payload(events[1])["icid"] == nil)
    }

    /// The registration events carry the documented payload, as the binding was when the event was
    /// made (the publisher writes it later, from the binding the event kept).
    @Test func aRegistrationCarriesItsBindingAsDocumented() throws {
        let outbox = EventOutbox(capacity: 10, policy: .dropNewest)
        let bridge = EventBridge(outbox: outbox)
        var binding = Binding(aor: "sip:alice@tern.test", contact: try SIPURI(parsing: "sip:alice@[2001:db8::1]:5061;transport=tcp"),
                              contactParameters: SIPParameters(), expiresAt: 1_795_750_000_123, callID: "c1", cseq: 1,
                              transport: .tcp, flow: nil, source: try SocketAddress(ipAddress: "2001:db8::1", port: 5061))
        binding.instanceID = "<urn:uuid:1>"
        binding.userAgent = #"Phone "1""#
        bridge.locationChanged(BindingEvent(kind: .added, binding: binding))
        binding.source = try SocketAddress(ipAddress: "192.0.2.1", port: 5060)
        binding.userAgent = nil
        bridge.locationChanged(BindingEvent(kind: .expired, binding: binding))
        let events = outbox.take(max: 10, timeout: 0)
        #expect(events.map(\.type) == ["registration.added", "registration.expired"])
        let added = Self.payload(events[0])
        #expect(added["aor"] == .string("sip:alice@tern.test") && added["contact"] == .string("sip:alice@[2001:db8::1]:5061;transport=tcp"))
        #expect(added["expires_at"] == .string("2026-11-27T03:26:40.123Z") && added["transport"] == .string("tcp"))
        #expect(added["instance"] == .string("<urn:uuid:1>") && added["user_agent"] == .string(#"Phone "1""#))
        #expect(added["source"] == .string("[2001:db8::1]:5061"))
        let expired = Self.payload(events[1])
        #expect(expired["source"] == .string("192.0.2.1:5060") && expired["user_agent"] == .null)
        // The message body the publisher writes carries the same payload inside the envelope.
        guard case .object(let envelope) = try JSONValue.parse(Array(events[0].json(node: "n1").utf8)) else {
            Issue.record("the body is not a JSON object")
            return
        }
        let fields = Dictionary(envelope, uniquingKeysWith: { first, _ in first })
        #expect(fields["type"] == .string("registration.added") && fields["node"] == .string("n1"))
        #expect(fields["payload"] == .object(events[0].payload))
        #expect(try JSONValue.parse(Array(events[0].payloadJSON.utf8)) == .object(events[0].payload))
    }
}
