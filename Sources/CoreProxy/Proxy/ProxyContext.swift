import Synchronization
import NIOCore
import SIP

/// Where a proxied request goes: a URI and how to reach it (RFC 3261 §16.5).
struct ProxyTarget: Sendable {
    var uri: SIPURI { didSet { uriText = nil } }
    /// ``uri`` spelled out when that was done already (a binding's contact): nil spells it anew.
    var uriText: String? = nil
    /// A known flow to the target (a registered device's connection or NAT binding, RFC 5626 §5.3).
    var flow: SIPFlow?
    var transport: SIPTransportProtocol
    /// Route set to preload (Path of the binding, RFC 3327 §5.3).
    var routes: [String]
    var q: Double
    /// The binding it came from, to drop it when it proves dead.
    var binding: (aor: String, key: String)?
    /// What a registered device told us about itself, for tuning what goes to it.
    var userAgent: String? = nil
    var acceptsGzip = false
    var mediaTypes: Set<String>? = nil
    /// How to wake the device when its flow is gone (RFC 8599).
    var push: PushContact? = nil
    /// Told the final status of the branch to this target (nil: no answer or unreachable).
    var outcome: (@Sendable (Int?) -> Void)? = nil
    var started: (@Sendable () -> Void)? = nil
}

extension ProxyTarget {
    /// A registered device: over its flow when it needs one (RFC 5626 §5.3), else at its Contact;
    /// through its Path (RFC 3327).
    init(_ binding: Binding) {
        // The push parameters are for this server only (RFC 8599 §13), and cost bytes on the way.
        let uri = PushContact.stripped(binding.contact)
        self.init(uri: uri, flow: binding.routesOverFlow ? binding.flow : nil,
                  transport: binding.routesOverFlow ? binding.transport : SIPDestination(uri: binding.contact).transport,
                  routes: binding.path, q: binding.q, binding: (binding.aor, binding.key))
        // `stripped` only removes parameters: as many left means the contact as registered, whose text is kept.
        if uri.parameters.count == binding.contact.parameters.count { uriText = binding.contactText }
        userAgent = binding.userAgent
        acceptsGzip = binding.acceptsGzip
        mediaTypes = binding.registeredMediaTypes
        push = binding.push
    }

    /// The receiver as tuning sees it: the address its flow reaches and the host of its URI.
    var tuningPeer: TuningPeer {
        var addresses = [uri.host]
        if case .datagram(_, let remote) = flow, let ip = remote.ipAddress { addresses.insert(ip, at: 0) }
        if let route = routes.first, let host = (try? SIPAddress(parsing: route))?.uri.host { addresses.append(host) }
        return TuningPeer(addresses: addresses, userAgent: userAgent, acceptsGzip: acceptsGzip, mediaTypes: mediaTypes)
    }
}

/// One proxied request: its branches, their answers, and the choice of the response that goes
/// upstream (RFC 3261 §16.7). Parallel within a q-level, sequential across levels (§16.6).
final class ProxyContext: Sendable {
    struct Branch {
        var target: ProxyTarget
        var transaction: ClientTransaction?
        var request: SIPMessage
        var provisionalSeen = false
        var anyResponse = false
        var final: SIPMessage?
        var cancelRequested = false
        var timerC: TimerWheel.Token?
    }

    struct State {
        var levels: [[ProxyTarget]]
        var nextLevel = 0
        var branches: [Branch] = []
        var answered = false
        var cancelled = false
        var finished = false
        /// Waiting for a sleeping or absent device to register (tsilo): no final answer yet even
        /// when every branch has ended.
        var waiting = false
        var waitTimer: TimerWheel.Token?
        /// Pushes sent for this request that have not failed.
        var pushesOutstanding = 0
        var pushed = false
    }

    let server: ServerTransaction
    /// The request after route processing (our Route removed), which each branch copies.
    let request: SIPMessage
    let proxy: StatefulProxy
    let state: Mutex<State>
    /// The local user the targets came from (the location service), for undeliverable requests.
    let localAOR: String?
    /// Where a request that waits goes when a device of its user registers: nil for a device this
    /// request does not want (another one than the dialog's).
    let wakeTarget: @Sendable (Binding) -> ProxyTarget?
    /// With routed next hops: only these statuses (and no answer at all) move on to the next hop;
    /// any other final answer ends the search. Nil: every failure moves on (location targets).
    let failover: Set<Int>?

    init(server: ServerTransaction, request: SIPMessage, proxy: StatefulProxy, levels: [[ProxyTarget]], localAOR: String? = nil,
         failover: Set<Int>? = nil,
         wakeTarget: @escaping @Sendable (Binding) -> ProxyTarget? = { ProxyTarget($0) }) {
        self.failover = failover
        self.server = server
        self.request = request
        self.proxy = proxy
        self.localAOR = localAOR
        self.wakeTarget = wakeTarget
        self.state = Mutex(State(levels: levels))
    }

    var isInvite: Bool { server.request.method == .invite }
    /// An INVITE outside a dialog: a call starting (its outcome is a call event).
    var isInitialInvite: Bool { CallEvent.isInitialInvite(request) }

    /// Starts the first q-level.
    func start() {
        startNextLevel()
    }

    private func startNextLevel() {
        let level = state.withLock { state -> [ProxyTarget]? in
            guard !state.cancelled, state.nextLevel < state.levels.count else { return nil }
            defer { state.nextLevel += 1 }
            return state.levels[state.nextLevel]
        }
        guard let level else {
            if !state.withLock({ $0.waiting && !$0.cancelled }) { finish() }
            return
        }
        for target in level { startBranch(target) }
    }

    // MARK: - Waiting for a device (Kamailio's tsilo, RFC 8599 §5.6.2)

    /// Keeps the request open for `duration` even when no branch is left, so that a device that
    /// registers meanwhile gets a branch (``append(_:)``). Call before ``start()``.
    func wait(for duration: TimeAmount) {
        let wheel = proxy.transactions.wheels.wheel(for: server.eventLoop)
        let token = wheel.schedule(after: duration) { [self] in stopWaiting() }
        state.withLock { state in
            state.waiting = true
            state.waitTimer = token
        }
    }

    var isWaiting: Bool { state.withLock { $0.waiting && !$0.finished } }

    /// A device of the user registered while the request waited: it gets a branch now, unless one
    /// of its branches is still running.
    func append(_ target: ProxyTarget) {
        let fresh = state.withLock { state -> Bool in
            guard state.waiting, !state.finished, !state.answered, !state.cancelled else { return false }
            return !state.branches.contains { branch in
                branch.final == nil && branch.target.binding?.key == target.binding?.key && branch.target.binding?.aor == target.binding?.aor
            }
        }
        if fresh { startBranch(target) }
    }

    func pushSent() {
        state.withLock { state in
            state.pushesOutstanding += 1
            state.pushed = true
        }
    }

    /// A push failed for good (RFC 8599 §5.6.2: the request then gets an error): when nothing else
    /// can wake a device, waiting ends.
    func pushFailed() {
        let last = state.withLock { state -> Bool in
            state.pushesOutstanding -= 1
            return state.pushesOutstanding <= 0
        }
        if last { stopWaiting() }
    }

    /// Time is up (or nothing can come any more): the request ends with what its branches said,
    /// 480 when none.
    func stopWaiting() {
        let token = state.withLock { state -> TimerWheel.Token? in
            guard state.waiting else { return nil }
            state.waiting = false
            defer { state.waitTimer = nil }
            return state.waitTimer
        }
        if let token { proxy.transactions.wheels.wheel(for: server.eventLoop).cancel(token) }
        proxy.stoppedWaiting(self)
        branchCompleted()
    }

    private func startBranch(_ target: ProxyTarget) {
        target.started?()
        let request = proxy.forwardedRequest(self.request, to: target, inbound: server.inbound)
        let index = state.withLock { state -> Int in
            state.branches.append(Branch(target: target, request: request))
            return state.branches.count - 1
        }
        do {
            let transaction = try proxy.send(request, to: target, on: server.eventLoop) { [self] event in
                handle(event, branch: index)
            }
            state.withLock { $0.branches[index].transaction = transaction }
        } catch {
            handle(.transportError(.unresolvable(target.uri.host)), branch: index)
        }
    }

    // MARK: - Responses from branches

    private func handle(_ event: ClientTransactionEvent, branch index: Int) {
        switch event {
        case .response(let response):
            guard let code = response.statusCode else { return }
            state.withLock { $0.branches[index].anyResponse = true }
            if code == 100 { return }
            if code < 200 {
                let cancelNow = state.withLock { state -> Bool in
                    let first = !state.branches[index].provisionalSeen
                    state.branches[index].provisionalSeen = true
                    return first && state.branches[index].cancelRequested
                }
                if cancelNow { sendCancel(branch: index) }
                if isInvite { restartTimerC(branch: index) }
                if !state.withLock({ $0.answered }) { forwardUpstream(response) }
                return
            }
            if code < 300 {
                // Every 2xx goes upstream (RFC 3261 §16.7 step 5), and the other branches end.
                let firstAnswer = state.withLock { state -> Bool in
                    state.branches[index].final = response
                    defer { state.answered = true }
                    return !state.answered
                }
                forwardUpstream(response)
                if firstAnswer { state.withLock { $0.branches[index].target }.outcome?(code) }
                if firstAnswer, proxy.reportsCalls, isInitialInvite { proxy.reportCall(CallEvent(.answered, request: request, status: code)) }
                if firstAnswer { cancelPendingBranches() }
                branchCompleted()
                return
            }
            let target = state.withLock { state -> ProxyTarget in
                state.branches[index].final = response
                return state.branches[index].target
            }
            target.outcome?(code)
            if code >= 600 { cancelPendingBranches() }
            branchCompleted()
        case .timeout:
            let (silent, target) = state.withLock { state -> (Bool, ProxyTarget) in
                state.branches[index].final = SIPMessage.response(to: state.branches[index].request, status: SIPStatus(408))
                return (!state.branches[index].anyResponse, state.branches[index].target)
            }
            if silent { proxy.targetIsDead(target, reason: "no reply") }
            target.outcome?(silent ? nil : 408)
            branchCompleted()
        case .transportError(let error):
            let target = state.withLock { state -> ProxyTarget in
                // The device cannot be reached at all: for the caller it is temporarily unavailable.
                state.branches[index].final = SIPMessage.response(to: state.branches[index].request,
                                                                  status: SIPStatus(480))
                return state.branches[index].target
            }
            proxy.targetIsDead(target, reason: "\(error)")
            target.outcome?(nil)
            branchCompleted()
        }
    }

    private func branchCompleted() {
        let (allDone, answered, hasSixxx) = state.withLock { state -> (Bool, Bool, Bool) in
            let done = state.branches.allSatisfy { $0.final != nil }
            let six = state.branches.contains { ($0.final?.statusCode ?? 0) >= 600 }
            return (done, state.answered, six)
        }
        guard allDone else { return }
        // A device that woke up and declined (busy, rejected) ends the wait: that is the user's answer.
        let declined = state.withLock { state -> Bool in
            guard state.waiting else { return false }
            return state.branches.contains { branch in
                guard let code = branch.final?.statusCode else { return false }
                return code >= 400 && ![408, 480, 503, 487].contains(code)
            }
        }
        if declined {
            stopWaiting()
            return
        }
        if answered || hasSixxx || state.withLock({ $0.cancelled }) || !mayFailOver() {
            finish()
        } else {
            startNextLevel()
        }
    }

    /// Whether the branch that just ended lets the search go on to the next hop.
    private func mayFailOver() -> Bool {
        guard let failover else { return true }
        return state.withLock { state -> Bool in
            guard let last = state.branches.last, let code = last.final?.statusCode else { return true }
            // No answer at all (timeout, unreachable): always on to the next one.
            return !last.anyResponse || failover.contains(code)
        }
    }

    /// Sends the best final response upstream once, unless a 2xx already went (RFC 3261 §16.7 step 6).
    private func finish() {
        let (alreadyFinished, answered, finals) = state.withLock { state -> (Bool, Bool, [SIPMessage]) in
            defer { state.finished = true }
            return (state.finished, state.answered, state.branches.compactMap(\.final))
        }
        defer { proxy.contextFinished(self) }
        guard !alreadyFinished else { return }
        if let token = state.withLock({ state -> TimerWheel.Token? in
            state.waiting = false
            defer { state.waitTimer = nil }
            return state.waitTimer
        }) {
            proxy.transactions.wheels.wheel(for: server.eventLoop).cancel(token)
        }
        guard !answered else { return }
        let bestStatus = ProxyContext.bestResponse(finals)?.statusCode
        // Every device was away (no answer, unreachable, unavailable): a feature may keep the request.
        if let localAOR, bestStatus == nil || [408, 480, 503].contains(bestStatus ?? 0),
           !state.withLock({ $0.cancelled }), let handler = proxy.undeliverableHandler(for: request),
           handler.undeliverable(server, request: request, aor: localAOR, status: bestStatus,
                                 devicesWoken: state.withLock { $0.pushed }) {
            return
        }
        guard var best = ProxyContext.bestResponse(finals) else {
            if state.withLock({ $0.cancelled }) {
                // Cancelled while it waited for a device: nothing was sent anywhere.
                reportFailure(487)
                server.respond(SIPStatus(487))
                return
            }
            reportFailure(480)
            server.respond(SIPStatus(480))
            return
        }
        if best.statusCode == 503 {
            // §16.7 step 6: a 503 is not passed on; the proxy answers 500.
            reportFailure(500)
            server.respond(SIPStatus(500, "Service Unavailable Downstream"))
            return
        }
        reportFailure(best.statusCode ?? 0)
        // §16.7 step 7: every challenge of every 401/407 goes up together.
        if best.statusCode == 401 || best.statusCode == 407 {
            for other in finals where other.statusCode == 401 || other.statusCode == 407 {
                guard other.callID == best.callID, other.serializedString != best.serializedString else { continue }
                for value in other.values(.wwwAuthenticate) { best.appendHeader(.wwwAuthenticate, value) }
                for value in other.values(.proxyAuthenticate) { best.appendHeader(.proxyAuthenticate, value) }
            }
        }
        forwardUpstream(best)
    }

    /// A call that ends unanswered, with the status its caller gets.
    private func reportFailure(_ status: Int) {
        if proxy.reportsCalls, isInitialInvite { proxy.reportCall(CallEvent(.failed, request: request, status: status)) }
    }

    /// RFC 3261 §16.7 step 6: a 6xx if any, else the lowest class; 408s and our own 503s come last.
    static func bestResponse(_ finals: [SIPMessage]) -> SIPMessage? {
        func rank(_ message: SIPMessage) -> Int {
            let code = message.statusCode ?? 999
            if code >= 600 { return 0 }
            if code == 408 { return 5_000 }
            if code == 503 { return 6_000 }
            return code
        }
        return finals.min { rank($0) < rank($1) }
    }

    private func forwardUpstream(_ response: SIPMessage) {
        var upstream = response
        // Read before any edit, while the top Via validation parsed is still kept.
        let topViaIsOurs = (try? upstream.topVia())?.branch?.hasPrefix(StatefulProxy.branchPrefix) == true
        proxy.answering(&upstream, to: request)
        // Our own Via goes; what remains is the path back (RFC 3261 §16.7 step 3).
        if topViaIsOurs { upstream.dropFirstValue(.via) }
        server.respond(upstream)
    }

    // MARK: - Timer C (RFC 3261 §16.6 step 11, §16.8)

    private func restartTimerC(branch index: Int) {
        let wheel = proxy.transactions.wheels.wheel(for: server.eventLoop)
        let token = wheel.schedule(after: proxy.configuration.timerC) { [self] in timerCFired(branch: index) }
        let previous = state.withLock { state -> TimerWheel.Token? in
            defer { state.branches[index].timerC = token }
            return state.branches[index].timerC
        }
        if let previous { wheel.cancel(previous) }
    }

    /// A branch that kept ringing too long: cancelled, and for the choice of response it timed out.
    private func timerCFired(branch index: Int) {
        let ringing = state.withLock { state -> Bool in
            guard state.branches[index].final == nil else { return false }
            state.branches[index].final = SIPMessage.response(to: state.branches[index].request, status: SIPStatus(408))
            state.branches[index].cancelRequested = true
            return true
        }
        guard ringing else { return }
        sendCancel(branch: index)
        branchCompleted()
    }

    // MARK: - CANCEL (RFC 3261 §16.10)

    /// Cancels every branch still waiting for a final response. A branch that has not answered at all
    /// cannot be cancelled yet (RFC 3261 §9.1); rather than hold the caller until its Timer B, it
    /// counts as ended with 487 now, and still gets its CANCEL if a provisional response shows up.
    func cancel() {
        state.withLock { state in
            state.cancelled = true
            for index in state.branches.indices where state.branches[index].final == nil && !state.branches[index].anyResponse {
                state.branches[index].final = SIPMessage.response(to: state.branches[index].request, status: SIPStatus(487))
                state.branches[index].cancelRequested = true
            }
        }
        cancelPendingBranches()
        branchCompleted()
    }

    private func cancelPendingBranches() {
        guard isInvite else { return }
        let ready = state.withLock { state -> [Int] in
            var ready: [Int] = []
            for index in state.branches.indices where state.branches[index].final == nil && !state.branches[index].cancelRequested {
                state.branches[index].cancelRequested = true
                // RFC 3261 §9.1: no CANCEL before a provisional response; it is sent when one comes.
                if state.branches[index].provisionalSeen { ready.append(index) }
            }
            return ready
        }
        for index in ready { sendCancel(branch: index) }
    }

    private func sendCancel(branch index: Int) {
        let (request, target, flow) = state.withLock { state in
            (state.branches[index].request, state.branches[index].target, state.branches[index].transaction?.flow)
        }
        // The CANCEL follows the INVITE's own flow (RFC 3261 §9.1: same destination).
        var path = target
        if let flow { path.flow = flow }
        proxy.sendCancel(for: request, to: path, on: server.eventLoop)
    }
}
