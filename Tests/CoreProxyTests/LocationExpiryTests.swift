import CoreProxy
import Logging
import NIOConcurrencyHelpers
import SIP
import Testing

/// The expiry sweep passes shards whose earliest expiry has not come: these check that every
/// binding still lapses on time when the earliest one was removed or refreshed before its time.
@Suite struct LocationExpiryTests {
    final class SteppedClock: LocationClock {
        let milliseconds = NIOLockedValueBox<Int64>(1_000_000)
        func nowMilliseconds() -> Int64 { milliseconds.withLockedValue { $0 } }
        func advance(seconds: Int64) { milliseconds.withLockedValue { $0 += seconds * 1000 } }
    }

    final class Recorder: LocationObserver {
        let events = NIOLockedValueBox<[String]>([])
        func locationChanged(_ event: BindingEvent) {
            events.withLockedValue { $0.append("\(event.kind.rawValue) \(event.binding.aor)") }
        }
    }

    func binding(_ aor: String, expiresIn seconds: Int64, clock: SteppedClock) throws -> Binding {
        Binding(aor: aor, contact: try SIPURI(parsing: aor + ";transport=udp"), contactParameters: SIPParameters(),
                expiresAt: clock.nowMilliseconds() + seconds * 1000, callID: "call-" + aor, cseq: 1,
                transport: .udp, flow: nil, source: nil)
    }

    @Test func bindingsLapseOnTimeAfterTheEarliestIsRemovedOrRefreshed() throws {
        let clock = SteppedClock()
        // One shard: every AOR shares the shard's earliest expiry.
        let location = LocationService(store: nil, clock: clock, logger: Logger(label: "test"), shardCount: 1)
        let recorder = Recorder()
        location.addObserver(recorder)
        let first = try binding("sip:first@tern.test", expiresIn: 10, clock: clock)
        let second = try binding("sip:second@tern.test", expiresIn: 20, clock: clock)
        var third = try binding("sip:third@tern.test", expiresIn: 30, clock: clock)
        for added in [first, second, third] { location.update(aor: added.aor) { $0 = [added] } }
        location.remove(aor: first.aor, key: first.key)
        third.expiresAt += 70_000
        location.update(aor: third.aor) { [third] in $0 = [third] }

        clock.advance(seconds: 15)
        location.expireDue()
        #expect(location.bindingCount == 2, "nothing lapsed yet: the removed binding's time passed")
        clock.advance(seconds: 10)
        location.expireDue()
        #expect(location.bindings(for: second.aor).isEmpty)
        clock.advance(seconds: 10)
        location.expireDue()
        #expect(location.bindings(for: third.aor).count == 1, "refreshed past its first expiry")
        clock.advance(seconds: 70)
        location.expireDue()
        #expect(location.bindingCount == 0)
        #expect(recorder.events.withLockedValue { $0 } == [
            "added sip:first@tern.test", "added sip:second@tern.test", "added sip:third@tern.test",
            "removed sip:first@tern.test", "refreshed sip:third@tern.test",
            "expired sip:second@tern.test", "expired sip:third@tern.test",
        ])
    }
}
