public import SIP

/// A destination set of the dispatcher (Kamailio's dispatcher module): gateways or servers that
/// share load, chosen by an algorithm, grouped by priority, with failover to the next one.
public struct DispatcherSet: Sendable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case roundRobin = "round_robin"
        case weighted
        case hashCallID = "hash_call_id"
        case hashFromUser = "hash_from_user"
        case hashToUser = "hash_to_user"
        case leastLoaded = "least_loaded"
    }

    public struct Destination: Sendable, Hashable {
        public var uri: SIPURI
        public var weight: Int
        /// Lower goes first; a higher priority group is tried only when the lower ones are used up.
        public var priority: Int

        public init(uri: SIPURI, weight: Int = 1, priority: Int = 0) {
            self.uri = uri
            self.weight = max(0, weight)
            self.priority = priority
        }

        /// The destination's identity across reloads (its state is kept by it).
        public var key: String { uri.description }
    }

    public var name: String
    public var algorithm: Algorithm
    public var destinations: [Destination]
    /// Statuses that move a request on to the next destination (no answer at all always does).
    public var failoverCodes: Set<Int>

    public init(name: String, algorithm: Algorithm, destinations: [Destination], failoverCodes: Set<Int> = [408, 500, 502, 503, 504]) {
        self.name = name
        self.algorithm = algorithm
        self.destinations = destinations
        self.failoverCodes = failoverCodes
    }
}
