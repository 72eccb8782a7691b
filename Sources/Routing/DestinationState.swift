import NIOConcurrencyHelpers

/// What the dispatcher knows of each destination at run time, by its URI: whether it answers
/// probes, requests in flight, and the round-robin position of each set. Kept across reloads.
final class DestinationState: Sendable {
    private struct State {
        var down: Set<String> = []
        var misses: [String: Int] = [:]
        var active: [String: Int] = [:]
        var cursor: [String: Int] = [:]
    }

    private let state = NIOLockedValueBox(State())

    func isDown(_ key: String) -> Bool { state.withLockedValue { $0.down.contains(key) } }
    var downKeys: Set<String> { state.withLockedValue { $0.down } }

    func active(_ key: String) -> Int { state.withLockedValue { $0.active[key] ?? 0 } }

    func started(_ key: String) { state.withLockedValue { $0.active[key, default: 0] += 1 } }

    func ended(_ key: String) {
        state.withLockedValue { state in
            let left = (state.active[key] ?? 1) - 1
            state.active[key] = left > 0 ? left : nil
        }
    }

    /// The next round-robin start for a set of `count` destinations.
    func nextCursor(_ set: String, count: Int) -> Int {
        state.withLockedValue { state in
            let value = state.cursor[set] ?? 0
            state.cursor[set] = (value + 1) % max(1, count)
            return value % max(1, count)
        }
    }

    /// A probe answered: the destination is up. Returns true when that is news.
    func answered(_ key: String) -> Bool {
        state.withLockedValue { state in
            state.misses[key] = nil
            return state.down.remove(key) != nil
        }
    }

    /// A probe missed; after `limit` in a row the destination is down. Returns true when that is news.
    func missed(_ key: String, limit: Int) -> Bool {
        state.withLockedValue { state in
            let count = (state.misses[key] ?? 0) + 1
            state.misses[key] = count
            guard count >= limit else { return false }
            return state.down.insert(key).inserted
        }
    }
}
