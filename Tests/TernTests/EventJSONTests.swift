import EventBus
import Foundation
import Testing

/// The event envelope's JSON, checked by a real JSON parser.
struct EventJSONTests {
    @Test func envelopeAndEscapingParseBack() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} é"
        let event = TernEvent(type: "test.json", payload: [
            ("plain", "sip:alice@tern.test"), ("tricky", .string(tricky)), ("count", 42), ("flag", true), ("nothing", .null),
            ("list", .array([1, "two"])), ("nested", .object([("a", .double(1.5))])),
        ], id: "id-1", time: 1_795_750_000_123)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(event.json(node: "n1").utf8)) as? [String: Any])
        #expect(parsed["id"] as? String == "id-1" && parsed["type"] as? String == "test.json" && parsed["node"] as? String == "n1")
        #expect(parsed["time"] as? String == "2026-11-27T03:26:40.123Z")
        #expect(parsed["version"] as? Int == TernEvent.schemaVersion)
        let payload = try #require(parsed["payload"] as? [String: Any])
        #expect(payload["plain"] as? String == "sip:alice@tern.test")
        #expect(payload["tricky"] as? String == tricky)
        #expect(payload["count"] as? Int == 42 && payload["flag"] as? Bool == true && payload["nothing"] is NSNull)
        #expect((payload["list"] as? [Any])?.count == 2 && (payload["nested"] as? [String: Any])?["a"] as? Double == 1.5)
    }
}
