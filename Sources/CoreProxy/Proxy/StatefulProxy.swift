public import NIOCore
import NIOConcurrencyHelpers
public import Logging
public import SIP
import Metrics

/// A feature that takes over requests for a local user that cannot be delivered now (the user has
/// no binding, or every branch failed with 408, 480 or 503): offline messaging stores them.
public protocol UndeliverableRequestHandler: Sendable {
    /// - Parameters:
    ///   - status: the best final status the branches gave; nil when there was no binding at all.
    ///   - devicesWoken: push notifications already went to the user's sleeping devices for this request.
    /// - Returns: true when the handler answers the transaction (now or later); false leaves the
    ///   proxy's own answer (404, or the best response).
    func undeliverable(_ transaction: ServerTransaction, request: SIPMessage, aor: String, status: Int?, devicesWoken: Bool) -> Bool
}

/// The stateful proxy and redirect server (RFC 3261 §16, §8.3): request targets from the location
/// service, forking, Record-Route, loose routing, CANCEL, best-response selection, and the
/// CANCEL-before-INVITE race.
public final class StatefulProxy: LocationObserver, Sendable {
    public struct Configuration: Sendable {
        /// Add Record-Route so in-dialog requests come through Tern (default true).
        public var recordRoute: Bool
        /// Answer 302 with the contacts instead of forwarding (default false).
        public var redirect: Bool
        /// Domains answered in redirect mode even when ``redirect`` is off (default none).
        public var redirectDomains: [String]
        /// Where requests for domains Tern does not serve go; nil refuses them with 403 (default nil).
        public var outboundProxy: SIPURI?
        /// Remove a binding whose target fails at send time or never answers (default true).
        public var removeDeadBindings: Bool
        /// How long a CANCEL without its INVITE is remembered (default 32 s).
        public var cancelMemory: TimeAmount
        /// Timer C (RFC 3261 §16.6 step 11): an INVITE branch that rings without a final answer this
        /// long after its last provisional response is cancelled and counts as 408 (default 181 s: RFC 3261 wants more than 3 minutes).
        public var timerC: TimeAmount
        /// Methods sent only to the device the user registered from last instead of to every device
        /// (default none; e.g. MESSAGE, so a text reaches the phone in use and not every tablet).
        public var newestDeviceOnly: Set<SIPMethod>
        /// How long a request waits for a sleeping device to register again (Kamailio's tsilo,
        /// RFC 8599 §5.6.2); zero turns waiting off (default 25 s, which also answers a waiting
        /// MESSAGE before its sender's Timer F at 32 s).
        public var pendingWait: TimeAmount = .seconds(25)
        /// Methods that wait (default INVITE and MESSAGE).
        public var pendingMethods: Set<SIPMethod> = [.invite, .message]
        /// Wait also for a user with no binding at all, for a device that registers late (default false).
        public var waitForUnregistered = false
        /// Push every push-capable device and reach it only after it registers again, as RFC 8599
        /// describes; by default only a device whose connection is gone is pushed, and one with an
        /// open flow is reached at once (default false).
        public var pushAlways = false

        public init(recordRoute: Bool = true, redirect: Bool = false, redirectDomains: [String] = [],
                    outboundProxy: SIPURI? = nil, removeDeadBindings: Bool = true, cancelMemory: TimeAmount = .seconds(32),
                    timerC: TimeAmount = .seconds(181), newestDeviceOnly: Set<SIPMethod> = []) {
            self.recordRoute = recordRoute
            self.redirect = redirect
            self.redirectDomains = redirectDomains
            self.outboundProxy = outboundProxy
            self.removeDeadBindings = removeDeadBindings
            self.cancelMemory = cancelMemory
            self.timerC = timerC
            self.newestDeviceOnly = newestDeviceOnly
        }
    }

    /// Every branch Tern puts in a Via starts with this, followed by the loop hash (RFC 3261 §16.6 step 8).
    static let branchPrefix = "z9hG4bKtn"

    public let configuration: Configuration
    let transactions: TransactionLayer

    /// The transaction layer's timer wheels, for other modules' timers that a tick's precision
    /// serves (NOTIFY throttling): cheaper than NIO scheduled tasks by the thousand.
    public var timerWheels: TimerWheels { transactions.wheels }
    let transport: TransportLayer
    let location: LocationService
    let identity: LocalIdentity
    private let logger: Logger
    private let policyBox = NIOLockedValueBox<(any RegistrationPolicy)?>(nil)
    private let trustBox = NIOLockedValueBox<[any TrustPolicy]>([])
    private let serviceRoutingBox = NIOLockedValueBox<(any ApplicationServerRouting)?>(nil)
    private let contexts = NIOLockedValueBox<[TransactionKey: ProxyContext]>([:])
    private let earlyCancels = NIOLockedValueBox<[TransactionKey: NIODeadline]>([:])
    private let deadTargets = Counter(label: "tern.proxy.dead_targets")
    private let forwarded = Counter(label: "tern.proxy.requests_forwarded")
    private let callObservers = NIOLockedValueBox<[any CallObserver]>([])
    private let undeliverableHandlers = NIOLockedValueBox<[SIPMethod: any UndeliverableRequestHandler]>([:])
    /// Requests waiting for a device of their user to register, by AOR.
    private let waiting = NIOLockedValueBox<[String: [ProxyContext]]>([:])
    private let pushServiceBox = NIOLockedValueBox<PushService?>(nil)
    private let pushWakeTableBox = NIOLockedValueBox<PushWakeTable?>(nil)
    private let routerBox = NIOLockedValueBox<(any RequestRouter)?>(nil)
    private let appended = Counter(label: "tern.proxy.pending_branches_added")
    private let waited = Counter(label: "tern.proxy.requests_waiting")

    public init(configuration: Configuration, transactions: TransactionLayer, transport: TransportLayer,
                location: LocationService, identity: LocalIdentity, logger: Logger) {
        self.configuration = configuration
        self.transactions = transactions
        self.transport = transport
        self.location = location
        self.identity = identity
        self.logger = logger
    }

    /// Wakes push-capable devices that requests wait for.
    public func setPushService(_ service: PushService) {
        pushServiceBox.withLockedValue { $0 = service }
    }

    public var pushService: PushService? { pushServiceBox.withLockedValue { $0 } }

    /// Maps the identities a request may name (a tel URI, another identity of the user's set) to the
    /// AOR that holds the bindings; set with the registrar's.
    public func setRegistrationPolicy(_ policy: any RegistrationPolicy) {
        policyBox.withLockedValue { $0 = policy }
    }

    /// Lets the trust policies edit a response before it goes upstream.
    func answering(_ response: inout SIPMessage, to request: SIPMessage) {
        for policy in trustBox.withLockedValue({ $0 }) { policy.answering(&response, to: request) }
    }

    /// Sends initial requests through application servers first (IMS initial filter criteria).
    public func setApplicationServerRouting(_ routing: any ApplicationServerRouting) {
        serviceRoutingBox.withLockedValue { $0 = routing }
    }

    /// Sends a request Tern originates (a third-party REGISTER) to a URI, with Tern's Via.
    public func sendRequest(_ request: SIPMessage, to uri: SIPURI, on loop: any EventLoop,
                            handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) {
        let target = ProxyTarget(uri: uri, flow: nil, transport: destinationTransport(uri), routes: [], q: 1, binding: nil)
        _ = try send(originated(request, to: target), to: target, on: loop, handler: handler)
    }

    /// Edits requests at the edge of the trust domain (IMS: P-Asserted-Identity, P-Charging-Vector).
    public func addTrustPolicy(_ policy: any TrustPolicy) {
        trustBox.withLockedValue { $0.append(policy) }
    }

    /// Routes initial requests the location service does not (dispatcher, least-cost routing, dialplan).
    public func setRouter(_ router: any RequestRouter) {
        routerBox.withLockedValue { $0 = router }
    }

    /// The PURRs the registrar handed out, to wake a device for a request inside a dialog (RFC 8599 §6).
    public func setPushWakeTable(_ table: PushWakeTable) {
        pushWakeTableBox.withLockedValue { $0 = table }
    }

    /// Requests waiting for a device to register now.
    public var waitingRequestCount: Int { waiting.withLockedValue { $0.values.reduce(0) { $0 + $1.count } } }

    /// Adds an observer of the calls this proxy routes.
    public func addCallObserver(_ observer: any CallObserver) {
        callObservers.withLockedValue { $0.append(observer) }
    }

    func reportCall(_ event: CallEvent) {
        for observer in callObservers.withLockedValue({ $0 }) { observer.callEvent(event) }
    }

    /// Whether anyone listens: the event is not even built otherwise.
    var reportsCalls: Bool { !callObservers.withLockedValue { $0.isEmpty } }

    /// Lets a feature take over undeliverable out-of-dialog requests of one method.
    public func setUndeliverableHandler(_ handler: any UndeliverableRequestHandler, for method: SIPMethod) {
        undeliverableHandlers.withLockedValue { $0[method] = handler }
    }

    func undeliverableHandler(for request: SIPMessage) -> (any UndeliverableRequestHandler)? {
        guard let method = request.method, ((try? request.to()) ?? nil)?.tag == nil else { return nil }
        return undeliverableHandlers.withLockedValue { $0[method] }
    }

    /// Sends a request that Tern itself originates (a stored message, a notification) to one
    /// registered device: over its flow when it has one, through its Path, with Tern's Via.
    ///
    /// - Parameter handler: receives the responses, a timeout or a transport error. A device that
    ///   cannot be reached at send time or never answers has its binding removed, as for proxied requests.
    public func originate(_ request: SIPMessage, to binding: Binding, on loop: any EventLoop,
                          handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) {
        let target = ProxyTarget(binding)
        let out = originated(request, to: target)
        _ = try send(out, to: target, on: loop) { [self] event in
            switch event {
            case .timeout: targetIsDead(target, reason: "no reply")
            case .transportError(let error): targetIsDead(target, reason: "\(error)")
            case .response: break
            }
            handler(event)
        }
    }

    /// Sends an OPTIONS probe to a registered device (over its flow) or to a URI, and leaves any
    /// binding alone whatever happens: the caller counts misses (keep-alives, dispatcher probes).
    public func probe(_ uri: SIPURI, device binding: Binding? = nil, on loop: any EventLoop,
                      handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) {
        let target = binding.map(ProxyTarget.init)
            ?? ProxyTarget(uri: uri, flow: nil, transport: destinationTransport(uri), routes: [], q: 1, binding: nil)
        let domain = binding.map { $0.aor.split(separator: "@").last.map(String.init) ?? "invalid" } ?? uri.host
        let request = SIPMessage.request(method: .options, uri: uri, headers: [
            (.from, "<sip:probe@" + domain + ">;tag=" + SIPIdentifiers.tag()),
            (.to, "<" + (binding?.aor ?? uri.description) + ">"),
            (.callID, SIPIdentifiers.callID()),
            (.cseq, "1 OPTIONS"),
            (.maxForwards, "70"),
        ])
        _ = try send(originated(request, to: target), to: target, on: loop, handler: handler)
    }

    /// Sends a request Tern originates inside a dialog it holds as a UAS (a NOTIFY for a
    /// subscription): to the remote target through the dialog's route set (RFC 3261 §12.2.1.1,
    /// loose routing), over `flow` when the peer's requests came over one (RFC 5626 §5.3).
    public func originateInDialog(_ request: SIPMessage, remoteTarget: SIPURI, routeSet: [String],
                                  flow: (flow: SIPFlow, transport: SIPTransportProtocol)?, on loop: any EventLoop,
                                  handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) {
        let firstHop = routeSet.first.flatMap { try? SIPAddress(parsing: $0).uri } ?? remoteTarget
        let transport = flow?.transport ?? SIPDestination(uri: firstHop).transport
        let target = ProxyTarget(uri: remoteTarget, flow: flow?.flow, transport: transport, routes: routeSet, q: 1, binding: nil)
        _ = try send(originated(request, to: target), to: target, on: loop, handler: handler)
    }

    /// A request Tern itself sends to `target`: its URI, Max-Forwards when missing, the target's
    /// route set preloaded, and Tern's Via with a fresh branch.
    private func originated(_ request: SIPMessage, to target: ProxyTarget) -> SIPMessage {
        var out = request
        out.setRequestURI(target.uri)
        if !out.contains(.maxForwards) { out.setHeader(.maxForwards, "70") }
        for route in target.routes.reversed() { out.prependHeader(.route, route) }
        let branch = SIPIdentifiers.joined(Self.branchPrefix, hex: RandomPool.next())
        out.prependVia(ownVia(transport: target.transport, ipv6: isIPv6(target), branch: branch), cseq: (try? request.cseq()) ?? nil)
        return out
    }

    /// Tern's Via for a request it sends over `transport`, asking for rport (RFC 3581).
    private func ownVia(transport: SIPTransportProtocol, ipv6: Bool, branch: String) -> SIPVia {
        let listener = identity.listener(for: transport, ipv6: ipv6)
        var via = SIPVia(transport: transport.viaToken, host: listener.map(\.viaHost) ?? "127.0.0.1",
                         port: listener.map { $0.port }, branch: branch)
        via.parameters.append("rport", nil)
        return via
    }

    // MARK: - Routing a new request (RFC 3261 §16.3–§16.5)

    /// Routes a request that no feature answers. `routedToUs` says that Tern's own Route was removed
    /// from it (an in-dialog or preloaded request), so it is not subject to the domain check.
    func route(_ transaction: ServerTransaction, request: SIPMessage, routedToUs: Bool, ownRoutes: [SIPURI] = []) {
        var request = request
        for policy in trustBox.withLockedValue({ $0 }) {
            if let refusal = policy.arriving(&request, from: transaction.inbound.source, initial: ((try? request.to()) ?? nil)?.tag == nil) {
                transaction.respond(refusal)
                return
            }
        }
        if isLoop(request) {
            transaction.respond(SIPStatus(482))
            return
        }
        if request.method == .invite, rememberedCancel(for: transaction.key) {
            // The CANCEL came first (a race on lossy mobile links): the INVITE ends here.
            transaction.respond(SIPStatus(487))
            return
        }
        guard let requestURI = try? request.requestURI() else {
            transaction.respond(SIPStatus(400, "Bad Request-URI"))
            return
        }
        // Remaining Route headers decide (loose routing, §16.4/§16.6 step 7).
        if let firstRoute = (try? request.routes())?.first {
            start(transaction, request: request, levels: [[ProxyTarget(uri: firstRoute.uri, flow: nil, transport: destinationTransport(firstRoute.uri),
                                                     routes: [], q: 1, binding: nil)]])
            return
        }
        let initial = ((try? request.to()) ?? nil)?.tag == nil
        // An application server the request must visit first (IMS initial filter criteria).
        if initial, let servers = serviceRoutingBox.withLockedValue({ $0 }),
           let visit = servers.nextApplicationServer(for: request, source: transaction.inbound.source, ownRoutes: ownRoutes) {
            var toServer = request
            for (name, value) in visit.addedHeaders { toServer.setHeader(name, value) }
            for route in visit.routes.reversed() { toServer.prependHeader(.route, route) }
            guard let first = (try? toServer.routes())?.first else { return }
            start(transaction, request: toServer, levels: [[ProxyTarget(uri: first.uri, flow: nil, transport: destinationTransport(first.uri),
                                                                          routes: [], q: 1, binding: nil)]])
            return
        }
        if initial, let policy = policyBox.withLockedValue({ $0 }), let aor = policy.locationAOR(for: requestURI) {
            // A user's identity (RFC 7315 §4.2): the devices learn which one was called.
            var retargeted = request
            if !retargeted.contains(.pCalledPartyID) { retargeted.appendHeader(.pCalledPartyID, "<" + requestURI.description + ">") }
            routeToLocalUser(transaction, request: retargeted, requestURI: requestURI, aor: aor)
            return
        }
        if initial, let router = routerBox.withLockedValue({ $0 }),
           let choice = router.route(request, requestURI: requestURI, source: transaction.inbound.source.peerIP) {
            follow(choice, transaction: transaction, request: request)
            return
        }
        if initial, let policy = policyBox.withLockedValue({ $0 }), let breakout = policy.breakout(for: requestURI) {
            switch breakout {
            case .notFound:
                transaction.respond(SIPStatus(404, "Unknown Number"))
            case .route(let through):
                start(transaction, request: request, levels: [[ProxyTarget(uri: requestURI, flow: nil, transport: destinationTransport(through),
                                                                            routes: ["<" + through.description + ";lr>"], q: 1, binding: nil)]])
            }
            return
        }
        let local = (requestURI.scheme == .sip || requestURI.scheme == .sips) && identity.servesDomain(requestURI.host)
        if !local || (routedToUs && !identity.isSelf(requestURI) && !isRegisteredDomain(requestURI)) {
            guard routedToUs || configuration.outboundProxy != nil else {
                // Tern is never an open relay.
                transaction.respond(SIPStatus(403, "Relaying Denied"))
                return
            }
            if routedToUs, wakeForDialog(transaction, request: request, requestURI: requestURI) { return }
            // A registered device's contact is reached over the flow it keeps open (RFC 5626 §5.3).
            var target = ProxyTarget(uri: requestURI, flow: routedToUs ? registeredFlow(for: requestURI) : nil,
                                     transport: destinationTransport(requestURI), routes: [], q: 1, binding: nil)
            if !routedToUs, let outbound = configuration.outboundProxy {
                target.routes = ["<" + outbound.description + ";lr>"]
            }
            start(transaction, request: request, levels: [[target]])
            return
        }
        routeToLocalUser(transaction, request: request, requestURI: requestURI)
    }

    /// What a router decided: a refusal, a local user, or next hops tried in order.
    private func follow(_ choice: RouteChoice, transaction: ServerTransaction, request: SIPMessage) {
        var request = request
        for (name, value) in choice.addedHeaders { request.appendHeader(name, value) }
        choice.edit?(&request)
        switch choice.action {
        case .reject(let status):
            transaction.respond(status)
        case .local(let uri):
            request.setRequestURI(uri)
            routeToLocalUser(transaction, request: request, requestURI: uri)
        case .forward(let destinations, let failover):
            guard !destinations.isEmpty else {
                transaction.respond(SIPStatus(503, "No Route Available"))
                return
            }
            let levels = destinations.map { destination -> [ProxyTarget] in
                var target = ProxyTarget(uri: destination.requestURI, flow: nil, transport: destinationTransport(destination.requestURI),
                                         routes: [], q: 1, binding: nil)
                target.outcome = destination.outcome
                target.started = destination.started
                return [target]
            }
            start(transaction, request: request, levels: levels, failover: failover)
        }
    }

    /// A request for a user of a served domain: the location service's targets, or another node's.
    /// `aor` is where the bindings live when a policy mapped the Request-URI to it.
    private func routeToLocalUser(_ transaction: ServerTransaction, request: SIPMessage, requestURI: SIPURI, aor mapped: String? = nil) {
        let aor = mapped ?? AddressOfRecord.canonical(requestURI)
        let targets = locate(requestURI, aor: aor, method: request.method)
        if targets.isEmpty, let shared = location.sharedStore, let aor {
            // Not registered here: another node sharing the location table may hold the user.
            shared.bindings(for: aor, validAt: location.clock.nowMilliseconds(), on: transaction.eventLoop)
                .whenComplete { [self] result in
                    switch result {
                    case .success(let bindings):
                        deliver(transaction, request: request, requestURI: requestURI,
                                targets: levels(bindings.map(foreignTarget)), aor: aor)
                    case .failure(let error):
                        logger.error("shared location lookup failed", metadata: ["aor": "\(aor)", "error": "\(error)"])
                        transaction.respond(SIPStatus(503, "Location Store Unavailable"), headers: [(.retryAfter, "5")])
                    }
                }
            return
        }
        deliver(transaction, request: request, requestURI: requestURI, targets: targets, aor: aor)
    }

    /// Answers from the targets found: 404 when none (unless a feature takes the request over),
    /// 302 in redirect mode, otherwise forwards.
    private func deliver(_ transaction: ServerTransaction, request: SIPMessage, requestURI: SIPURI, targets: [[ProxyTarget]],
                         aor: String?) {
        var targets = targets
        var sleepers: [ProxyTarget] = []
        let mayWait = aor != nil && canWait(request)
        if mayWait {
            (targets, sleepers) = separateSleepers(targets)
        }
        if mayWait, let aor, !sleepers.isEmpty || (targets.isEmpty && configuration.waitForUnregistered) {
            startWaiting(transaction, request: request, levels: targets, sleepers: sleepers, aor: aor)
            return
        }
        guard !targets.isEmpty else {
            if let aor, let handler = undeliverableHandler(for: request),
               handler.undeliverable(transaction, request: request, aor: aor, status: nil, devicesWoken: false) {
                return
            }
            // A call to a user with no device registered: unanswered at once (a missed call).
            if reportsCalls, CallEvent.isInitialInvite(request) {
                reportCall(CallEvent(.failed, request: request, status: 404))
            }
            transaction.respond(SIPStatus(404))
            return
        }
        if configuration.redirect || configuration.redirectDomains.contains(where: { $0.caseInsensitiveEquals(requestURI.host) }) {
            var headers: [(SIPHeaderName, String)] = []
            for target in targets.flatMap({ $0 }) {
                var parameters = SIPParameters()
                parameters.set("q", String(target.q))
                headers.append((.contact, SIPAddress(uri: target.uri, parameters: parameters).description))
            }
            transaction.respond(SIPStatus(302), headers: headers)
            return
        }
        start(transaction, request: request, levels: targets, aor: aor)
    }

    // MARK: - Waiting for devices (tsilo, RFC 8599)

    private func canWait(_ request: SIPMessage) -> Bool {
        guard configuration.pendingWait > .zero, let method = request.method, configuration.pendingMethods.contains(method) else {
            return false
        }
        return ((try? request.to()) ?? nil)?.tag == nil
    }

    /// Splits out the devices that must be woken by a push before they can be reached: those whose
    /// connection is gone, or every push-capable one with ``Configuration/pushAlways``.
    private func separateSleepers(_ levels: [[ProxyTarget]]) -> ([[ProxyTarget]], [ProxyTarget]) {
        guard pushService != nil, levels.contains(where: { $0.contains { $0.push != nil } }) else { return (levels, []) }
        var sleepers: [ProxyTarget] = []
        var awake: [[ProxyTarget]] = []
        for level in levels {
            var kept: [ProxyTarget] = []
            for target in level {
                if target.push != nil, configuration.pushAlways || !flowIsOpen(target) {
                    sleepers.append(target)
                } else {
                    kept.append(target)
                }
            }
            if !kept.isEmpty { awake.append(kept) }
        }
        return (awake, sleepers)
    }

    private func flowIsOpen(_ target: ProxyTarget) -> Bool {
        switch target.flow {
        case .connection(let id): return transport.connection(id)?.channel.isActive == true
        case .datagram: return true
        // A connection binding without its flow: restored after a restart, the connection died with the old process.
        case nil: return !(target.transport.isReliable && target.binding != nil)
        }
    }

    /// Forwards to the devices that are awake, wakes the others, and keeps the request until one of
    /// them registers (a branch is added then), a device answers, or time runs out (480).
    private func startWaiting(_ transaction: ServerTransaction, request: SIPMessage, levels: [[ProxyTarget]],
                              sleepers: [ProxyTarget], aor: String) {
        let context = ProxyContext(server: transaction, request: request, proxy: self, levels: levels, localAOR: aor)
        var wait = configuration.pendingWait
        if request.method != .invite { wait = min(wait, .seconds(25)) }
        context.wait(for: wait)
        waited.increment()
        waiting.withLockedValue { $0[aor, default: []].append(context) }
        if transaction.request.method == .invite {
            contexts.withLockedValue { $0[transaction.key] = context }
        }
        if reportsCalls, context.isInitialInvite { reportCall(CallEvent(.started, request: request)) }
        if let push = pushService {
            let reason: PushReason = request.method == .invite ? .call : .message
            let from = request.firstValue(.from) ?? ""
            for sleeper in sleepers {
                guard let contact = sleeper.push else { continue }
                context.pushSent()
                push.wake(aor: aor, contact: contact, reason: reason, callID: request.callID ?? "", from: from) { delivered in
                    if !delivered { context.pushFailed() }
                }
            }
        }
        context.start()
    }

    /// A request inside a dialog for a device that sleeps (RFC 8599 §6.2.3): its Request-URI carries
    /// the device's PURR and the device's connection is gone. The device is pushed and the request
    /// waits for it to register; then it goes to the same Request-URI over the new flow.
    private func wakeForDialog(_ transaction: ServerTransaction, request: SIPMessage, requestURI: SIPURI) -> Bool {
        guard configuration.pendingWait > .zero, case .some(.some(let purr)) = requestURI.parameters["pn-purr"], let push = pushService,
              let owner = pushWakeTableBox.withLockedValue({ $0 })?.binding(for: purr),
              let binding = location.bindings(for: owner.aor).first(where: { $0.key == owner.key }),
              let contact = binding.push, !flowIsOpen(ProxyTarget(binding))
        else { return false }
        let transport = destinationTransport(requestURI)
        let context = ProxyContext(server: transaction, request: request, proxy: self, levels: [], localAOR: owner.aor) { woken in
            guard woken.key == owner.key else { return nil }
            return ProxyTarget(uri: requestURI, flow: woken.routesOverFlow ? woken.flow : nil,
                               transport: woken.routesOverFlow ? woken.transport : transport, routes: woken.path, q: 1,
                               binding: (woken.aor, woken.key))
        }
        context.wait(for: request.method == .invite ? configuration.pendingWait : min(configuration.pendingWait, .seconds(25)))
        waited.increment()
        waiting.withLockedValue { $0[owner.aor, default: []].append(context) }
        if transaction.request.method == .invite {
            contexts.withLockedValue { $0[transaction.key] = context }
        }
        context.pushSent()
        push.wake(aor: owner.aor, contact: contact, reason: request.method == .invite ? .call : .message,
                  callID: request.callID ?? "", from: request.firstValue(.from) ?? "") { delivered in
            if !delivered { context.pushFailed() }
        }
        context.start()
        return true
    }

    func stoppedWaiting(_ context: ProxyContext) {
        guard let aor = context.localAOR else { return }
        waiting.withLockedValue { table in
            // Most requests never waited: a lookup alone, since a mutating access to a missing
            // key still allocated (three times per proxied request).
            guard var contexts = table[aor] else { return }
            contexts.removeAll { $0 === context }
            table[aor] = contexts.isEmpty ? nil : contexts
        }
    }

    /// A device registered (or refreshed) while requests for its user wait: each gets a branch to it
    /// at once (Kamailio's ts_append).
    public func locationChanged(_ event: BindingEvent) {
        guard event.kind == .added || event.kind == .refreshed else { return }
        let contexts = waiting.withLockedValue { $0[event.binding.aor] ?? [] }
        guard !contexts.isEmpty else { return }
        for context in contexts where context.isWaiting {
            guard let target = context.wakeTarget(event.binding) else { continue }
            appended.increment()
            // The registrar answers its REGISTER first; the branch follows on the request's own loop.
            context.server.eventLoop.execute { context.append(target) }
        }
    }

    private func isRegisteredDomain(_ uri: SIPURI) -> Bool {
        guard let aor = AddressOfRecord.canonical(uri) else { return false }
        return !location.bindings(for: aor).isEmpty
    }

    /// The bindings of the AOR grouped by q, highest first; a GRUU selects only its device (RFC 5627 §5.1).
    private func locate(_ uri: SIPURI, aor mapped: String? = nil, method: SIPMethod?) -> [[ProxyTarget]] {
        guard let aor = mapped ?? AddressOfRecord.canonical(uri) else { return [] }
        var bindings = location.bindings(for: aor)
        if let method, configuration.newestDeviceOnly.contains(method),
           let newest = bindings.max(by: { ($0.registeredAt, $0.expiresAt) < ($1.registeredAt, $1.expiresAt) }) {
            bindings = [newest]
        }
        if case .some(let gr) = uri.parameters["gr"] {
            if let instance = gr {
                bindings = bindings.filter { $0.instanceID == percentDecoded(instance) }
            } else if let user = uri.user {
                bindings = bindings.filter { $0.temporaryGRUUs.contains(user) }
                if bindings.isEmpty {
                    bindings = location.allBindings.filter { $0.temporaryGRUUs.contains(user) }
                }
            }
            // One device: its most recent flow.
            if let newest = bindings.max(by: { $0.expiresAt < $1.expiresAt }) { bindings = [newest] }
        }
        return levels(bindings.map(ProxyTarget.init))
    }

    /// Targets grouped by q, highest first (parallel within a level, sequential across levels).
    private func levels(_ targets: [ProxyTarget]) -> [[ProxyTarget]] {
        // Most users have one device: one level, without a table to group by.
        if targets.count <= 1 { return targets.isEmpty ? [] : [targets] }
        return Dictionary(grouping: targets, by: \.q).sorted { $0.key > $1.key }.map(\.value)
    }

    /// A binding that another node holds. Its connection lives on that node, so a connection
    /// binding is reached at its Contact (or through its Path); a UDP binding that needs its flow
    /// is reached from one of this node's UDP sockets at the address its REGISTER came from.
    private func foreignTarget(_ binding: Binding) -> ProxyTarget {
        var flow: SIPFlow?
        if binding.routesOverFlow, binding.transport == .udp, let source = binding.source,
           let udp = identity.listener(for: .udp, ipv6: source.protocol == .inet6) {
            flow = .datagram(listener: udp.id, remote: source)
        }
        let transport = flow != nil ? SIPTransportProtocol.udp : SIPDestination(uri: binding.contact).transport
        // Not this node's to remove when it fails: its owner sees the dead flow.
        return ProxyTarget(uri: binding.contact, flow: flow, transport: transport, routes: binding.path, q: binding.q, binding: nil)
    }

    private func start(_ transaction: ServerTransaction, request: SIPMessage, levels: [[ProxyTarget]], aor: String? = nil,
                       failover: Set<Int>? = nil) {
        let context = ProxyContext(server: transaction, request: request, proxy: self, levels: levels, localAOR: aor, failover: failover)
        if reportsCalls, request.method == .invite || request.method == .bye {
            if request.method == .bye {
                reportCall(CallEvent(.ended, request: request))
            } else if context.isInitialInvite {
                reportCall(CallEvent(.started, request: request))
            }
        }
        if transaction.request.method == .invite {
            contexts.withLockedValue { $0[transaction.key] = context }
        }
        context.start()
    }

    func contextFinished(_ context: ProxyContext) {
        stoppedWaiting(context)
        contexts.withLockedValue { table in
            if table[context.server.key] === context { table[context.server.key] = nil }
        }
    }

    // MARK: - Forwarding (RFC 3261 §16.6)

    /// The copy of `request` that goes to one target.
    func forwardedRequest(_ request: SIPMessage, to target: ProxyTarget, inbound: InboundMessage) -> SIPMessage {
        var out = request
        // Via, up to two Record-Routes and the target's routes.
        out.reserveHeaderLines(3 + target.routes.count)
        if (try? request.routes())?.first?.uri != target.uri {
            if let text = target.uriText { out.setRequestURI(spelled: text) } else { out.setRequestURI(target.uri) }
        }
        let maxForwards = ((try? request.maxForwards()) ?? nil) ?? 71
        out.setHeader(.maxForwards, String(max(0, maxForwards - 1)))
        for route in target.routes.reversed() { out.prependHeader(.route, route) }
        let outgoingTransport = target.transport
        let outgoingIPv6 = isIPv6(target)
        if configuration.recordRoute, request.method?.formsDialog == true,
           let outgoing = identity.listener(for: outgoingTransport, ipv6: outgoingIPv6) {
            let incoming = identity.boundListeners.first { $0.id == inbound.listener }
            // RFC 3261 §16.6 step 4 with RFC 5658: two entries when transport or address family changes.
            if let incoming, incoming.id != outgoing.id {
                out.prependHeader(.recordRoute, recordRoute(incoming))
            }
            out.prependHeader(.recordRoute, recordRoute(outgoing))
        }
        let branch = SIPIdentifiers.joined(Self.branchPrefix, hex: loopHash(request), RandomPool.next())
        out.prependVia(ownVia(transport: outgoingTransport, ipv6: outgoingIPv6, branch: branch), cseq: (try? request.cseq()) ?? nil)
        return out
    }

    private func recordRoute(_ listener: BoundListener) -> String {
        var uri = "sip:" + LocalIdentity.hostPort(listener)
        if listener.spec.transport != .udp { uri += ";transport=" + listener.spec.transport.rawValue }
        return "<" + uri + ";lr>"
    }

    private func isIPv6(_ target: ProxyTarget) -> Bool {
        if let flow = target.flow, case .datagram(_, let remote) = flow { return remote.protocol == .inet6 }
        return target.uri.host.hasPrefix("[")
    }

    private func destinationTransport(_ uri: SIPURI) -> SIPTransportProtocol {
        SIPDestination(uri: uri).transport
    }

    /// Starts the client transaction of one branch over the target's flow, or toward its first
    /// Route or URI.
    func send(_ request: SIPMessage, to target: ProxyTarget, on loop: any EventLoop,
              handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) -> ClientTransaction {
        forwarded.increment()
        var request = request
        if request.method != .cancel, request.method != .ack {
            for policy in trustBox.withLockedValue({ $0 }) { policy.leaving(&request, to: target.tuningPeer) }
        }
        var options = SIPMessage.SerializationOptions()
        // Building the peer costs a little: only when a rule could match or the device named its media.
        if let tuner = transactions.tuner, !tuner.rules.isEmpty || (tuner.dropUnregisteredMedia && target.mediaTypes != nil),
           request.method != .cancel, request.method != .ack {
            options = tuner.tune(&request, for: target.tuningPeer)
        }
        if let flow = target.flow {
            return try transactions.sendRequest(request, over: flow, reliable: target.transport.isReliable, on: loop,
                                                options: options, handler: handler)
        }
        let routes: [SIPAddress]
        do {
            routes = try request.routes()
        } catch {
            routes = []
        }
        let destination = SIPDestination(uri: routes.first?.uri ?? target.uri)
        return try transactions.sendRequest(request, to: destination, on: loop, options: options, handler: handler)
    }

    /// Sends a CANCEL for a forwarded INVITE over the same path (RFC 3261 §9.1).
    func sendCancel(for invite: SIPMessage, to target: ProxyTarget, on loop: any EventLoop) {
        var headers: [(SIPHeaderName, String)] = []
        if let via = invite.values(.via).first { headers.append((.via, via)) }
        headers.append((.maxForwards, "70"))
        for name in [SIPHeaderName.from, .to, .callID] {
            if let value = invite.firstValue(name) { headers.append((name, value)) }
        }
        let sequence = ((try? invite.cseq()) ?? nil)?.sequence ?? 1
        headers.append((.cseq, String(sequence) + " CANCEL"))
        for route in invite.values(.route) { headers.append((.route, route)) }
        let uri = (try? invite.requestURI()) ?? target.uri
        let cancel = SIPMessage.request(method: .cancel, uri: uri, headers: headers)
        _ = try? send(cancel, to: target, on: loop) { _ in }
    }

    /// A target failed at send time or never answered: the next caller should not be sent there.
    func targetIsDead(_ target: ProxyTarget, reason: String) {
        guard configuration.removeDeadBindings, let binding = target.binding else { return }
        // A device that can be woken is asleep, not gone.
        guard target.push == nil || pushService == nil else { return }
        deadTargets.increment()
        logger.info("removing dead binding", metadata: ["aor": "\(binding.aor)", "reason": "\(reason)"])
        location.remove(aor: binding.aor, key: binding.key)
    }

    // MARK: - CANCEL, ACK, stray responses

    /// Handles a CANCEL: 200 and cancelled branches when its INVITE is being proxied; 481 and a
    /// memory of it when no INVITE is known yet. Returns false when the INVITE is not a proxied one.
    func cancel(_ transaction: ServerTransaction, invite: ServerTransaction?) -> Bool {
        guard let invite else {
            let key = try? TransactionKey.inviteCancelled(by: transaction.request)
            if let key {
                let deadline = NIODeadline.now() + configuration.cancelMemory
                earlyCancels.withLockedValue { table in
                    let now = NIODeadline.now()
                    table = table.filter { $0.value > now }
                    table[key] = deadline
                }
            }
            transaction.respond(SIPStatus(481))
            return true
        }
        guard let context = contexts.withLockedValue({ $0[invite.key] }) else { return false }
        transaction.respond(SIPStatus(200))
        context.cancel()
        return true
    }

    private func rememberedCancel(for key: TransactionKey) -> Bool {
        earlyCancels.withLockedValue { table in
            guard let deadline = table.removeValue(forKey: key) else { return false }
            return deadline > NIODeadline.now()
        }
    }

    /// Forwards an ACK for a 2xx (or any ACK no transaction absorbed) statelessly along its Route or
    /// to its Request-URI (RFC 3261 §16.11).
    func forwardACK(_ ack: SIPMessage, routedToUs: Bool) {
        var message = ack
        guard let uri = try? message.requestURI() else { return }
        let routes = (try? message.routes()) ?? []
        let next = routes.first?.uri ?? uri
        if !routedToUs, !identity.servesDomain(next.host), routes.isEmpty { return }
        let maxForwards = ((try? message.maxForwards()) ?? nil) ?? 71
        guard maxForwards > 0 else { return }
        // Stateless: the branch is a function of the incoming one, so a retransmitted ACK gets the same.
        // Read before the edit below, which drops what validation parsed (the Via would be parsed again).
        let incomingBranch = (try? message.topVia())??.branch ?? ""
        message.setHeader(.maxForwards, String(maxForwards - 1))
        let destination = SIPDestination(uri: next)
        let listener = identity.listener(for: destination.transport, ipv6: next.host.hasPrefix("["))
        let branch = Self.branchPrefix + "ack" + String(fnv1a(incomingBranch), radix: 16)
        message.prependHeader(.via, "SIP/2.0/" + destination.transport.viaToken + " "
                              + (listener.map(LocalIdentity.hostPort) ?? "127.0.0.1") + ";branch=" + branch)
        // Prefer the flow a registered device keeps open.
        if let binding = registeredFlow(for: next) {
            _ = transport.sendUnconfirmed(message.serialized(), over: binding)
        } else {
            transport.sendStatelessly(message.serialized(), to: destination)
        }
    }

    private func registeredFlow(for uri: SIPURI) -> SIPFlow? {
        location.flow(forContact: uri)
    }

    /// A response no client transaction matched (a 2xx retransmitted after the transaction ended):
    /// our Via goes, and it travels to the next Via statelessly (RFC 3261 §16.7, §18.2.2).
    func forwardStrayResponse(_ inbound: InboundMessage) {
        var response = inbound.message
        guard let top = try? response.topVia(), top.branch?.hasPrefix(Self.branchPrefix) == true else { return }
        response.dropFirstValue(.via)
        guard let next = try? response.topVia() else { return }
        let host = next.received ?? next.host.trimmingCharacters(in: "[]")
        let port: Int
        if case .some(.some(let rport)) = next.rport { port = rport } else { port = next.port ?? 5060 }
        let transportKind = SIPTransportProtocol(token: next.transport) ?? .udp
        transport.sendStatelessly(response.serialized(), to: SIPDestination(transport: transportKind, host: host, port: port))
    }

    // MARK: - Loops (RFC 3261 §16.3 step 4)

    /// A request that already carries our Via with the branch hash this request would get has looped.
    private func isLoop(_ request: SIPMessage) -> Bool {
        // Only a request that passed here before can loop: the hash is computed for those alone.
        guard let vias = try? request.vias() else { return false }
        let ours = vias.filter { via in
            via.branch?.hasPrefix(Self.branchPrefix) == true && identity.isOwnAddress(host: via.host, port: via.port)
        }
        guard !ours.isEmpty else { return false }
        let prefix = SIPIdentifiers.joined(Self.branchPrefix, hex: loopHash(request))
        return ours.contains { $0.branch?.hasPrefix(prefix) == true }
    }

    /// Hash of what identifies the request at this hop (Request-URI, tags, Call-ID, CSeq number,
    /// Route, Proxy-Require), without the Via that changes at every hop.
    private func loopHash(_ request: SIPMessage) -> UInt64 {
        var hash = FNV1a()
        hash.add(request.requestURIString ?? "")
        hash.add("|")
        hash.add(((try? request.from()) ?? nil)?.tag ?? "")
        hash.add("|")
        hash.add(((try? request.to()) ?? nil)?.tag ?? "")
        hash.add("|")
        hash.add(request.callID ?? "")
        hash.add("|")
        hash.add(String(((try? request.cseq()) ?? nil)?.sequence ?? 0))
        hash.add("|")
        hash.add(request.values(.route), separator: ",")
        hash.add("|")
        hash.add(request.values(.proxyRequire), separator: ",")
        return hash.value
    }
}

/// FNV-1a fed piece by piece, so a hash of several fields needs no concatenated string.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ text: String) {
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01b3
        }
    }

    mutating func add(_ texts: [String], separator: String) {
        for (index, text) in texts.enumerated() {
            if index > 0 { add(separator) }
            add(text)
        }
    }
}

/// FNV-1a, for hashes that must be the same on every run and every node (branches, dispatcher keys).
public func fnv1a(_ text: String) -> UInt64 {
    var hash = FNV1a()
    hash.add(text)
    return hash.value
}
