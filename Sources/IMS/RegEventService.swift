public import CoreProxy
import NIOCore
import NIOConcurrencyHelpers
public import SIP
public import Logging

/// The `reg` event package (RFC 3680): the user itself, the P-CSCF on its stored Path, and
/// configured application servers subscribe to a user's registration state; the first NOTIFY has
/// the full state, and every change of a binding follows as a partial one, its version one higher.
public final class RegEventService: SIPRequestHandler, LocationObserver, Sendable {
    public struct Configuration: Sendable {
        /// Application servers (host names or addresses) that may subscribe to anyone's registrations.
        public var applicationServers: [String]
        public var defaultExpires: UInt32
        public var maxExpires: UInt32

        public init(applicationServers: [String] = [], defaultExpires: UInt32 = 3600, maxExpires: UInt32 = 86_400) {
            self.applicationServers = applicationServers
            self.defaultExpires = defaultExpires
            self.maxExpires = maxExpires
        }
    }

    final class Subscription: Sendable {
        let key: String
        let setAOR: String
        let loop: any EventLoop
        let dialog: Dialog
        let state: NIOLockedValueBox<State>

        struct Dialog: Sendable {
            var callID: String
            var localTag: String
            var localURI: String
            var remoteURI: String
            var remoteTarget: SIPURI
            var routeSet: [String]
            var flow: (flow: SIPFlow, transport: SIPTransportProtocol)?
            var contact: String
        }

        struct State {
            /// The public identities of the implicit set: a profile change may add or remove some.
            var identities: [String]
            var localCSeq: UInt32 = 0
            var version = 0
            var expiresAt: Int64
            var timer: Scheduled<Void>?
            var ended = false
        }

        init(key: String, setAOR: String, identities: [String], loop: any EventLoop, dialog: Dialog, expiresAt: Int64) {
            self.key = key
            self.setAOR = setAOR
            self.loop = loop
            self.dialog = dialog
            self.state = NIOLockedValueBox(State(identities: identities, expiresAt: expiresAt))
        }

        var identities: [String] { state.withLockedValue { $0.identities } }
    }

    public let methods: [SIPMethod] = [.subscribe]
    public let configuration: Configuration
    private let profiles: IMSProfiles
    private let location: LocationService
    private let proxy: StatefulProxy
    private let identity: LocalIdentity
    private let logger: Logger
    private let subscriptions = NIOLockedValueBox<[String: Subscription]>([:])
    /// Sets whose bindings the network is removing: their contacts are reported deactivated, not unregistered.
    private let deactivating = NIOLockedValueBox<Set<String>>([])

    /// Runs `removal` (a network-initiated de-registration of the set `setAOR`) so that watchers
    /// hear `deactivated` (RFC 3680 §5.3) for the contacts it removes.
    public func deactivating(_ setAOR: String, _ removal: () -> Void) {
        deactivating.withLockedValue { _ = $0.insert(setAOR) }
        removal()
        deactivating.withLockedValue { _ = $0.remove(setAOR) }
    }

    public init(configuration: Configuration, profiles: IMSProfiles, location: LocationService, proxy: StatefulProxy,
                identity: LocalIdentity, logger: Logger) {
        self.configuration = configuration
        self.profiles = profiles
        self.location = location
        self.proxy = proxy
        self.identity = identity
        self.logger = logger
    }

    public var count: Int { subscriptions.withLockedValue { $0.count } }

    static func now() -> Int64 { SystemLocationClock().nowMilliseconds() }

    // MARK: - SUBSCRIBE

    public func handle(_ transaction: ServerTransaction) {
        let request = transaction.request
        guard let event = (try? request.event()) ?? nil, event.package.caseInsensitiveEquals("reg") else {
            transaction.respond(SIPStatus(489), headers: [(.allowEvents, "reg")])
            return
        }
        let requested = ((try? request.expires()) ?? nil) ?? configuration.defaultExpires
        let expires = min(requested, configuration.maxExpires)
        guard let to = (try? request.to()) ?? nil, let from = (try? request.from()) ?? nil, let callID = request.callID,
              let remoteTag = from.tag else {
            transaction.respond(SIPStatus(400, "Bad Dialog Headers"))
            return
        }
        if let toTag = to.tag {
            refresh(transaction, key: callID + "|" + toTag + "|" + remoteTag, expires: expires)
            return
        }
        guard let target = try? request.requestURI(), let membership = profiles.membership(of: target), let setAOR = membership.setAOR else {
            transaction.respond(SIPStatus(404, "Unknown Public Identity"))
            return
        }
        guard mayWatch(request, from: from.uri, membership: membership, source: transaction.inbound.source, setAOR: setAOR) else {
            transaction.respond(SIPStatus(403, "Not Allowed To Watch This Registration"))
            return
        }
        guard case .addresses(let contacts) = (try? request.contacts()) ?? .none, let contact = contacts.first else {
            transaction.respond(SIPStatus(400, "Missing Contact"))
            return
        }
        let inbound = transaction.inbound
        let listener = identity.listener(for: inbound.transport, ipv6: inbound.local.protocol == .inet6)
        let ourContact = "<sip:" + (listener.map(LocalIdentity.hostPort) ?? "127.0.0.1")
            + (inbound.transport == .udp ? "" : ";transport=" + inbound.transport.rawValue) + ">"
        let dialog = Subscription.Dialog(
            callID: callID, localTag: transaction.localTag, localURI: request.firstValue(.to) ?? "", remoteURI: request.firstValue(.from) ?? "",
            remoteTarget: contact.uri, routeSet: request.values(.recordRoute), flow: (inbound.flow, inbound.transport), contact: ourContact)
        let key = callID + "|" + transaction.localTag + "|" + remoteTag
        let identities = membership.profile.associatedIdentities.map { $0.uri.description }
        let subscription = Subscription(key: key, setAOR: setAOR, identities: identities, loop: transaction.eventLoop, dialog: dialog,
                                        expiresAt: Self.now() + Int64(expires) * 1000)
        transaction.respond(SIPStatus(200), headers: [(.expires, String(expires)), (.contact, ourContact)])
        if expires == 0 {
            notify(subscription, document: fullState(subscription), terminated: "timeout")
            return
        }
        subscriptions.withLockedValue { $0[key] = subscription }
        schedule(subscription)
        notify(subscription, document: fullState(subscription), terminated: nil)
    }

    /// RFC 3680 §5.1: the user for its own registrations, the P-CSCF on the stored Path, and the
    /// configured application servers.
    private func mayWatch(_ request: SIPMessage, from: SIPURI, membership: IMSProfiles.Membership, source: SocketAddress,
                          setAOR: String) -> Bool {
        if let watcher = profiles.membership(of: from), watcher.subscription.privateID == membership.subscription.privateID { return true }
        let host = source.ipAddress ?? ""
        if configuration.applicationServers.contains(where: { $0.caseInsensitiveEquals(host) || $0.caseInsensitiveEquals(from.host) }) {
            return true
        }
        let pathHosts = location.bindings(for: setAOR).flatMap(\.path).compactMap { (try? SIPAddress(parsing: $0))?.uri.host }
        return pathHosts.contains { $0.caseInsensitiveEquals(host) || $0.caseInsensitiveEquals(from.host) }
    }

    private func refresh(_ transaction: ServerTransaction, key: String, expires: UInt32) {
        guard let subscription = subscriptions.withLockedValue({ $0[key] }) else {
            transaction.respond(SIPStatus(481))
            return
        }
        transaction.respond(SIPStatus(200), headers: [(.expires, String(expires)), (.contact, subscription.dialog.contact)])
        if expires == 0 {
            end(subscription, reason: "timeout")
            return
        }
        subscription.state.withLockedValue { $0.expiresAt = Self.now() + Int64(expires) * 1000 }
        schedule(subscription)
        notify(subscription, document: fullState(subscription), terminated: nil)
    }

    private func schedule(_ subscription: Subscription) {
        let (delay, old) = subscription.state.withLockedValue { state -> (Int64, Scheduled<Void>?) in
            (max(0, state.expiresAt - Self.now()), state.timer)
        }
        old?.cancel()
        let timer = subscription.loop.scheduleTask(in: .milliseconds(delay)) { [self] in end(subscription, reason: "timeout") }
        subscription.state.withLockedValue { $0.timer = timer }
    }

    private func end(_ subscription: Subscription, reason: String) {
        guard subscriptions.withLockedValue({ $0.removeValue(forKey: subscription.key) }) != nil else { return }
        subscription.state.withLockedValue { $0.timer }?.cancel()
        notify(subscription, document: fullState(subscription), terminated: reason)
    }

    // MARK: - State documents

    private func contactID(_ binding: Binding) -> String {
        String(fnv1a(binding.aor + "|" + binding.key) % 1_000_000_000, radix: 36)
    }

    private func fullState(_ subscription: Subscription) -> RegInfoDocument {
        let now = Self.now()
        let bindings = location.bindings(for: subscription.setAOR)
        let contacts = bindings.map { binding in
            RegInfoDocument.Contact(id: contactID(binding), state: "active", event: "registered",
                                    expires: binding.remainingSeconds(at: now), uri: binding.contactText)
        }
        return RegInfoDocument(version: 0, state: "full", registrations: subscription.identities.map { identity in
            RegInfoDocument.Registration(aor: identity, id: String(fnv1a(identity) % 1_000_000_000, radix: 36),
                                         state: bindings.isEmpty ? "init" : "active", contacts: contacts)
        })
    }

    // MARK: - Changes

    public func locationChanged(_ event: BindingEvent) {
        let watching = subscriptions.withLockedValue { $0.values.filter { $0.setAOR == event.binding.aor } }
        guard !watching.isEmpty else { return }
        let binding = event.binding
        let (state, name): (String, String)
        switch event.kind {
        case .added: (state, name) = ("active", "registered")
        case .refreshed: (state, name) = ("active", "refreshed")
        case .removed:
            (state, name) = ("terminated", deactivating.withLockedValue { $0.contains(binding.aor) } ? "deactivated" : "unregistered")
        case .expired: (state, name) = ("terminated", "expired")
        }
        let remaining = location.bindings(for: binding.aor)
        let contact = RegInfoDocument.Contact(id: contactID(binding), state: state, event: name,
                                              expires: state == "active" ? binding.remainingSeconds(at: Self.now()) : nil,
                                              uri: binding.contactText)
        for subscription in watching {
            let document = RegInfoDocument(version: 0, state: "partial", registrations: subscription.identities.map { identity in
                RegInfoDocument.Registration(aor: identity, id: String(fnv1a(identity) % 1_000_000_000, radix: 36),
                                             state: remaining.isEmpty ? "terminated" : "active", contacts: [contact])
            })
            subscription.loop.execute { [self] in
                notify(subscription, document: document, terminated: nil)
                // The user has no device left: the registration is over, and so is the subscription.
                if remaining.isEmpty { end(subscription, reason: "noresource") }
            }
        }
    }

    /// The implicit set `setAOR` now has `identities` (a profile change through the management API
    /// or AMQP): watchers hear the new ones as registered with every current contact `created`, and
    /// the ones gone as terminated with their contacts `deactivated` (RFC 3680 §5.3).
    public func identitiesChanged(setAOR: String, identities: [String]) {
        let watching = subscriptions.withLockedValue { $0.values.filter { $0.setAOR == setAOR } }
        guard !watching.isEmpty else { return }
        let now = Self.now()
        let bindings = location.bindings(for: setAOR)
        func contacts(state: String, event: String) -> [RegInfoDocument.Contact] {
            bindings.map { binding in
                RegInfoDocument.Contact(id: contactID(binding), state: state, event: event,
                                        expires: state == "active" ? binding.remainingSeconds(at: now) : nil, uri: binding.contactText)
            }
        }
        for subscription in watching {
            let before = subscription.state.withLockedValue { state -> [String] in
                defer { state.identities = identities }
                return state.identities
            }
            let added = identities.filter { !before.contains($0) }
            let removed = before.filter { !identities.contains($0) }
            guard !added.isEmpty || !removed.isEmpty else { continue }
            let registrations = added.map { identity in
                RegInfoDocument.Registration(aor: identity, id: String(fnv1a(identity) % 1_000_000_000, radix: 36),
                                             state: bindings.isEmpty ? "init" : "active", contacts: contacts(state: "active", event: "created"))
            } + removed.map { identity in
                RegInfoDocument.Registration(aor: identity, id: String(fnv1a(identity) % 1_000_000_000, radix: 36),
                                             state: "terminated", contacts: contacts(state: "terminated", event: "deactivated"))
            }
            let document = RegInfoDocument(version: 0, state: "partial", registrations: registrations)
            subscription.loop.execute { [self] in notify(subscription, document: document, terminated: nil) }
        }
    }

    // MARK: - NOTIFY

    private func notify(_ subscription: Subscription, document: RegInfoDocument, terminated reason: String?) {
        let dialog = subscription.dialog
        let prepared = subscription.state.withLockedValue { state -> (UInt32, Int, Int64)? in
            guard !state.ended else { return nil }
            if reason != nil { state.ended = true }
            state.localCSeq += 1
            // RFC 3680 §5.2: every document, full or partial, one version above the last.
            defer { state.version += 1 }
            return (state.localCSeq, state.version, state.expiresAt)
        }
        guard let (cseq, version, expiresAt) = prepared else { return }
        var body = document
        body.version = version
        let remaining = max(0, (expiresAt - Self.now() + 999) / 1000)
        let headers: [(SIPHeaderName, String)] = [
            (.from, dialog.localURI + ";tag=" + dialog.localTag), (.to, dialog.remoteURI), (.callID, dialog.callID),
            (.cseq, String(cseq) + " NOTIFY"), (.contact, dialog.contact), (.event, "reg"),
            (.subscriptionState, reason.map { "terminated;reason=" + $0 } ?? "active;expires=\(remaining)"),
        ]
        var request = SIPMessage.request(method: .notify, uri: dialog.remoteTarget, headers: headers)
        request.setBody(ByteBuffer(string: body.xml), contentType: SIPMediaType(type: "application", subtype: "reginfo+xml"))
        do {
            try proxy.originateInDialog(request, remoteTarget: dialog.remoteTarget, routeSet: dialog.routeSet, flow: dialog.flow,
                                        on: subscription.loop) { [self] event in
                switch event {
                case .response(let response):
                    // RFC 6665 §4.1.3: the subscriber does not know the subscription (481) or refuses it for good.
                    if let code = response.statusCode, code == 481 || code >= 600 { drop(subscription) }
                case .timeout, .transportError:
                    drop(subscription)
                }
            }
        } catch {
            logger.warning("reg NOTIFY not sent", metadata: ["error": "\(error)"])
            drop(subscription)
        }
    }

    private func drop(_ subscription: Subscription) {
        subscriptions.withLockedValue { _ = $0.removeValue(forKey: subscription.key) }
        subscription.state.withLockedValue { $0.timer }?.cancel()
    }
}
