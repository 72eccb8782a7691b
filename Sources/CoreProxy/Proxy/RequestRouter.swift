public import SIP

/// Where a routing feature (dispatcher, least-cost routing, dialplan) sends a request.
public struct RouteChoice: Sendable {
    public enum Action: Sendable {
        /// Try these next hops in order, each after the one before failed with a status in `failover`
        /// (or did not answer, or could not be reached) (RFC 3261 §16.6, sequential search).
        case forward([RouteDestination], failover: Set<Int>)
        /// Deliver to a local user at this address-of-record (a DID mapped to a user).
        case local(SIPURI)
        case reject(SIPStatus)
    }

    public var action: Action
    /// Header lines the request gains (a mark such as an emergency flag, a P-header).
    public var addedHeaders: [(SIPHeaderName, String)]
    /// A change to the request beyond headers (a SIP-I rule rewriting the ISUP body).
    public var edit: (@Sendable (inout SIPMessage) -> Void)?

    public init(action: Action, addedHeaders: [(SIPHeaderName, String)] = [], edit: (@Sendable (inout SIPMessage) -> Void)? = nil) {
        self.action = action
        self.addedHeaders = addedHeaders
        self.edit = edit
    }
}

/// One next hop: the Request-URI it gets, and whom to tell how it went.
public struct RouteDestination: Sendable {
    public var requestURI: SIPURI
    /// Told the final status (nil: no answer, or not reachable) once this hop is done.
    public var outcome: (@Sendable (Int?) -> Void)?
    /// Told when the request goes out to this hop.
    public var started: (@Sendable () -> Void)?

    public init(requestURI: SIPURI, started: (@Sendable () -> Void)? = nil, outcome: (@Sendable (Int?) -> Void)? = nil) {
        self.requestURI = requestURI
        self.started = started
        self.outcome = outcome
    }
}

/// A feature that routes requests the location service does not: consulted for every initial
/// request the proxy routes (not for those a Route header already sends on).
public protocol RequestRouter: Sendable {
    /// Nil leaves the request to the proxy's own rules (location, outbound proxy, 403/404).
    /// - Parameter source: the address the request came from.
    func route(_ request: SIPMessage, requestURI: SIPURI, source: String?) -> RouteChoice?
}
