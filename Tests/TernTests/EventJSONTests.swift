@testable import EventBus
import Foundation
import NIOCore
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

    /// A new event's id is spelled by the publisher (prefix, then the counter in hex): the JSON,
    /// `id` and `appendID` agree, and two events never share one.
    @Test func newIDsAreSpelledAlikeEverywhere() throws {
        let first = TernEvent(type: "test.id", payload: [])
        let second = TernEvent(type: "test.id", payload: [])
        #expect(first.id != second.id)
        for event in [first, second] {
            var bytes: [UInt8] = []
            event.appendID(into: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == event.id)
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(event.json(node: "n").utf8)) as? [String: Any])
            #expect(parsed["id"] as? String == event.id)
            let parts = event.id.split(separator: "-")
            #expect(parts.count == 2 && UInt64(parts[1], radix: 16) != nil && parts[1] == parts[1].lowercased())
        }
        // An id given (an event read back from the spill store) is kept as it is.
        var changed = first
        changed.id = "given"
        #expect(changed.id == "given")
    }

    /// The envelope's time, every field padded, around a year's end.
    @Test(arguments: [(Int64(0), "1970-01-01T00:00:00.000Z"), (1_798_761_599_999, "2026-12-31T23:59:59.999Z"),
                      (1_798_761_600_007, "2027-01-01T00:00:00.007Z")])
    func timestampsAreRFC3339(milliseconds: Int64, expected: String) {
        #expect(TernEvent.rfc3339String(milliseconds) == expected)
    }

    /// The day arithmetic agrees with the C library's calendar over four centuries (leap years of
    /// every kind, and before 1970).
    @Test func civilDatesMatchTheCLibrary() {
        for days in stride(from: Int64(-25_000), through: 130_000, by: 7) {
            var seconds = time_t(days * 86_400)
            var parts = tm()
            gmtime_r(&seconds, &parts)
            let date = TernEvent.civilDate(daysSince1970: days)
            #expect(date.year == Int64(parts.tm_year) + 1900 && date.month == Int64(parts.tm_mon) + 1
                    && date.day == Int64(parts.tm_mday), "day \(days)")
            if date.day != Int64(parts.tm_mday) { break }
        }
        #expect(TernEvent.rfc3339String(951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(TernEvent.rfc3339String(-1) == "1969-12-31T23:59:59.999Z")
    }

    /// A payload written field by field (the registration events) is the same JSON a tree of
    /// values gives: escaped strings, nulls, RFC 3339 times, and sources as host and port.
    @Test func writtenPayloadsParseBack() throws {
        let event = TernEvent(type: "test.written", deferred: TrickyPayload())
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(event.json(node: "n1").utf8)) as? [String: Any])
        #expect(parsed["type"] as? String == "test.written" && parsed["id"] as? String == event.id)
        let payload = try #require(parsed["payload"] as? [String: Any])
        #expect(payload["aor"] as? String == "sip:alice@tern.test" && payload["tricky"] as? String == TrickyPayload.tricky)
        #expect(payload["nothing"] is NSNull && payload["none"] is NSNull && payload["count"] as? Int == 42)
        #expect(payload["at"] as? String == "2026-11-27T03:26:40.123Z")
        #expect(payload["v4"] as? String == "192.0.2.1:5060" && payload["v6"] as? String == "[2001:db8::1]:5061")
        #expect(payload["v4low"] as? String == "0.0.0.0:0" && payload["v4high"] as? String == "255.255.255.255:65535")
        #expect(payload["v4mixed"] as? String == "10.1.100.9:10")
        // The fields read back for the spill store and for modules that look at events.
        let fields = Dictionary(event.payload, uniquingKeysWith: { first, _ in first })
        #expect(fields["aor"] == .string("sip:alice@tern.test") && fields["nothing"] == .null && fields.count == 11)
        #expect(event.payloadJSON.hasPrefix(#"{"aor":"sip:alice@tern.test","#))
    }
}

/// Every kind of field a deferred payload writes, with strings that need escaping.
private struct TrickyPayload: DeferredEventPayload {
    static let tricky = "quote \" backslash \\ newline \n é"

    func write(into payload: inout JSONObjectWriter) {
        payload.add("aor", "sip:alice@tern.test")
        payload.add("tricky", Self.tricky)
        payload.add("nothing", nil as String?)
        payload.add("count", 42)
        payload.add("at", timestamp: 1_795_750_000_123)
        payload.add("v4", hostPort: try? SocketAddress(ipAddress: "192.0.2.1", port: 5060))
        payload.add("v6", hostPort: try? SocketAddress(ipAddress: "2001:db8::1", port: 5061))
        payload.add("none", hostPort: nil)
        // Each octet and the port at their shortest and longest.
        payload.add("v4low", hostPort: try? SocketAddress(ipAddress: "0.0.0.0", port: 0))
        payload.add("v4high", hostPort: try? SocketAddress(ipAddress: "255.255.255.255", port: 65535))
        payload.add("v4mixed", hostPort: try? SocketAddress(ipAddress: "10.1.100.9", port: 10))
    }
}
