public import CoreProxy
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import SIP
#if canImport(Glibc)
import Glibc
#endif

/// The presence server: event state publication (RFC 3903), the presence event package
/// (RFC 3856) with PIDF composition (RFC 3863/4479), subscriptions (RFC 6665) to `presence` and
/// `presence.winfo` (RFC 3857/3858), authorisation of watchers, and NOTIFYs that are ordered,
/// throttled and coalesced per watcher (RFC 6446), conditional (RFC 5839) and gzip-compressed.
public final class PresenceService: SIPRequestHandler, LocationObserver, ServerFeature, Sendable {
    public struct Configuration: Sendable {
        public enum Policy: String, Sendable, CaseIterable {
            /// Every watcher is active.
            case allow
            /// Watchers of the presentity's own domain are active; others wait (pending).
            case sameDomain = "same_domain"
            /// Every watcher waits until the presentity or an operator decides.
            case ask
        }

        public var policy: Policy
        /// Expires bounds for PUBLISH and SUBSCRIBE (defaults 3600, min 60, max 86400 s).
        public var defaultExpires: UInt32
        public var minExpires: UInt32
        public var maxExpires: UInt32
        /// At most one NOTIFY per watcher per interval; changes inside it are coalesced (default 1 s).
        public var minNotifyInterval: TimeAmount
        /// A change of a tuple's basic status (open/closed) goes out without waiting for the
        /// interval (default true); other changes (notes, activities) wait and are coalesced.
        public var basicStatusIsCritical: Bool
        /// NOTIFYs that time out (or meet a transport error) are sent again this many times, after
        /// ``notifyRetryDelay``, before the subscription is dropped (default 2, 5 s).
        public var notifyRetries: Int
        public var notifyRetryDelay: TimeAmount
        /// Without any publication, a registered user is open, with a tuple per contact (default true).
        public var deriveFromRegistration: Bool

        public init(policy: Policy = .allow, defaultExpires: UInt32 = 3600, minExpires: UInt32 = 60, maxExpires: UInt32 = 86_400,
                    minNotifyInterval: TimeAmount = .seconds(1), basicStatusIsCritical: Bool = true, notifyRetries: Int = 2,
                    notifyRetryDelay: TimeAmount = .seconds(5), deriveFromRegistration: Bool = true) {
            self.policy = policy
            self.defaultExpires = defaultExpires
            self.minExpires = minExpires
            self.maxExpires = maxExpires
            self.minNotifyInterval = minNotifyInterval
            self.basicStatusIsCritical = basicStatusIsCritical
            self.notifyRetries = notifyRetries
            self.notifyRetryDelay = notifyRetryDelay
            self.deriveFromRegistration = deriveFromRegistration
        }
    }

    /// What the presentity (or an operator) decided about a watcher.
    public enum WatcherDecision: String, Sendable {
        case allowed
        /// Refused with 403; existing subscriptions end with reason `rejected`.
        case blocked
        /// Accepted but shown closed, so the watcher cannot tell it is blocked.
        case politelyBlocked = "polite_block"
    }

    struct Publication: Sendable {
        /// Stable for the life of the publication; the entity tag changes on every refresh.
        var id: String
        var etag: String
        var document: PIDFDocument
        var expiresAt: Int64
        var sequence: UInt64
    }

    struct Presentity: Sendable {
        var publications: [Publication] = []
        var subscriptions: Set<String> = []
        var decisions: [String: WatcherDecision] = [:]
        var composed: PIDFDocument? {
            didSet { composedXML = composed?.xml }
        }
        /// The composed document serialized once per change, not once per watcher.
        var composedXML: String?
        var etag = ""
        var basicStatus: [String: String] = [:]
    }

    public let configuration: Configuration
    private let proxy: StatefulProxy
    private let location: LocationService
    private let identity: LocalIdentity
    private let group: any EventLoopGroup
    private let store: (any PresenceStore)?
    private let logger: Logger
    private let presentities = NIOLockedValueBox<[String: Presentity]>([:])
    private let delegates = NIOLockedValueBox<[String: any SIPRequestHandler]>([:])
    private let subscriptions = NIOLockedValueBox<[String: Subscription]>([:])
    private let observers = NIOLockedValueBox<[any PresenceObserver]>([])
    private let sequence = NIOLockedValueBox<UInt64>(0)
    private let expirySweepTask = NIOLockedValueBox<RepeatedTask?>(nil)
    private let notifies = Counter(label: "tern.presence.notifies")
    private let coalesced = Counter(label: "tern.presence.coalesced_changes")
    private let notifyFailures = Counter(label: "tern.presence.notify_failures")

    public var methods: [SIPMethod] { [.publish, .subscribe] }
    public var acceptedBodyTypes: [String]? { ["application/pidf+xml"] }

    public init(configuration: Configuration, proxy: StatefulProxy, location: LocationService, identity: LocalIdentity,
                group: any EventLoopGroup, store: (any PresenceStore)? = nil, logger: Logger) {
        self.configuration = configuration
        self.proxy = proxy
        self.location = location
        self.identity = identity
        self.group = group
        self.store = store
        self.logger = logger
    }

    public func start() {
        location.addObserver(self)
        let sweep = group.next().scheduleRepeatedTask(initialDelay: Self.expirySweep, delay: Self.expirySweep) { [weak self] _ in
            self?.expireSubscriptions()
        }
        expirySweepTask.withLockedValue { $0 = sweep }
    }

    public func stop() async {
        expirySweepTask.withLockedValue { $0?.cancel() }
    }

    /// How often lapsed subscriptions are looked for. One sweep for all of them instead of a
    /// scheduled task each: a task and its closure cost more memory than the rest of a subscription.
    static let expirySweep = TimeAmount.milliseconds(250)

    /// Ends every subscription whose expiry has passed, with reason timeout.
    private func expireSubscriptions() {
        let now = Self.nowMilliseconds()
        // Each subscription's lock is taken outside the table's: NOTIFY building takes them the
        // other way round.
        let lapsed = subscriptions.withLockedValue { Array($0.values) }.filter { $0.hasLapsed(at: now) }
        for subscription in lapsed { terminate(subscription, reason: "timeout") }
    }

    public func addObserver(_ observer: any PresenceObserver) {
        observers.withLockedValue { $0.append(observer) }
    }

    private func publish(_ event: PresenceEvent) {
        for observer in observers.withLockedValue({ $0 }) { observer.presenceEvent(event) }
    }

    static func nowMilliseconds() -> Int64 { SystemLocationClock().nowMilliseconds() }

    static func newETag() -> String { String(UInt64.random(in: 1 ... .max), radix: 36) }

    public func handle(_ transaction: ServerTransaction) {
        switch transaction.request.method {
        case .publish: handlePublish(transaction)
        case .subscribe: handleSubscribe(transaction)
        default: transaction.respond(SIPStatus(405))
        }
    }

    // MARK: - PUBLISH (RFC 3903 §6)

    private func handlePublish(_ transaction: ServerTransaction) {
        let request = transaction.request
        guard let event = (try? request.event()) ?? nil, event.package.caseInsensitiveEquals("presence") else {
            transaction.respond(SIPStatus(489), headers: [(.allowEvents, "presence")])
            return
        }
        guard let uri = try? request.requestURI(), let aor = AddressOfRecord.canonical(uri), identity.servesDomain(uri.host) else {
            transaction.respond(SIPStatus(404, "Unknown Presentity"))
            return
        }
        guard let expires = boundedExpires(transaction) else { return }
        var document: PIDFDocument?
        if request.body.readableBytes > 0 {
            guard let type = (try? request.contentType()) ?? nil,
                  type.type.caseInsensitiveEquals("application"), type.subtype.caseInsensitiveEquals("pidf+xml") else {
                transaction.respond(SIPStatus(415), headers: [(.accept, "application/pidf+xml")])
                return
            }
            do {
                document = try PIDFDocument(parsing: try decodedBody(request))
            } catch let error as PIDFDocument.ParseError {
                transaction.respond(SIPStatus(400, error.description))
                return
            } catch {
                transaction.respond(SIPStatus(400, "Malformed PIDF: bad Content-Encoding"))
                return
            }
        }
        let now = Self.nowMilliseconds()
        let ifMatch = request.sipIfMatch
        if ifMatch == nil, document == nil {
            transaction.respond(SIPStatus(400, "Initial PUBLISH Needs A Body"))
            return
        }
        let newTag = Self.newETag()
        let order = sequence.withLockedValue { value -> UInt64 in value += 1; return value }
        // Applied under the presentity table's lock: PUBLISHes for one presentity take effect in arrival order.
        let (outcome, touched) = presentities.withLockedValue { table -> (PublishOutcome, Publication?) in
            var presentity = table[aor] ?? Presentity()
            defer { table[aor] = presentity }
            if let ifMatch {
                guard let index = presentity.publications.firstIndex(where: { $0.etag == ifMatch }) else { return (.unknownTag, nil) }
                if expires == 0 {
                    return (.removed, presentity.publications.remove(at: index))
                }
                presentity.publications[index].etag = newTag
                presentity.publications[index].expiresAt = now + Int64(expires) * 1000
                if let document {
                    presentity.publications[index].document = document
                    presentity.publications[index].sequence = order
                    let changed = presentity.publications[index]
                    presentity.publications.sort { $0.sequence < $1.sequence }
                    return (.changed, changed)
                }
                return (.refreshed, presentity.publications[index])
            }
            guard let document, expires > 0 else { return (.removed, nil) }
            let publication = Publication(id: Self.newETag(), etag: newTag, document: document, expiresAt: now + Int64(expires) * 1000,
                                          sequence: order)
            presentity.publications.append(publication)
            return (.changed, publication)
        }
        if let touched {
            if outcome == .removed {
                store?.deletePublication(presentity: aor, id: touched.id)
            } else {
                store?.save(stored(touched, presentity: aor))
            }
        }
        // Composed before the answer: once the publisher has its 200, everyone reads the new state.
        if outcome == .changed || outcome == .removed { recompose(aor) }
        switch outcome {
        case .unknownTag:
            transaction.respond(SIPStatus(412))
        case .removed:
            transaction.respond(SIPStatus(200), headers: [(.expires, "0")])
        case .refreshed, .changed:
            transaction.respond(SIPStatus(200), headers: [(.sipETag, newTag), (.expires, String(expires))])
            schedulePublicationExpiry(aor, etag: newTag, after: Int64(expires) * 1000)
        }
    }

    private enum PublishOutcome { case unknownTag, removed, refreshed, changed }

    private func decodedBody(_ request: SIPMessage) throws -> [UInt8] {
        var body = request.body
        for coding in request.contentEncodings.reversed() {
            guard let known = ContentCoding(rawValue: coding) else { continue }
            body = try ContentCoding.decode(body, coding: known)
        }
        return Array(body.readableBytesView)
    }

    private func schedulePublicationExpiry(_ aor: String, etag: String, after milliseconds: Int64) {
        group.next().scheduleTask(in: .milliseconds(milliseconds)) { [self] in
            let now = Self.nowMilliseconds()
            let removed = presentities.withLockedValue { table -> Bool in
                guard var presentity = table[aor],
                      let index = presentity.publications.firstIndex(where: { $0.etag == etag && $0.expiresAt <= now }) else { return false }
                let lapsed = presentity.publications.remove(at: index)
                table[aor] = presentity
                store?.deletePublication(presentity: aor, id: lapsed.id)
                return true
            }
            if removed { recompose(aor) }
        }
    }

    /// Expires within bounds (0 always allowed); below the minimum the request is answered 423
    /// with Min-Expires (RFC 3903 §6, RFC 6665 §4.2.1.1) and nil comes back.
    private func boundedExpires(_ transaction: ServerTransaction) -> UInt32? {
        let requested = ((try? transaction.request.expires()) ?? nil) ?? configuration.defaultExpires
        if requested == 0 { return 0 }
        if requested < configuration.minExpires {
            transaction.respond(SIPStatus(423), headers: [(.minExpires, String(configuration.minExpires))])
            return nil
        }
        return min(requested, configuration.maxExpires)
    }

    // MARK: - Composition

    /// Recomputes what watchers see; when it changed, every watcher is told (throttled).
    private func recompose(_ aor: String) {
        let registered = configuration.deriveFromRegistration ? location.bindings(for: aor).map(\.contactText) : []
        let change = presentities.withLockedValue { table -> (ids: Set<String>, critical: Bool, open: Bool)? in
            guard var presentity = table[aor] else { return nil }
            let document: PIDFDocument?
            if !presentity.publications.isEmpty {
                document = PIDFDocument.compose(entity: aor, presentity.publications.map(\.document))
            } else if !registered.isEmpty {
                document = PIDFDocument.registered(entity: aor, contacts: registered)
            } else {
                document = nil
            }
            guard document != presentity.composed else { return nil }
            let basic = document?.basicStatus ?? [:]
            let critical = configuration.basicStatusIsCritical && basic != presentity.basicStatus
            presentity.composed = document
            presentity.basicStatus = basic
            presentity.etag = Self.newETag()
            let ids = presentity.subscriptions
            if presentity.publications.isEmpty && presentity.subscriptions.isEmpty && presentity.decisions.isEmpty {
                table[aor] = nil
            } else {
                table[aor] = presentity
            }
            return (ids, critical, document?.isOpen ?? false)
        }
        guard let change else { return }
        publish(PresenceEvent(kind: .updated, presentity: aor, open: change.open))
        let affected = subscriptions.withLockedValue { table in change.ids.compactMap { table[$0] } }
        for subscription in affected where subscription.package == .presence {
            markDirty(subscription, critical: change.critical)
        }
    }

    public func locationChanged(_ event: BindingEvent) {
        guard configuration.deriveFromRegistration else { return }
        let aor = event.binding.aor
        let watched = presentities.withLockedValue { $0[aor].map { $0.publications.isEmpty && !$0.subscriptions.isEmpty } ?? false }
        if watched { group.next().execute { [self] in recompose(aor) } }
    }

    // MARK: - SUBSCRIBE (RFC 6665 §4.2)

    /// Hands SUBSCRIBEs for another event package (IMS's `reg`) to the feature that serves it.
    public func delegate(package: String, to handler: any SIPRequestHandler) {
        delegates.withLockedValue { $0[package.lowercased()] = handler }
    }

    private func handleSubscribe(_ transaction: ServerTransaction) {
        let request = transaction.request
        if let event = (try? request.event()) ?? nil, let handler = delegates.withLockedValue({ $0[event.package.lowercased()] }) {
            handler.handle(transaction)
            return
        }
        guard let event = (try? request.event()) ?? nil,
              let package = Subscription.Package(rawValue: event.package.lowercased()) else {
            let others = delegates.withLockedValue { $0.keys.sorted() }
            transaction.respond(SIPStatus(489), headers: [(.allowEvents, (["presence", "presence.winfo"] + others).joined(separator: ", "))])
            return
        }
        guard let expires = boundedExpires(transaction) else { return }
        guard let to = (try? request.to()) ?? nil, let from = (try? request.from()) ?? nil, let callID = request.callID,
              let cseq = ((try? request.cseq()) ?? nil)?.sequence else {
            transaction.respond(SIPStatus(400, "Bad Dialog Headers"))
            return
        }
        if let toTag = to.tag {
            refresh(transaction, key: Subscription.key(callID: callID, localTag: toTag, remoteTag: from.tag ?? ""),
                    package: package, expires: expires, cseq: cseq)
        } else {
            create(transaction, event: event, package: package, expires: expires, from: from, callID: callID, cseq: cseq)
        }
    }

    private func create(_ transaction: ServerTransaction, event: SIPEvent, package: Subscription.Package, expires: UInt32,
                        from: SIPAddress, callID: String, cseq: UInt32) {
        let request = transaction.request
        guard let uri = try? request.requestURI(), let presentity = AddressOfRecord.canonical(uri), identity.servesDomain(uri.host) else {
            transaction.respond(SIPStatus(404, "Unknown Presentity"))
            return
        }
        guard let remoteTag = from.tag, let watcher = AddressOfRecord.canonical(from.uri) else {
            transaction.respond(SIPStatus(400, "From Needs A Tag"))
            return
        }
        guard case .addresses(let contacts) = (try? request.contacts()) ?? .none, let contact = contacts.first else {
            transaction.respond(SIPStatus(400, "Missing Contact"))
            return
        }
        if package == .presence, let accepted = try? request.accept(), !accepted.isEmpty,
           !accepted.contains(where: { Self.acceptsPIDF($0) }) {
            transaction.respond(SIPStatus(406), headers: [(.accept, "application/pidf+xml")])
            return
        }
        let authorization: Subscription.Authorization
        switch package {
        case .watcherInfo:
            // Only the presentity may see who watches it.
            guard watcher == presentity else {
                transaction.respond(SIPStatus(403, "Only The Presentity May Watch Its Watchers"))
                return
            }
            authorization = .active
        case .presence:
            switch decide(presentity: presentity, watcher: watcher) {
            case .some(.blocked):
                transaction.respond(SIPStatus(403, "Watcher Blocked"))
                return
            case .some(.allowed): authorization = .active
            case .some(.politelyBlocked): authorization = .politelyBlocked
            case .none: authorization = .pending
            }
        }

        let inbound = transaction.inbound
        let listener = identity.listener(for: inbound.transport, ipv6: inbound.local.protocol == .inet6)
        let ourContact = "<sip:" + (listener.map(LocalIdentity.hostPort) ?? "127.0.0.1")
            + (inbound.transport == .udp ? "" : ";transport=" + inbound.transport.rawValue) + ">"
        let now = Self.nowMilliseconds()
        let dialog = Subscription.Dialog(
            callID: callID, localTag: transaction.localTag, remoteTag: remoteTag, localURI: request.firstValue(.to) ?? "",
            remoteURI: request.firstValue(.from) ?? "", remoteTarget: contact.uri, routeSet: request.values(.recordRoute),
            flow: (inbound.flow, inbound.transport), event: request.firstValue(.event) ?? package.rawValue, contact: ourContact)
        let state = Subscription.State(
            dialog: dialog, remoteCSeq: cseq, expiresAt: now + Int64(expires) * 1000, authorization: authorization,
            acceptsGzip: request.acceptEncodings.contains("gzip"),
            minInterval: Subscription.interval(event: event, serverMinimum: configuration.minNotifyInterval),
            suppressIfMatch: request.firstValue(.suppressIfMatch), createdAt: now)
        var initial = state
        initial.acceptsDiff = ((try? request.accept()) ?? []).contains {
            $0.type.caseInsensitiveEquals("application") && $0.subtype.caseInsensitiveEquals("pidf-diff+xml")
        }
        let key = Subscription.key(callID: callID, localTag: transaction.localTag, remoteTag: remoteTag)
        let subscription = Subscription(id: key, package: package, presentity: presentity, watcher: watcher,
                                        loop: transaction.eventLoop, state: initial)
        transaction.respond(SIPStatus(200), headers: [(.expires, String(expires)), (.contact, ourContact)])

        if expires == 0 {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, and the subscription is over.
            subscription.state.withLockedValue { $0.terminationReason = "timeout" }
            sendNotify(subscription)
            return
        }
        subscriptions.withLockedValue { $0[key] = subscription }
        presentities.withLockedValue { table in
            var entry = table[presentity] ?? Presentity()
            entry.subscriptions.insert(key)
            table[presentity] = entry
        }
        persist(subscription)
        if package == .presence, presentities.withLockedValue({ $0[presentity]?.composed == nil }) {
            recompose(presentity)
        }
        publish(PresenceEvent(kind: .subscriptionCreated, presentity: presentity, watcher: watcher, package: package.rawValue))
        if authorization == .pending {
            publish(PresenceEvent(kind: .watcherPending, presentity: presentity, watcher: watcher, package: package.rawValue))
        }
        if package == .presence { watcherChanged(subscription, event: "subscribe") }
        // The first NOTIFY goes at once (RFC 6665 §4.2.1.2), not after the throttle interval.
        sendNotify(subscription)
    }

    static func acceptsPIDF(_ type: SIPMediaType) -> Bool {
        let full = type.type.lowercased() + "/" + type.subtype.lowercased()
        return full == "application/pidf+xml" || full == "*/*" || full == "application/*" || full == "application/pidf-diff+xml"
    }

    private func refresh(_ transaction: ServerTransaction, key: String, package: Subscription.Package, expires: UInt32, cseq: UInt32) {
        guard let subscription = subscriptions.withLockedValue({ $0[key] }), subscription.package == package else {
            transaction.respond(SIPStatus(481, "Subscription Does Not Exist"))
            return
        }
        let ordered = subscription.state.withLockedValue { state -> Bool in
            guard cseq > state.remoteCSeq else { return false }
            state.remoteCSeq = cseq
            return true
        }
        guard ordered else {
            transaction.respond(SIPStatus(500, "CSeq Out Of Order"))
            return
        }
        transaction.respond(SIPStatus(200), headers: [(.expires, String(expires))])
        if expires == 0 {
            // Unsubscribe (RFC 6665 §4.2.1.4): a last NOTIFY, terminated.
            terminate(subscription, reason: "timeout")
            return
        }
        let now = Self.nowMilliseconds()
        subscription.state.withLockedValue { state in
            state.expiresAt = now + Int64(expires) * 1000
            state.suppressIfMatch = transaction.request.firstValue(.suppressIfMatch)
            state.watcherInfoNeedsFull = true
            // A refresh brings the whole state again (RFC 5263 §3.2), partial ones after it.
            state.sentDocument = nil
        }
        persist(subscription)
        publish(PresenceEvent(kind: .subscriptionUpdated, presentity: subscription.presentity, watcher: subscription.watcher,
                              package: package.rawValue))
        // A refresh is answered with the current state (RFC 6665 §4.2.2), at once.
        markDirty(subscription, critical: true)
    }

    /// Ends a subscription: it leaves the tables and its last NOTIFY says why.
    private func terminate(_ subscription: Subscription, reason: String, notify: Bool = true) {
        let first = subscription.state.withLockedValue { state -> Bool in
            guard state.terminationReason == nil else { return false }
            state.terminationReason = reason
            return true
        }
        guard first else { return }
        subscriptions.withLockedValue { $0[subscription.id] = nil }
        store?.deleteSubscription(id: subscription.id)
        presentities.withLockedValue { table in
            guard var entry = table[subscription.presentity] else { return }
            entry.subscriptions.remove(subscription.id)
            if entry.publications.isEmpty && entry.subscriptions.isEmpty && entry.decisions.isEmpty {
                table[subscription.presentity] = nil
            } else {
                table[subscription.presentity] = entry
            }
        }
        publish(PresenceEvent(kind: .subscriptionTerminated, presentity: subscription.presentity, watcher: subscription.watcher,
                              package: subscription.package.rawValue, reason: reason))
        if subscription.package == .presence {
            watcherChanged(subscription, event: reason == "rejected" ? "rejected" : reason == "timeout" ? "timeout" : "deactivated")
        }
        if notify { markDirty(subscription, critical: true) }
    }

    // MARK: - Authorisation

    private func decide(presentity: String, watcher: String) -> WatcherDecision? {
        if watcher == presentity { return .allowed }
        if let decision = presentities.withLockedValue({ $0[presentity]?.decisions[watcher] }) { return decision }
        switch configuration.policy {
        case .allow: return .allowed
        case .ask: return nil
        case .sameDomain: return Self.domain(of: watcher) == Self.domain(of: presentity) ? .allowed : nil
        }
    }

    static func domain(of aor: String) -> String {
        aor.split(separator: "@").last.map { String($0).lowercased() } ?? aor
    }

    /// The presentity's (or an operator's) decision about a watcher; its subscriptions follow it.
    public func authorize(presentity: String, watcher: String, _ decision: WatcherDecision) {
        presentities.withLockedValue { table in
            var entry = table[presentity] ?? Presentity()
            entry.decisions[watcher] = decision
            table[presentity] = entry
        }
        store?.saveDecision(presentity: presentity, watcher: watcher, decision: decision.rawValue)
        let affected = subscriptions.withLockedValue { table in
            table.values.filter { $0.presentity == presentity && $0.watcher == watcher && $0.package == .presence }
        }
        for subscription in affected {
            switch decision {
            case .blocked:
                terminate(subscription, reason: "rejected")
            case .allowed, .politelyBlocked:
                let next: Subscription.Authorization = decision == .allowed ? .active : .politelyBlocked
                let changed = subscription.state.withLockedValue { state -> Bool in
                    defer { state.authorization = next }
                    return state.authorization != next
                }
                if changed {
                    if decision == .allowed { watcherChanged(subscription, event: "approved") }
                    persist(subscription)
                    publish(PresenceEvent(kind: .subscriptionUpdated, presentity: presentity, watcher: watcher,
                                          package: subscription.package.rawValue))
                    markDirty(subscription, critical: true)
                }
            }
        }
    }

    // MARK: - Watcher information (RFC 3857)

    private func watcherInfo(_ subscription: Subscription) -> WatcherInfo {
        let (authorization, reason, createdAt) = subscription.state.withLockedValue {
            ($0.authorization, $0.terminationReason, $0.createdAt)
        }
        let status: WatcherInfo.Status
        if reason != nil {
            status = .terminated
        } else {
            status = authorization == .pending ? .pending : .active
        }
        return WatcherInfo(id: String(subscription.id.hashValue, radix: 36).replacingOccurrences(of: "-", with: "n"),
                           watcher: subscription.watcher, status: status, event: "subscribe",
                           durationSubscribed: Int((Self.nowMilliseconds() - createdAt) / 1000))
    }

    /// A watcher appeared, changed state or left: the presentity's winfo subscribers hear of it.
    private func watcherChanged(_ subscription: Subscription, event: String) {
        var info = watcherInfo(subscription)
        info.event = event
        let ids = presentities.withLockedValue { $0[subscription.presentity]?.subscriptions ?? [] }
        let watchersOfWatchers = subscriptions.withLockedValue { table in
            ids.compactMap { table[$0] }.filter { $0.package == .watcherInfo }
        }
        for winfo in watchersOfWatchers {
            winfo.state.withLockedValue { state in
                state.watcherInfoChanges.removeAll { $0.id == info.id }
                state.watcherInfoChanges.append(info)
            }
            markDirty(winfo, critical: true)
        }
    }

    // MARK: - NOTIFY (ordered, throttled, coalesced)

    /// Something the watcher should hear about changed. It goes out at once when allowed (no
    /// NOTIFY in flight, interval passed or the change critical); otherwise when the in-flight
    /// NOTIFY completes or the interval ends — with the state as it is then, so the watcher gets
    /// the latest state and never a stale one after a newer.
    private func markDirty(_ subscription: Subscription, critical: Bool) {
        let delay = subscription.state.withLockedValue { state -> TimeAmount? in
            if state.dirty { coalesced.increment() }
            state.dirty = true
            state.critical = state.critical || critical
            guard !state.inFlight, !state.scheduled else { return nil }
            state.scheduled = true
            let now = NIODeadline.now()
            return state.critical || state.nextAllowed <= now ? .zero : state.nextAllowed - now
        }
        guard let delay else { return }
        if delay == .zero {
            subscription.loop.execute { [self] in flush(subscription) }
        } else {
            // A wheel entry rather than a NIO task: with every watcher throttled, thousands wait at once.
            proxy.timerWheels.fineWheel(for: subscription.loop).schedule(after: delay) { [self] in flush(subscription) }
        }
    }

    private func flush(_ subscription: Subscription) {
        let send = subscription.state.withLockedValue { state -> Bool in
            state.scheduled = false
            guard state.dirty, !state.inFlight, !state.finalSent else { return false }
            return true
        }
        if send { sendNotify(subscription) }
    }

    /// Builds and sends the NOTIFY for the subscription's current state.
    private func sendNotify(_ subscription: Subscription, retry: Bool = false) {
        let presentity = presentities.withLockedValue { $0[subscription.presentity] }
        let now = Self.nowMilliseconds()
        // Everything about this NOTIFY is decided under the subscription's lock, CSeq included.
        let prepared = subscription.state.withLockedValue { state -> (SIPMessage, Subscription.Dialog)? in
            guard !state.finalSent else { return nil }
            state.dirty = false
            state.critical = false
            state.inFlight = true
            state.nextAllowed = .now() + state.minInterval
            state.localCSeq += 1
            var headers: [(SIPHeaderName, String)] = [
                (.from, state.dialog.localURI + ";tag=" + state.dialog.localTag), (.to, state.dialog.remoteURI),
                (.callID, state.dialog.callID), (.cseq, String(state.localCSeq) + " NOTIFY"), (.contact, state.dialog.contact),
                (.event, state.dialog.event),
            ]
            if let reason = state.terminationReason {
                headers.append((.subscriptionState, "terminated;reason=" + reason))
                state.finalSent = true
            } else {
                let remaining = max(0, (state.expiresAt - now + 999) / 1000)
                headers.append((.subscriptionState, (state.authorization == .pending ? "pending" : "active") + ";expires=\(remaining)"))
            }
            var body = ByteBuffer()
            switch subscription.package {
            case .presence:
                let etag = state.authorization == .active ? (presentity?.etag ?? "closed") : "closed"
                headers.append((.sipETag, etag))
                if let suppress = state.suppressIfMatch, suppress == etag || suppress == "*", state.terminationReason == nil {
                    // RFC 5839 §4.3: the subscriber has this state already; no body.
                    state.suppressIfMatch = nil
                } else if state.acceptsDiff {
                    // RFC 5263: full state first (and after a refresh), then only what changed.
                    let current = state.authorization == .active
                        ? (presentity?.composed ?? PIDFDocument.closed(entity: subscription.presentity))
                        : PIDFDocument.closed(entity: subscription.presentity)
                    if let sent = state.sentDocument, let diff = current.diff(from: sent, version: state.diffVersion) {
                        body.writeString(diff)
                    } else {
                        body.writeString(current.fullStateXML(version: state.diffVersion))
                    }
                    state.sentDocument = current
                    state.diffVersion += 1
                    headers.append((.contentType, "application/pidf-diff+xml"))
                } else {
                    if state.authorization == .active, let composed = presentity?.composedXML {
                        body.writeString(composed)
                    } else {
                        body.writeString(PIDFDocument.closed(entity: subscription.presentity).xml)
                    }
                    headers.append((.contentType, "application/pidf+xml"))
                }
                state.lastETag = etag
            case .watcherInfo:
                let full = state.watcherInfoNeedsFull
                let watchers: [WatcherInfo]
                if full {
                    let ids = presentity?.subscriptions ?? []
                    let table = subscriptions.withLockedValue { table in ids.compactMap { table[$0] } }
                    watchers = table.filter { $0.package == .presence }.map(watcherInfo)
                } else {
                    watchers = state.watcherInfoChanges
                }
                state.watcherInfoChanges = []
                state.watcherInfoNeedsFull = false
                body.writeString(WatcherInfo.document(resource: subscription.presentity, package: "presence",
                                                      version: state.watcherInfoVersion, full: full, watchers: watchers))
                state.watcherInfoVersion += 1
                headers.append((.contentType, "application/watcherinfo+xml"))
            }
            if state.acceptsGzip, body.readableBytes > 0, let compressed = try? ContentCoding.encode(body, coding: .gzip),
               compressed.readableBytes < body.readableBytes {
                body = compressed
                headers.append((.contentEncoding, "gzip"))
            }
            let uri = state.dialog.remoteTarget
            return (SIPMessage.request(method: .notify, uri: uri, headers: headers, body: body), state.dialog)
        }
        guard let (notify, dialog) = prepared else { return }
        notifies.increment()
        // One outcome per NOTIFY: a late second report must not count as another failure.
        let settled = NIOLockedValueBox(false)
        let complete: @Sendable (ClientTransactionEvent) -> Void = { [self] event in
            if case .response(let response) = event, (response.statusCode ?? 0) < 200 { return }
            let first = settled.withLockedValue { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { notifyCompleted(subscription, event) }
        }
        do {
            try proxy.originateInDialog(notify, remoteTarget: dialog.remoteTarget, routeSet: dialog.routeSet, flow: dialog.flow,
                                        on: subscription.loop, handler: complete)
        } catch {
            complete(.transportError(.unresolvable(dialog.remoteTarget.host)))
        }
    }

    private func notifyCompleted(_ subscription: Subscription, _ event: ClientTransactionEvent) {
        enum Next { case done, retry, terminate(String) }
        var next = Next.done
        switch event {
        case .response(let response):
            guard let code = response.statusCode, code >= 200 else { return }
            if code == 481 {
                next = .terminate("deactivated")
            } else if code == 408 {
                next = .retry
            } else {
                if code >= 300 { notifyFailures.increment() }
                subscription.state.withLockedValue { $0.failures = 0 }
            }
        case .timeout, .transportError:
            next = .retry
        }
        switch next {
        case .done:
            subscription.state.withLockedValue { $0.inFlight = false }
        case .terminate(let reason):
            subscription.state.withLockedValue { state in
                state.inFlight = false
                state.finalSent = true
            }
            // The subscriber no longer has this dialog: nothing more to send (RFC 6665 §4.1.3).
            terminate(subscription, reason: reason, notify: false)
            return
        case .retry:
            notifyFailures.increment()
            let failures = subscription.state.withLockedValue { state -> Int in
                state.failures += 1
                state.inFlight = false
                return state.failures
            }
            if failures > configuration.notifyRetries {
                logger.info("dropping subscription after failed NOTIFYs",
                            metadata: ["presentity": "\(subscription.presentity)", "watcher": "\(subscription.watcher)"])
                subscription.state.withLockedValue { $0.finalSent = true }
                terminate(subscription, reason: "giveup", notify: false)
                return
            }
            // One lost NOTIFY must not end presence: send the current state again a little later.
            subscription.loop.scheduleTask(in: configuration.notifyRetryDelay) { [self] in
                markDirty(subscription, critical: true)
            }
            return
        }
        let pending = subscription.state.withLockedValue { $0.dirty && !$0.finalSent }
        if pending { markDirty(subscription, critical: false) }
    }

    // MARK: - Persistence

    private func stored(_ publication: Publication, presentity: String) -> StoredPublication {
        StoredPublication(presentity: presentity, id: publication.id, etag: publication.etag, xml: publication.document.xml,
                          expiresAt: publication.expiresAt, sequence: publication.sequence)
    }

    private func persist(_ subscription: Subscription) {
        guard let store else { return }
        let record = subscription.state.withLockedValue { state -> StoredSubscription in
            var udpListener: Int?
            var sourceIP: String?
            var sourcePort: Int?
            if case .datagram(let listener, let remote)? = state.dialog.flow?.flow {
                udpListener = listener.rawValue
                sourceIP = remote.ipAddress
                sourcePort = remote.port
            }
            let authorization = switch state.authorization {
            case .active: "active"
            case .pending: "pending"
            case .politelyBlocked: "polite_block"
            }
            return StoredSubscription(
                id: subscription.id, package: subscription.package.rawValue, presentity: subscription.presentity,
                watcher: subscription.watcher, callID: state.dialog.callID, localTag: state.dialog.localTag,
                remoteTag: state.dialog.remoteTag, localURI: state.dialog.localURI, remoteURI: state.dialog.remoteURI,
                remoteTarget: state.dialog.remoteTarget.description, routeSet: state.dialog.routeSet,
                transport: state.dialog.flow?.transport.rawValue ?? "udp", udpListener: udpListener, sourceIP: sourceIP,
                sourcePort: sourcePort, event: state.dialog.event, contact: state.dialog.contact, expiresAt: state.expiresAt,
                authorization: authorization, acceptsGzip: state.acceptsGzip, acceptsDiff: state.acceptsDiff,
                minIntervalMilliseconds: state.minInterval.nanoseconds / 1_000_000, localCSeq: state.localCSeq,
                remoteCSeq: state.remoteCSeq, createdAt: state.createdAt)
        }
        store.save(record)
    }

    /// Brings back what the store kept: publications (with their expiry), subscriptions (their
    /// dialogs, to be notified on the next change), and decisions. Call before serving.
    public func restore() async throws {
        guard let store else { return }
        let now = Self.nowMilliseconds()
        let snapshot = try await store.load(now: now)
        var restoredPresentities: Set<String> = []
        for record in snapshot.publications {
            guard let document = try? PIDFDocument(parsing: Array(record.xml.utf8)) else { continue }
            presentities.withLockedValue { table in
                var entry = table[record.presentity] ?? Presentity()
                entry.publications.append(Publication(id: record.id, etag: record.etag, document: document,
                                                      expiresAt: record.expiresAt, sequence: record.sequence))
                entry.publications.sort { $0.sequence < $1.sequence }
                table[record.presentity] = entry
            }
            sequence.withLockedValue { $0 = max($0, record.sequence) }
            schedulePublicationExpiry(record.presentity, etag: record.etag, after: record.expiresAt - now)
            restoredPresentities.insert(record.presentity)
        }
        for record in snapshot.decisions {
            guard let decision = WatcherDecision(rawValue: record.decision) else { continue }
            presentities.withLockedValue { table in
                var entry = table[record.presentity] ?? Presentity()
                entry.decisions[record.watcher] = decision
                table[record.presentity] = entry
            }
        }
        for record in snapshot.subscriptions {
            guard let package = Subscription.Package(rawValue: record.package), let target = try? SIPURI(parsing: record.remoteTarget),
                  let transport = SIPTransportProtocol(rawValue: record.transport) else { continue }
            var flow: (flow: SIPFlow, transport: SIPTransportProtocol)?
            if let listener = record.udpListener, let ip = record.sourceIP, let port = record.sourcePort,
               let remote = try? SocketAddress(ipAddress: ip, port: port) {
                flow = (.datagram(listener: ListenerID(listener), remote: remote), transport)
            }
            let authorization: Subscription.Authorization = switch record.authorization {
            case "pending": .pending
            case "polite_block": .politelyBlocked
            default: .active
            }
            let dialog = Subscription.Dialog(callID: record.callID, localTag: record.localTag, remoteTag: record.remoteTag,
                                             localURI: record.localURI, remoteURI: record.remoteURI, remoteTarget: target,
                                             routeSet: record.routeSet, flow: flow, event: record.event, contact: record.contact)
            // NOTIFYs sent since the last save are not known: jump well past them (CSeq only has to grow).
            var state = Subscription.State(dialog: dialog, remoteCSeq: record.remoteCSeq, expiresAt: record.expiresAt,
                                           authorization: authorization, acceptsGzip: record.acceptsGzip,
                                           minInterval: .milliseconds(record.minIntervalMilliseconds), createdAt: record.createdAt)
            state.localCSeq = record.localCSeq &+ 100_000
            state.acceptsDiff = record.acceptsDiff ?? false
            let subscription = Subscription(id: record.id, package: package, presentity: record.presentity, watcher: record.watcher,
                                            loop: group.next(), state: state)
            subscriptions.withLockedValue { $0[record.id] = subscription }
            presentities.withLockedValue { table in
                var entry = table[record.presentity] ?? Presentity()
                entry.subscriptions.insert(record.id)
                table[record.presentity] = entry
            }
            restoredPresentities.insert(record.presentity)
        }
        for presentity in restoredPresentities { recomposeSilently(presentity) }
        logger.notice("restored presence", metadata: ["publications": "\(snapshot.publications.count)",
                                                      "subscriptions": "\(snapshot.subscriptions.count)"])
    }

    /// Composes a restored presentity without notifying: its watchers saw this state before the restart.
    private func recomposeSilently(_ aor: String) {
        presentities.withLockedValue { table in
            guard var entry = table[aor] else { return }
            if !entry.publications.isEmpty {
                entry.composed = PIDFDocument.compose(entity: aor, entry.publications.map(\.document))
                entry.basicStatus = entry.composed?.basicStatus ?? [:]
                entry.etag = Self.newETag()
            }
            table[aor] = entry
        }
    }

    /// Waits until the store has every change made so far.
    public func flush() async throws {
        try await store?.flush()
    }

    // MARK: - Management

    /// The state watchers of a presentity see now (nil when it has none), as PIDF.
    public func state(of presentity: String) -> String? {
        presentities.withLockedValue { $0[presentity]?.composedXML }
    }

    /// The presentity's watchers with their status.
    public func watchers(of presentity: String) -> [WatcherInfo] {
        let ids = presentities.withLockedValue { $0[presentity]?.subscriptions ?? [] }
        return subscriptions.withLockedValue { table in ids.compactMap { table[$0] } }
            .filter { $0.package == .presence }.map(watcherInfo)
    }

    /// Publishes state on behalf of a user (an operator, an application); returns the entity tag.
    @discardableResult
    public func publish(presentity: String, document: PIDFDocument, expires: UInt32) -> String {
        let etag = Self.newETag()
        let order = sequence.withLockedValue { value -> UInt64 in value += 1; return value }
        let now = Self.nowMilliseconds()
        presentities.withLockedValue { table in
            var entry = table[presentity] ?? Presentity()
            let publication = Publication(id: Self.newETag(), etag: etag, document: document, expiresAt: now + Int64(expires) * 1000,
                                          sequence: order)
            entry.publications.append(publication)
            table[presentity] = entry
            store?.save(stored(publication, presentity: presentity))
        }
        schedulePublicationExpiry(presentity, etag: etag, after: Int64(expires) * 1000)
        recompose(presentity)
        return etag
    }

    /// One line per presentity Tern holds state or watchers for, by name (management dump).
    public struct PresentitySummary: Sendable, Hashable {
        public var presentity: String
        public var publications: Int
        public var subscriptions: Int
        /// Whether any tuple is open; nil without a composed document.
        public var open: Bool?
    }

    public func presentitySummaries() -> [PresentitySummary] {
        presentities.withLockedValue { table in
            table.map { name, entry in
                PresentitySummary(presentity: name, publications: entry.publications.count, subscriptions: entry.subscriptions.count,
                                  open: entry.composed.map { document in document.elements.contains { $0.basic == "open" } })
            }
        }.sorted { $0.presentity < $1.presentity }
    }

    /// Number of presentities with state or watchers (metrics).
    public var presentityCount: Int { presentities.withLockedValue { $0.count } }

    /// Number of live subscriptions (metrics, tests).
    public var subscriptionCount: Int { subscriptions.withLockedValue { $0.count } }
}
