public import CoreProxy
public import NIOCore
import NIOConcurrencyHelpers
public import SIP
public import Logging
import Metrics

/// IMS service control (TS 24.229 5.4.1.7, 5.4.3.2, 5.4.3.3): initial requests visit the
/// application servers their user's initial filter criteria name, by priority, originating side
/// first, then terminating, each coming back through an ODI Route; registrations are reported to
/// the servers by third-party REGISTERs.
public final class IMSServiceControl: ApplicationServerRouting, Sendable {
    /// Where a request is in its chain of application servers.
    struct Position: Sendable {
        var sessionCase: InitialFilterCriteria.SessionCase
        var servedUser: SIPURI
        var next: Int
        var createdAt: Int64
    }

    private let profiles: IMSProfiles
    private let policy: IMSPolicy
    private let location: LocationService
    private let proxy: StatefulProxy
    private let identity: LocalIdentity
    private let loops: any EventLoopGroup
    private let logger: Logger
    private let positions = NIOLockedValueBox<[String: Position]>([:])
    private let visits = Counter(label: "tern.ims.application_server_visits")
    private let thirdParty = Counter(label: "tern.ims.third_party_registers")
    private let thirdPartyFailed = Counter(label: "tern.ims.third_party_register_failures")

    public init(profiles: IMSProfiles, policy: IMSPolicy, location: LocationService, proxy: StatefulProxy, identity: LocalIdentity,
                loops: any EventLoopGroup, logger: Logger) {
        self.profiles = profiles
        self.policy = policy
        self.location = location
        self.proxy = proxy
        self.identity = identity
        self.loops = loops
        self.logger = logger
    }

    static func now() -> Int64 { SystemLocationClock().nowMilliseconds() }

    // MARK: - Initial requests (ISC)

    public func nextApplicationServer(for request: SIPMessage, source: SocketAddress, ownRoutes: [SIPURI]) -> ApplicationServerVisit? {
        guard request.method != .register else { return nil }
        if let token = ownRoutes.compactMap({ $0.user }).first(where: { $0.hasPrefix("odi-") }) {
            // Back from an application server: on with the criteria after the one that sent it there.
            guard let position = positions.withLockedValue({ $0.removeValue(forKey: token) }) else { return nil }
            if let visit = visit(request, from: position) { return visit }
            guard position.sessionCase == .originating || position.sessionCase == .originatingUnregistered else { return nil }
            return terminating(request)
        }
        if let caller = originatingUser(request, source: source),
           let visit = visit(request, from: Position(sessionCase: .originating, servedUser: caller, next: 0, createdAt: Self.now())) {
            return visit
        }
        return terminating(request)
    }

    /// The registered user that sent the request (the identity the network asserts for it).
    private func originatingUser(_ request: SIPMessage, source: SocketAddress) -> SIPURI? {
        if let asserted = request.firstValue(.pAssertedIdentity).flatMap({ try? SIPAddress(parsing: $0) })?.uri,
           profiles.membership(of: asserted) != nil {
            return asserted
        }
        return policy.assertedIdentity(request, preferred: nil, source: source)
    }

    private func terminating(_ request: SIPMessage) -> ApplicationServerVisit? {
        guard let target = try? request.requestURI(), let membership = profiles.membership(of: target), let aor = membership.setAOR else {
            return nil
        }
        let registered = !location.bindings(for: aor).isEmpty
        return visit(request, from: Position(sessionCase: registered ? .terminatingRegistered : .terminatingUnregistered,
                                             servedUser: target, next: 0, createdAt: Self.now()))
    }

    /// The first criterion from `position.next` on that matches, as a visit to its server.
    private func visit(_ request: SIPMessage, from position: Position) -> ApplicationServerVisit? {
        guard let membership = profiles.membership(of: position.servedUser) else { return nil }
        let criteria = membership.profile.filterCriteria
        let context = InitialFilterCriteria.Context(request: request, sessionCase: position.sessionCase)
        guard position.next < criteria.count,
              let index = (position.next..<criteria.count).first(where: { criteria[$0].matches(context) }),
              let listener = identity.listener(for: .udp, ipv6: false) ?? identity.boundListeners.first
        else { return nil }
        let token = "odi-" + SIPIdentifiers.tag() + SIPIdentifiers.tag()
        var next = position
        next.next = index + 1
        positions.withLockedValue { table in
            // A request that never comes back leaves its position behind: old ones go.
            if table.count > 10_000 {
                let cutoff = Self.now() - 300_000
                table = table.filter { $0.value.createdAt > cutoff }
            }
            table[token] = next
        }
        visits.increment()
        let served = position.sessionCase == .originating || position.sessionCase == .originatingUnregistered ? "orig" : "term"
        let regstate = position.sessionCase == .terminatingUnregistered || position.sessionCase == .originatingUnregistered ? "unreg" : "reg"
        let back = "<sip:" + token + "@" + LocalIdentity.hostPort(listener)
            + (listener.spec.transport == .udp ? "" : ";transport=" + listener.spec.transport.rawValue) + ";lr>"
        return ApplicationServerVisit(
            routes: ["<" + criteria[index].applicationServer.serverName.description + ";lr>", back],
            addedHeaders: [(.pServedUser, "<" + position.servedUser.description + ">;sescase=" + served + ";regstate=" + regstate)])
    }

    // MARK: - Third-party registration (TS 24.229 5.4.1.7)

    /// Sends a REGISTER to every application server whose criteria match this registration; a
    /// server that fails with DefaultHandling terminate de-registers the user. `trusted` says the
    /// REGISTER came from inside the trust domain (a P-CSCF): only then are its access network,
    /// visited network and charging vector passed on (RFC 7315); otherwise the network starts a
    /// charging vector of its own.
    public func registered(_ request: SIPMessage, response: SIPMessage, aor: String, kind: Int, trusted: Bool) {
        guard let to = ((try? request.to()) ?? nil)?.uri, let membership = profiles.membership(of: to) else { return }
        let context = InitialFilterCriteria.Context(request: request, sessionCase: .originating, registrationType: kind)
        let expires = kind == 2 ? 0 : grantedExpires(response)
        var carried: [(SIPHeaderName, String)] = []
        if trusted {
            for name in [SIPHeaderName.pChargingVector, .pAccessNetworkInfo, .pVisitedNetworkID] {
                for value in request.values(name) { carried.append((name, value)) }
            }
        }
        if !carried.contains(where: { $0.0 == .pChargingVector }) { carried.append((.pChargingVector, policy.newChargingVector())) }
        for criterion in membership.profile.filterCriteria where criterion.matches(context) {
            sendThirdPartyRegister(criterion.applicationServer, impu: to, original: request, response: response, expires: expires, aor: aor,
                                   carried: carried)
        }
    }

    private func grantedExpires(_ response: SIPMessage) -> Int {
        let contacts = (try? response.contacts()).flatMap { value -> [SIPAddress]? in
            if case .addresses(let list) = value { return list }
            return nil
        } ?? []
        return contacts.compactMap { $0.expires.map(Int.init) }.max() ?? 0
    }

    private func sendThirdPartyRegister(_ server: InitialFilterCriteria.ApplicationServer, impu: SIPURI, original: SIPMessage,
                                        response: SIPMessage, expires: Int, aor: String, carried: [(SIPHeaderName, String)]) {
        let ourURI = policy.configuration.serverURI
        var headers: [(SIPHeaderName, String)] = [
            (.from, "<" + ourURI.description + ">;tag=" + SIPIdentifiers.tag()), (.to, "<" + impu.description + ">"),
            (.callID, SIPIdentifiers.callID()), (.cseq, "1 REGISTER"), (.contact, "<" + ourURI.description + ">"),
            (.expires, String(expires)),
        ]
        headers += carried
        var request = SIPMessage.request(method: .register, uri: server.serverName, headers: headers)
        if server.includeRegisterRequest || server.includeRegisterResponse {
            let embedded = server.includeRegisterRequest ? original : response
            request.setBody(embedded.serialized(), contentType: SIPMediaType(type: "message", subtype: "sip"))
        } else if let info = server.serviceInfo {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ims-3gpp version=\"1\"><service-info>" + info
                + "</service-info></ims-3gpp>\n"
            request.setBody(ByteBuffer(string: body), contentType: SIPMediaType(type: "application", subtype: "3gpp-ims+xml"))
        }
        thirdParty.increment()
        do {
            try proxy.sendRequest(request, to: server.serverName, on: loops.next()) { [self] event in
                let failed: Bool
                switch event {
                case .response(let answer): failed = (answer.statusCode ?? 0) >= 300
                case .timeout, .transportError: failed = true
                }
                guard failed else { return }
                thirdPartyFailed.increment()
                if server.defaultHandling == .terminate, expires > 0 { deregister(aor, server: server.serverName) }
            }
        } catch {
            thirdPartyFailed.increment()
        }
    }

    /// Network-initiated de-registration (DefaultHandling SESSION_TERMINATED on a REGISTER).
    private func deregister(_ aor: String, server: SIPURI) {
        logger.notice("de-registering: an application server refused the registration", metadata: ["aor": "\(aor)", "server": "\(server)"])
        removeBindings(aor)
    }

    private let regEvents = NIOLockedValueBox<RegEventService?>(nil)

    /// The reg event package, told when the network removes a registration.
    public func setRegEvents(_ service: RegEventService) {
        regEvents.withLockedValue { $0 = service }
    }

    private func removeBindings(_ aor: String) {
        let removal = { [location] in location.update(aor: aor) { bindings in bindings.removeAll() } }
        if let service = regEvents.withLockedValue({ $0 }) { service.deactivating(aor, removal) } else { removal() }
    }

    /// A subscriber's profile is replaced (`new`) or removed (nil), as the HSS's Push-Profile or
    /// Registration-Termination would (TS 29.228 §6.1.2–6.1.3). A registered implicit set whose
    /// default identity stays keeps its devices, and its reg watchers hear the identities that came
    /// and went; a set that is gone, or whose default identity changed, is de-registered by the
    /// network (reg watchers hear `deactivated`, application servers get a de-REGISTER).
    /// - Returns: how many bindings went.
    @discardableResult
    public func replaceProfile(privateID: String, with new: IMSSubscription?) -> Int {
        var removed = 0
        var surviving: [(setAOR: String, identities: [String])] = []
        for old in profiles.subscription(privateID: privateID)?.serviceProfiles ?? [] {
            guard let oldDefault = old.defaultIdentity else { continue }
            let successor = new?.serviceProfiles.first { $0.defaultIdentity?.key == oldDefault.key }
            if let successor {
                surviving.append((oldDefault.key, successor.associatedIdentities.map { $0.uri.description }))
            } else {
                // Before the old profile goes: the de-REGISTERs follow its filter criteria.
                removed += deregister(identity: oldDefault.uri) ?? 0
            }
        }
        if let new { profiles.put(new) } else { profiles.remove(privateID: privateID) }
        if let service = regEvents.withLockedValue({ $0 }) {
            for set in surviving { service.identitiesChanged(setAOR: set.setAOR, identities: set.identities) }
        }
        return removed
    }

    /// Network-initiated de-registration of the user that has `identity` (TS 24.229 5.4.1.5): its
    /// devices' bindings go (reg watchers hear `deactivated`), and the application servers whose
    /// criteria cover de-registration get a third-party REGISTER with Expires 0.
    /// - Returns: how many bindings went, or nil when no subscriber has the identity.
    public func deregister(identity: SIPURI) -> Int? {
        guard let membership = profiles.membership(of: identity), let aor = membership.setAOR,
              let impu = membership.profile.defaultIdentity?.uri else { return nil }
        let count = location.bindings(for: aor).count
        guard count > 0 else { return 0 }
        removeBindings(aor)
        let request = SIPMessage.request(method: .register, uri: policy.configuration.serverURI, headers: [
            (.from, "<" + impu.description + ">;tag=" + SIPIdentifiers.tag()), (.to, "<" + impu.description + ">"),
            (.callID, SIPIdentifiers.callID()), (.cseq, "1 REGISTER"), (.contact, "*"), (.expires, "0"),
        ])
        let context = InitialFilterCriteria.Context(request: request, sessionCase: .originating, registrationType: 2)
        for criterion in membership.profile.filterCriteria where criterion.matches(context) {
            var server = criterion.applicationServer
            // There is no REGISTER of the user's to embed: the network ended the registration.
            server.includeRegisterRequest = false
            server.includeRegisterResponse = false
            sendThirdPartyRegister(server, impu: impu, original: request, response: request, expires: 0, aor: aor,
                                   carried: [(.pChargingVector, policy.newChargingVector())])
        }
        return count
    }
}
