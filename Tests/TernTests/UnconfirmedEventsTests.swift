@testable import EventBus
import Testing

/// What a publisher confirm removes from the events in flight (AMQP 0-9-1 confirms: `multiple`
/// covers every tag up to the one given; a single tag may come out of order).
struct UnconfirmedEventsTests {
    private static func events(_ count: Int) -> [TernEvent] {
        (0..<count).map { TernEvent(type: "test.unconfirmed", payload: [("n", .int(Int64($0)))], id: "e\($0)") }
    }

    @Test func aMultipleAckRemovesEveryTagUpToItsOwn() {
        var unconfirmed = UnconfirmedEvents()
        unconfirmed.append(Self.events(5), firstTag: 1)
        let acked = unconfirmed.confirm(tag: 3, multiple: true, keeping: false)
        #expect(acked.count == 3 && acked.events.isEmpty)
        #expect(unconfirmed.all.map(\.id) == ["e3", "e4"])
    }

    @Test func aSingleConfirmOutOfOrderRemovesThatTagOnly() {
        var unconfirmed = UnconfirmedEvents()
        unconfirmed.append(Self.events(3), firstTag: 10)
        unconfirmed.append(Self.events(2).map { var event = $0; event.id = "late-" + event.id; return event }, firstTag: 13)
        let nacked = unconfirmed.confirm(tag: 12, multiple: false, keeping: true)
        #expect(nacked.count == 1 && nacked.events.map(\.id) == ["e2"])
        #expect(unconfirmed.all.map(\.id) == ["e0", "e1", "late-e0", "late-e1"])
        // A multiple nack after the gap: the tags left up to 13, in order, to publish again.
        let rest = unconfirmed.confirm(tag: 13, multiple: true, keeping: true)
        #expect(rest.events.map(\.id) == ["e0", "e1", "late-e0"])
        #expect(unconfirmed.count == 1)
    }

    /// The broker's usual answer to a trickle: one ack per event, oldest first.
    @Test func singleAcksOfTheOldestRemoveOneEachInOrder() {
        var unconfirmed = UnconfirmedEvents()
        unconfirmed.append(Self.events(3), firstTag: 1)
        #expect(unconfirmed.confirm(tag: 1, multiple: false, keeping: false).count == 1)
        let nacked = unconfirmed.confirm(tag: 2, multiple: false, keeping: true)
        #expect(nacked.count == 1 && nacked.events.map(\.id) == ["e1"])
        #expect(unconfirmed.all.map(\.id) == ["e2"])
    }

    @Test func aConfirmForNothingInFlightRemovesNothing() {
        var unconfirmed = UnconfirmedEvents()
        unconfirmed.append(Self.events(2), firstTag: 5)
        #expect(unconfirmed.confirm(tag: 4, multiple: true, keeping: true).count == 0)
        #expect(unconfirmed.confirm(tag: 9, multiple: false, keeping: true).count == 0)
        #expect(unconfirmed.count == 2)
    }

    /// A tag confirmed ahead of the front is passed over once the front reaches it, across the
    /// boundary between two published batches.
    @Test func theFrontMovesPastTagsConfirmedAheadOfIt() {
        var unconfirmed = UnconfirmedEvents()
        unconfirmed.append(Self.events(2), firstTag: 1)
        unconfirmed.append(Self.events(3).map { var event = $0; event.id = "b" + event.id; return event }, firstTag: 3)
        #expect(unconfirmed.confirm(tag: 3, multiple: false, keeping: false).count == 1)
        #expect(unconfirmed.confirm(tag: 2, multiple: false, keeping: false).count == 1)
        // Confirming the same tag again covers nothing.
        #expect(unconfirmed.confirm(tag: 3, multiple: false, keeping: false).count == 0)
        #expect(unconfirmed.all.map(\.id) == ["e0", "be1", "be2"])
        #expect(unconfirmed.confirm(tag: 1, multiple: false, keeping: false).count == 1)
        #expect(unconfirmed.all.map(\.id) == ["be1", "be2"])
        // The front is now tag 4: a multiple confirm of 5 covers two, and nothing is left.
        let acked = unconfirmed.confirm(tag: 5, multiple: true, keeping: true)
        #expect(acked.count == 2 && acked.events.map(\.id) == ["be1", "be2"])
        #expect(unconfirmed.isEmpty && unconfirmed.all.isEmpty)
        #expect(unconfirmed.confirm(tag: 6, multiple: true, keeping: false).count == 0)
    }
}
