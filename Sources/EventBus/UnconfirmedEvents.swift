import DequeModule

/// Events published on a connection and not yet confirmed, oldest first, with their delivery tags.
/// Each published batch is kept whole, as the array the outbox handed over, and released once
/// every one of its tags is confirmed: copying each event in and out (a retain and release of its
/// payload, made on a SIP thread's core) was a sixth of the publisher's time at 5,000 events a second.
struct UnconfirmedEvents {
    /// A published batch: its events went out under consecutive tags from `firstTag`.
    private struct Batch {
        let firstTag: UInt64
        let events: [TernEvent]

        var lastTag: UInt64 { firstTag + UInt64(events.count) - 1 }

        func contains(_ tag: UInt64) -> Bool { tag >= firstTag && tag <= lastTag }
    }

    private var batches = Deque<Batch>()
    /// Events of the first batch before this one are confirmed.
    private var frontOffset = 0
    /// Tags after the front confirmed one at a time, out of order (rare: the broker confirms a
    /// channel's messages mostly in order).
    private var confirmedAhead = Set<UInt64>()
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Every event still unconfirmed, in publishing order.
    var all: [TernEvent] {
        var result: [TernEvent] = []
        result.reserveCapacity(count)
        forEachPending(upTo: .max) { _, event in result.append(event) }
        return result
    }

    /// Records `batch`, published with tags `firstTag`, `firstTag + 1`, ….
    mutating func append(_ batch: [TernEvent], firstTag: UInt64) {
        guard !batch.isEmpty else { return }
        if batches.isEmpty { frontOffset = 0 }
        batches.append(Batch(firstTag: firstTag, events: batch))
        count += batch.count
    }

    /// Removes what a confirm covers: every tag up to `tag` when `multiple`, else that one tag.
    /// Returns how many, and the events themselves when `keeping` (a nack's, to publish again).
    mutating func confirm(tag: UInt64, multiple: Bool, keeping: Bool) -> (count: Int, events: [TernEvent]) {
        guard let first = batches.first else { return (0, []) }
        let frontTag = first.firstTag + UInt64(frontOffset)
        if multiple {
            guard tag >= frontTag else { return (0, []) }
            var covered = 0
            var kept: [TernEvent] = []
            forEachPending(upTo: tag) { _, event in
                covered += 1
                if keeping { kept.append(event) }
            }
            if !confirmedAhead.isEmpty { confirmedAhead = confirmedAhead.filter { $0 > tag } }
            dropConfirmed(through: tag)
            count -= covered
            return (covered, kept)
        }
        // The broker's usual answer to a trickle: a single ack of the oldest tag.
        if tag == frontTag {
            let event = keeping ? [first.events[frontOffset]] : []
            dropConfirmed(through: tag)
            count -= 1
            return (1, event)
        }
        guard tag > frontTag, !confirmedAhead.contains(tag), let batch = batches.first(where: { $0.contains(tag) }) else { return (0, []) }
        confirmedAhead.insert(tag)
        count -= 1
        return (1, keeping ? [batch.events[Int(tag - batch.firstTag)]] : [])
    }

    /// Calls `body` for each unconfirmed event with a tag up to `limit`, oldest first.
    private func forEachPending(upTo limit: UInt64, _ body: (UInt64, TernEvent) -> Void) {
        for (batchIndex, batch) in batches.enumerated() {
            guard batch.firstTag <= limit else { return }
            var index = batchIndex == 0 ? frontOffset : 0
            while index < batch.events.count {
                let tag = batch.firstTag + UInt64(index)
                guard tag <= limit else { return }
                if !confirmedAhead.contains(tag) { body(tag, batch.events[index]) }
                index += 1
            }
        }
    }

    /// Moves the front past `tag` and past any tags right after it already confirmed out of
    /// order, releasing every batch left behind.
    private mutating func dropConfirmed(through tag: UInt64) {
        while let first = batches.first {
            if first.lastTag <= tag {
                batches.removeFirst()
                frontOffset = 0
                continue
            }
            if tag >= first.firstTag { frontOffset = max(frontOffset, Int(tag - first.firstTag) + 1) }
            let frontTag = first.firstTag + UInt64(frontOffset)
            guard confirmedAhead.remove(frontTag) != nil else { return }
            if frontOffset + 1 == first.events.count {
                batches.removeFirst()
                frontOffset = 0
            } else {
                frontOffset += 1
            }
        }
    }
}
