import CoreProxy
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

    @Test func registrationSourcesAreWrittenAsHostAndPort() throws {
        #expect(EventBridge.hostPort(try SocketAddress(ipAddress: "192.0.2.1", port: 5060)) == "192.0.2.1:5060")
        #expect(EventBridge.hostPort(try SocketAddress(ipAddress: "2001:db8::1", port: 5061)) == "[2001:db8::1]:5061")
    }
}
