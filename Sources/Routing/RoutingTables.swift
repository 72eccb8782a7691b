/// Everything the router decides from, replaced whole on a reload.
public struct RoutingTables: Sendable {
    public var dispatcherSets: [String: DispatcherSet]
    public var lcr: LeastCostRouting?
    public var dialplan: [DialplanRule]
    public var portability: NumberPortability?
    /// Seconds between OPTIONS probes of dispatcher destinations; 0 turns probing off.
    public var probeInterval: Int
    /// Probes missed in a row before a destination is taken out (any answer brings it back).
    public var probeFailures: Int

    public init(dispatcherSets: [String: DispatcherSet] = [:], lcr: LeastCostRouting? = nil, dialplan: [DialplanRule] = [],
                portability: NumberPortability? = nil, probeInterval: Int = 10, probeFailures: Int = 2) {
        self.dispatcherSets = dispatcherSets
        self.lcr = lcr
        self.dialplan = dialplan
        self.portability = portability
        self.probeInterval = probeInterval
        self.probeFailures = probeFailures
    }
}
