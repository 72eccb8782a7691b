public import CoreProxy
import NIOConcurrencyHelpers
public import SIP
import Metrics

/// Routes initial requests by the dialplan, then the dispatcher or least-cost routing (with a
/// number portability dip first), from tables that a reload replaces whole.
public final class Router: RequestRouter, Sendable {
    private let tablesBox: NIOLockedValueBox<RoutingTables>
    let destinations = DestinationState()
    public let cache: SharedCache
    private let routed = Counter(label: "tern.routing.routed")
    private let refused = Counter(label: "tern.routing.refused")
    private let reloads = Counter(label: "tern.routing.reloads")

    public init(tables: RoutingTables, cache: SharedCache) {
        self.tablesBox = NIOLockedValueBox(tables)
        self.cache = cache
    }

    public var tables: RoutingTables { tablesBox.withLockedValue { $0 } }

    /// Puts new tables in place at once: requests already routed keep their next hops.
    public func replace(_ tables: RoutingTables) {
        tablesBox.withLockedValue { $0 = tables }
        reloads.increment()
    }

    /// Whether a destination is out because it stopped answering probes.
    public func isDown(_ uri: SIPURI) -> Bool { destinations.isDown(uri.description) }

    /// Requests in flight to a destination.
    public func activeRequests(_ uri: SIPURI) -> Int { destinations.active(uri.description) }

    public func route(_ request: SIPMessage, requestURI: SIPURI, source: String?) -> RouteChoice? {
        var unused = RoutingExplanation()
        return decide(request, requestURI: requestURI, source: source, into: &unused, tracing: false)
    }

    /// What the router would do with `request`, step by step, without sending anything.
    public func explain(_ request: SIPMessage, source: String? = nil) -> RoutingExplanation {
        var trace = RoutingExplanation()
        guard let requestURI = try? request.requestURI() else {
            trace.steps.append("the Request-URI does not parse")
            trace.decision = "none"
            return trace
        }
        let choice = decide(request, requestURI: requestURI, source: source, into: &trace, tracing: true)
        guard let choice else {
            trace.decision = "default"
            trace.steps.append("no rule matched: the proxy's own rules apply (location service, outbound proxy, 403/404)")
            return trace
        }
        trace.addedHeaders = choice.addedHeaders.map { $0.0.canonical + ": " + $0.1 }
        switch choice.action {
        case .reject(let status):
            trace.decision = "reject"
            trace.status = status.code
            trace.reason = status.reason
        case .local(let uri):
            trace.decision = "local"
            trace.requestURI = uri.description
        case .forward(let hops, let failover):
            trace.decision = "forward"
            trace.destinations = hops.map(\.requestURI.description)
            trace.failover = failover.sorted()
        }
        return trace
    }

    // MARK: - Deciding

    private func decide(_ request: SIPMessage, requestURI: SIPURI, source: String?, into trace: inout RoutingExplanation,
                        tracing: Bool) -> RouteChoice? {
        let tables = self.tables
        guard !tables.dialplan.isEmpty else { return nil }
        var user = requestURI.unescapedUser ?? ""
        var headers: [(SIPHeaderName, String)] = []
        var action: DialplanRule.Action?
        var matched = false
        var isupEdits: [DialplanRule.ISUPEdit] = []
        // Read once, and only when a rule asks: most requests carry no ISUP.
        var isupFields: [(name: String, value: String)]?
        for (index, rule) in tables.dialplan.enumerated() {
            guard let rewritten = rule.apply(to: user) else { continue }
            if let condition = rule.condition, holds(condition, request: request, user: user, source: source) != condition.present {
                if tracing { trace.steps.append("rule \(index) (\(rule.name)) matched \(user) but its table condition does not hold") }
                continue
            }
            if !rule.isupConditions.isEmpty {
                if isupFields == nil { isupFields = request.isupMessage?.fields ?? [] }
                let fields = isupFields ?? []
                if let failed = rule.isupConditions.first(where: { !$0.holds(fields) }) {
                    if tracing {
                        trace.steps.append("rule \(index) (\(rule.name)) matched \(user) but ISUP \(failed.field) does not match "
                                           + failed.pattern.pattern + (fields.isEmpty ? " (the request carries no ISUP)" : ""))
                    }
                    continue
                }
            }
            isupEdits += rule.isupEdits
            matched = true
            if tracing {
                trace.matchedRules.append(rule.name)
                trace.steps.append("rule \(index) (\(rule.name)) matched \(user)" + (rewritten != user ? ", rewritten to \(rewritten)" : ""))
                for edit in rule.isupEdits { trace.steps.append("rule \(index) (\(rule.name)) sets the ISUP \(edit.description)") }
            }
            if let store = rule.store {
                if tracing {
                    trace.steps.append("rule \(index) (\(rule.name)) would store into table \(store.table)")
                } else if let key = value(of: store.key, request: request, user: user, source: source) {
                    cache.set(store.table, key, store.value.replacingOccurrences(of: "$user", with: rewritten))
                }
            }
            user = rewritten
            headers += rule.addHeaders
            if case .continue = rule.action { continue }
            action = rule.action
            break
        }
        guard matched else { return nil }
        var uri = requestURI
        uri.user = user
        if tracing { trace.requestURI = uri.description }
        var choice: RouteChoice
        switch action ?? .local {
        case .continue, .local:
            choice = RouteChoice(action: .local(uri), addedHeaders: headers)
        case .reject(let code, let reason):
            choice = RouteChoice(action: .reject(SIPStatus(code, reason)), addedHeaders: headers)
        case .uri(let target):
            var next = target
            if next.user == nil { next.user = user }
            choice = RouteChoice(action: .forward([RouteDestination(requestURI: next)], failover: [408, 500, 502, 503, 504]),
                                 addedHeaders: headers)
        case .dispatcher(let name):
            guard let set = tables.dispatcherSets[name] else {
                if tracing { trace.steps.append("dispatcher set \(name) does not exist") }
                choice = RouteChoice(action: .reject(SIPStatus(500, "Unknown Dispatcher Set")), addedHeaders: headers)
                break
            }
            let ordered = order(set, request: request)
            if tracing {
                trace.steps.append("dispatcher set \(name), \(set.algorithm.rawValue): \(ordered.count) of \(set.destinations.count) destinations up")
            }
            let hops = ordered.map { destination -> RouteDestination in
                var next = destination.uri
                next.user = user
                let key = destination.key
                return RouteDestination(requestURI: next, started: { [destinations] in destinations.started(key) },
                                        outcome: { [destinations] _ in destinations.ended(key) })
            }
            choice = hops.isEmpty ? RouteChoice(action: .reject(SIPStatus(503, "No Destination Available")), addedHeaders: headers)
                : RouteChoice(action: .forward(hops, failover: set.failoverCodes), addedHeaders: headers)
        case .lcr:
            choice = leastCost(user: user, tables: tables, headers: headers, trace: &trace, tracing: tracing)
        }
        if !isupEdits.isEmpty {
            let finalUser = user
            choice.edit = { [isupEdits] message in
                guard var isup = message.isupMessage else { return }
                for edit in isupEdits { edit.apply(to: &isup, user: finalUser) }
                message.setISUPMessage(isup)
            }
        }
        if case .reject = choice.action { refused.increment() } else { routed.increment() }
        return choice
    }

    private func leastCost(user: String, tables: RoutingTables, headers: [(SIPHeaderName, String)],
                           trace: inout RoutingExplanation, tracing: Bool) -> RouteChoice {
        guard let lcr = tables.lcr else {
            return RouteChoice(action: .reject(SIPStatus(500, "No Least-Cost Routes")), addedHeaders: headers)
        }
        let number = LeastCostRouting.normalised(user)
        var parameters = ""
        var routingKey = number
        if let portability = tables.portability {
            // RFC 4694: npdi says the dip was made; rn, when the number was ported, where it lives now.
            if let rn = portability.routingNumber(for: number) {
                parameters = ";rn=" + rn + ";npdi"
                routingKey = LeastCostRouting.normalised(rn)
                if tracing { trace.steps.append("number portability: \(number) is ported, routing number \(rn)") }
            } else {
                parameters = ";npdi"
                if tracing { trace.steps.append("number portability: \(number) is not ported") }
            }
        }
        guard let (prefix, choices) = lcr.match(routingKey) else {
            if tracing { trace.steps.append("least-cost routing: no prefix of \(routingKey)") }
            return RouteChoice(action: .reject(SIPStatus(404, "No Route To Number")), addedHeaders: headers)
        }
        let ordered = Self.weightedOrder(choices.filter { lcr.gateways[$0.gateway] != nil }, priority: \.priority, weight: \.weight)
        if tracing { trace.steps.append("least-cost routing: prefix \"\(prefix)\" → \(ordered.map(\.gateway).joined(separator: ", "))") }
        let hops = ordered.compactMap { choice -> RouteDestination? in
            guard let gateway = lcr.gateways[choice.gateway] else { return nil }
            return RouteDestination(requestURI: gateway.requestURI(for: number, parameters: parameters))
        }
        return RouteChoice(action: .forward(hops, failover: lcr.failoverCodes), addedHeaders: headers)
    }

    private func holds(_ condition: DialplanRule.TableCondition, request: SIPMessage, user: String, source: String?) -> Bool {
        guard let key = value(of: condition.key, request: request, user: user, source: source) else { return false }
        return cache.get(condition.table, key) != nil
    }

    private func value(of key: DialplanRule.TableCondition.Key, request: SIPMessage, user: String, source: String?) -> String? {
        switch key {
        case .fromUser: ((try? request.from()) ?? nil)?.uri.unescapedUser
        case .toUser: ((try? request.to()) ?? nil)?.uri.unescapedUser
        case .requestUser: user
        case .source: source
        }
    }

    // MARK: - Ordering

    /// The set's destinations that are up, in the order they are tried: by priority, and within a
    /// priority by the set's algorithm.
    func order(_ set: DispatcherSet, request: SIPMessage) -> [DispatcherSet.Destination] {
        let down = destinations.downKeys
        let up = set.destinations.filter { !down.contains($0.key) }
        guard !up.isEmpty else { return [] }
        let groups = Dictionary(grouping: up, by: \.priority).sorted { $0.key < $1.key }.map(\.value)
        return groups.flatMap { group -> [DispatcherSet.Destination] in
            switch set.algorithm {
            case .weighted:
                return Self.weightedOrder(group, priority: \.priority, weight: \.weight)
            case .roundRobin:
                return Self.rotated(group, by: destinations.nextCursor(set.name + "|" + String(group[0].priority), count: group.count))
            case .hashCallID:
                return Self.rotated(group, by: Int(fnv1a(request.callID ?? "") % UInt64(group.count)))
            case .hashFromUser:
                return Self.rotated(group, by: Int(fnv1a(((try? request.from()) ?? nil)?.uri.user ?? "") % UInt64(group.count)))
            case .hashToUser:
                return Self.rotated(group, by: Int(fnv1a(((try? request.to()) ?? nil)?.uri.user ?? "") % UInt64(group.count)))
            case .leastLoaded:
                return group.enumerated().sorted { lhs, rhs in
                    let (a, b) = (destinations.active(lhs.element.key), destinations.active(rhs.element.key))
                    return a != b ? a < b : lhs.offset < rhs.offset
                }.map(\.element)
            }
        }
    }

    static func rotated<T>(_ items: [T], by start: Int) -> [T] {
        guard !items.isEmpty else { return items }
        let start = start % items.count
        return Array(items[start...] + items[..<start])
    }

    /// Lower priority first; within a priority a weighted random order (each next pick in proportion
    /// to weight among those left; weight 0 only after all others).
    static func weightedOrder<T>(_ items: [T], priority: KeyPath<T, Int>, weight: KeyPath<T, Int>) -> [T] {
        let groups = Dictionary(grouping: items, by: { $0[keyPath: priority] }).sorted { $0.key < $1.key }.map(\.value)
        var generator = SystemRandomNumberGenerator()
        return groups.flatMap { group -> [T] in
            var left = group
            var out: [T] = []
            while !left.isEmpty {
                let total = left.reduce(0) { $0 + $1[keyPath: weight] }
                guard total > 0 else {
                    out += left
                    break
                }
                var pick = Int.random(in: 0..<total, using: &generator)
                let index = left.firstIndex { item in
                    pick -= item[keyPath: weight]
                    return pick < 0
                } ?? 0
                out.append(left.remove(at: index))
            }
            return out
        }
    }
}

/// The steps behind a routing decision (the management API's `routing.explain`).
public struct RoutingExplanation: Sendable {
    public var steps: [String] = []
    public var matchedRules: [String] = []
    /// `default` (the proxy's own rules), `local`, `forward` or `reject`.
    public var decision = ""
    public var requestURI: String?
    public var destinations: [String] = []
    public var failover: [Int] = []
    public var status: Int?
    public var reason: String?
    public var addedHeaders: [String] = []
}
