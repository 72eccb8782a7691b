public import SIP
public import Logging
import NIOCore
import NIOConcurrencyHelpers

/// The registrar (RFC 3261 §10.3) with outbound (RFC 5626 §6), GRUU (RFC 5627 §5) and Path
/// (RFC 3327 §5.3): owns REGISTER and keeps the ``LocationService``.
public final class Registrar: SIPRequestHandler {
    public struct Configuration: Sendable {
        /// Domains this registrar serves; empty means every domain (default).
        public var domains: [String]
        /// Expires when a REGISTER names none (default 3600 s).
        public var defaultExpires: UInt32
        /// Shortest accepted non-zero expiry; shorter ones get 423 (default 60 s).
        public var minExpires: UInt32
        /// Longest granted expiry; longer requests are cut to it (default 7200 s).
        public var maxExpires: UInt32
        /// Keep only the newest contact of each AOR (default false).
        public var singleContactPerAOR: Bool
        /// Most contacts per AOR; a REGISTER that would exceed it gets 403 (default 32).
        public var maxContactsPerAOR: Int
        /// The push services devices may register for (RFC 8599 §5.6.1); nil when this server
        /// sends no pushes, and push parameters are then stored without a promise (default nil).
        public var pushProviders: Set<String>? = nil
        /// The `+sip.pnsreg` value offered to a device that asks: re-register this many seconds
        /// before the binding expires (RFC 8599 §8.4, more than 120; default 130).
        public var pushRegistrationMargin = 130
        /// What a REGISTER with Path from a UA that does not say `Supported: path` gets (RFC 3327 §5.3).
        public var pathMode: PathMode = .lazy
        /// Answer REGISTER without keeping its transaction once answered, as Kamailio's and
        /// OpenSIPS's registrars do (`sl_send_reply`; RFC 3261 §8.2.7's stateless UAS): over UDP
        /// nothing of the request stays for Timer J's 32 s, so a registration costs its binding alone
        /// in memory (a kept transaction also left its freed memory resident between the live
        /// bindings: about 4 KB per binding against 0.8 KB). A retransmission is answered anew: a
        /// REGISTER with the Call-ID, CSeq and branch that set a binding leaves it as it is and gets
        /// the current bindings and the same To tag; its credentials' repeated nonce-count is taken
        /// for what it is within 32 s (default true).
        public var statelessReplies = true

        /// Path without the UA's support, as Kamailio's registrar names the choices.
        public enum PathMode: String, Sendable, CaseIterable {
            /// Stored, never echoed in the 200 OK.
            case off
            /// Stored, echoed when the UA supports path (default).
            case lazy
            /// Refused with 420 Bad Extension and `Unsupported: path` (a P-CSCF must add `Supported: path`).
            case strict
        }

        public init(domains: [String] = [], defaultExpires: UInt32 = 3600, minExpires: UInt32 = 60,
                    maxExpires: UInt32 = 7200, singleContactPerAOR: Bool = false, maxContactsPerAOR: Int = 32) {
            self.domains = domains
            self.defaultExpires = defaultExpires
            self.minExpires = minExpires
            self.maxExpires = maxExpires
            self.singleContactPerAOR = singleContactPerAOR
            self.maxContactsPerAOR = maxContactsPerAOR
        }
    }

    public let methods: [SIPMethod] = [.register]
    /// A REGISTER's body is never read (a third-party REGISTER's message/sip is not marked required).
    public let acceptedBodyTypes: [String]? = []
    public let optionTags = ["path", "gruu", "outbound"]
    public let configuration: Configuration
    public let location: LocationService
    private let logger: Logger
    private let identity: LocalIdentity

    /// The PURRs handed to push-capable devices (RFC 8599 §6); the proxy wakes them by these.
    public let pushWakeTable = PushWakeTable()
    private let policyBox = NIOLockedValueBox<(any RegistrationPolicy)?>(nil)

    /// Lets a feature (IMS) review registrations and map identities to the AOR that holds bindings.
    public func setPolicy(_ policy: any RegistrationPolicy) {
        policyBox.withLockedValue { $0 = policy }
    }

    public var policy: (any RegistrationPolicy)? { policyBox.withLockedValue { $0 } }

    public init(configuration: Configuration, location: LocationService, identity: LocalIdentity, logger: Logger) {
        self.configuration = configuration
        self.location = location
        self.identity = identity
        self.logger = logger
    }

    /// Whether this server is responsible for `host` (RFC 3261 §10.3 step 1).
    public func servesDomain(_ host: String) -> Bool {
        identity.servesDomain(host)
    }

    /// Why a REGISTER is refused, with the response it gets.
    enum Refusal: Error {
        case status(SIPStatus, headers: [(SIPHeaderName, String)] = [])
    }

    public func handle(_ transaction: ServerTransaction) {
        switch Result(catching: { () throws(Refusal) -> SIPMessage in try register(transaction) }) {
        case .success(let response):
            transaction.respond(response)
        case .failure(.status(let status, let headers)):
            transaction.respond(status, headers: headers)
        }
    }

    // MARK: - RFC 3261 §10.3

    private func register(_ transaction: ServerTransaction) throws(Refusal) -> SIPMessage {
        let request = transaction.request
        let inbound = transaction.inbound
        // Step 1: the domain.
        guard let requestURI = try? request.requestURI(), requestURI.scheme == .sip || requestURI.scheme == .sips else {
            throw .status(SIPStatus(416))
        }
        guard servesDomain(requestURI.host) else { throw .status(SIPStatus(403, "Domain Not Served")) }
        // Step 5: the address-of-record from To.
        guard let to = try? request.to(), var aor = AddressOfRecord.canonical(to.uri) else {
            throw .status(SIPStatus(400, "Bad To: not a SIP address-of-record"))
        }
        guard servesDomain(to.uri.host) else { throw .status(SIPStatus(404, "Not Found: Domain Not Served")) }
        var policyHeaders: [(SIPHeaderName, String)] = []
        if let policy {
            switch policy.review(request, to: to.uri) {
            case .refuse(let status, let headers):
                throw .status(status, headers: headers)
            case .accept(let mapped, let headers):
                if let mapped { aor = mapped }
                policyHeaders = headers
            }
        }
        guard let callID = request.callID, let cseq = try? request.cseq() else {
            throw .status(SIPStatus(400, "Bad Call-ID or CSeq"))
        }
        let contacts: SIPContactValue?
        do {
            contacts = try request.contacts()
        } catch {
            throw .status(SIPStatus(error))
        }
        let headerExpires = (try? request.expires()) ?? nil
        let supported = Set(request.supported.map { $0.lowercased() })
        if configuration.pathMode == .strict, request.contains(.path), !supported.contains("path") {
            throw .status(SIPStatus(420), headers: [(.unsupported, "path")])
        }
        let now = location.clock.nowMilliseconds()
        var pushCapabilities: [String] = []
        var registrationKind: Int?
        // The AOR's bindings once changed, as the change left them: the 200 OK lists them.
        var current: [Binding]?

        switch contacts {
        case .none:
            // A query: answer with the current bindings (§10.3 step 8).
            break
        case .wildcard:
            // §10.2.2: "*" only with Expires: 0 and alone.
            guard headerExpires == 0 else { throw .status(SIPStatus(400, "Contact * Needs Expires: 0")) }
            try location.update(aor: aor) { (bindings: inout [Binding]) throws(Refusal) in
                for binding in bindings where binding.callID == callID && cseq.sequence <= binding.cseq {
                    throw .status(SIPStatus(400, "Out-of-Order CSeq"))
                }
                bindings.removeAll()
            }
            current = []
            registrationKind = 2
        case .addresses(let addresses):
            pushCapabilities = try pushFeatureCaps(addresses, aor: aor, now: now)
            // Set exactly when the REGISTER is answered statelessly, so a retransmission can reach us again.
            let registeringBranch = transaction.requestMark ?? 0
            var updates: [Binding] = []
            var removals: [String] = []
            for address in addresses {
                guard address.uri.scheme == .sip || address.uri.scheme == .sips || address.uri.scheme == .tel
                    || isOtherScheme(address.uri) else { throw .status(SIPStatus(400, "Bad Contact URI")) }
                let requested = address.expires ?? headerExpires ?? configuration.defaultExpires
                if requested == 0 {
                    removals.append(Binding.key(instanceID: address.instanceID, regID: address.regID, contact: address.uri))
                    continue
                }
                // Step 7: too brief gets 423 with Min-Expires (RFC 3261 §10.3, §21.4.17).
                if requested < configuration.minExpires {
                    throw .status(SIPStatus(423), headers: [(.minExpires, String(configuration.minExpires))])
                }
                let granted = min(requested, configuration.maxExpires)
                var binding = makeBinding(address, aor: aor, expires: granted, now: now, callID: callID, cseq: cseq.sequence,
                                          request: request, inbound: inbound, supportsGRUU: supported.contains("gruu"))
                binding.registeringBranch = registeringBranch
                updates.append(binding)
            }
            let refreshed = try location.update(aor: aor) { (bindings: inout [Binding]) throws(Refusal) -> Bool in
                let refreshed = try apply(updates: updates, removals: removals, callID: callID, cseq: cseq.sequence, to: &bindings)
                current = bindings
                return refreshed
            }
            if updates.isEmpty {
                registrationKind = removals.isEmpty ? nil : 2
            } else {
                registrationKind = refreshed ? 1 : 0
            }
        }
        var response = okResponse(transaction, request: request, aor: aor,
                                  bindings: current.map { $0.sorted { $0.q > $1.q } } ?? location.bindings(for: aor),
                                  supported: supported, now: now)
        for value in pushCapabilities { response.appendHeader(.featureCaps, value) }
        for (name, value) in policyHeaders { response.appendHeader(name, value) }
        if let registrationKind, let policy { policy.registered(request, response: response, aor: aor, kind: registrationKind, source: inbound.source) }
        return response
    }

    // MARK: - Push (RFC 8599 §5.6.1)

    /// The Feature-Caps values that tell a device its push service is served (one per service,
    /// §5.4), or 555 when a contact names a service this server does not push through.
    private func pushFeatureCaps(_ addresses: [SIPAddress], aor: String, now: Int64) throws(Refusal) -> [String] {
        guard let providers = configuration.pushProviders else { return [] }
        var capabilities: [String] = []
        for address in addresses {
            guard case .some(let value) = address.uri.parameters["pn-provider"] else { continue }
            let provider = (value ?? "").lowercased()
            if provider.isEmpty {
                // A query (§5.6.1.2): every service served.
                capabilities += providers.sorted().map { "*;+sip.pns=\"" + $0 + "\"" }
                continue
            }
            guard providers.contains(provider) else {
                // Tern is the registrar: no proxy behind it could serve the provider (§5.6.1.1).
                throw .status(SIPStatus(555, "Push Notification Service Not Supported"),
                              headers: providers.sorted().map { (.featureCaps, "*;+sip.pns=\"" + $0 + "\"") })
            }
            var capability = "*;+sip.pns=\"" + provider + "\""
            if address.parameters.contains("+sip.pnsreg") {
                capability += ";+sip.pnsreg=\"" + String(configuration.pushRegistrationMargin) + "\""
            }
            // §6.2.1: the latest PURR of the device, for dialogs that may need to wake it later.
            if PushContact(contact: address.uri) != nil, address.expires ?? 1 != 0 {
                let key = Binding.key(instanceID: address.instanceID, regID: address.instanceID == nil ? nil : address.regID,
                                      contact: address.uri)
                capability += ";+sip.pnspurr=\"" + pushWakeTable.purr(aor: aor, key: key, now: now) + "\""
            }
            capabilities.append(capability)
        }
        var seen: Set<String> = []
        return capabilities.filter { seen.insert($0).inserted }
    }

    private func isOtherScheme(_ uri: SIPURI) -> Bool {
        if case .other = uri.scheme { return true }
        return false
    }

    private func makeBinding(_ address: SIPAddress, aor: String, expires: UInt32, now: Int64, callID: String,
                             cseq: UInt32, request: SIPMessage, inbound: InboundMessage, supportsGRUU: Bool) -> Binding {
        var parameters = address.parameters
        parameters.remove("expires")
        var binding = Binding(aor: aor, contact: address.uri, contactParameters: parameters,
                              expiresAt: now + Int64(expires) * 1000, callID: callID, cseq: cseq,
                              transport: inbound.transport, flow: inbound.flow, source: inbound.source,
                              // reg-id without an instance means nothing (RFC 5626 §6, step 3 of the registrar's rules).
                              instanceID: address.instanceID, regID: address.instanceID == nil ? nil : address.regID)
        binding.registeredAt = now
        // The request with what validation parsed (the top Via): not parsed again.
        binding.isBehindNAT = NATDetection.isBehindNAT(request: request, contact: address.uri, source: inbound.source)
        binding.path = request.values(.path)
        binding.userAgent = request.firstValue(.userAgent)
        binding.acceptsGzip = request.acceptEncodings.contains("gzip")
        if supportsGRUU, binding.instanceID != nil {
            binding.temporaryGRUUs = [GRUU.newTemporaryUser()]
        }
        return binding
    }

    /// §10.3 steps 6–7 for each contact: a binding with the same key is replaced when the Call-ID
    /// differs or the CSeq is higher; otherwise the whole request fails.
    /// - Returns: whether a binding that was there is replaced (a refresh), rather than only added.
    private func apply(updates: [Binding], removals: [String], callID: String, cseq: UInt32,
                       to bindings: inout [Binding]) throws(Refusal) -> Bool {
        var refreshed = false
        for key in removals {
            if let existing = bindings.first(where: { $0.key == key }), existing.callID == callID, cseq <= existing.cseq {
                throw .status(SIPStatus(400, "Out-of-Order CSeq"))
            }
            bindings.removeAll { $0.key == key }
        }
        for var binding in updates {
            if let index = bindings.firstIndex(where: { $0.key == binding.key }) {
                let existing = bindings[index]
                if existing.callID == callID {
                    // Answered statelessly, the request that set this binding may come again (a
                    // retransmission): it changes nothing, and gets the 200 OK it would have had.
                    if cseq == existing.cseq, configuration.statelessReplies, binding.registeringBranch != 0,
                       binding.registeringBranch == existing.registeringBranch {
                        refreshed = true
                        continue
                    }
                    guard cseq > existing.cseq else { throw .status(SIPStatus(400, "Out-of-Order CSeq")) }
                    // RFC 5627 §4.2: temporary GRUUs stay valid while the Call-ID stays the same.
                    binding.temporaryGRUUs = existing.temporaryGRUUs + binding.temporaryGRUUs
                }
                bindings[index] = binding
                refreshed = true
            } else {
                if configuration.singleContactPerAOR { bindings.removeAll() }
                bindings.append(binding)
            }
        }
        if bindings.count > configuration.maxContactsPerAOR {
            throw .status(SIPStatus(403, "Too Many Contacts"))
        }
        return refreshed
    }

    // MARK: - The 200 OK (§10.3 step 8)

    private func okResponse(_ transaction: ServerTransaction, request: SIPMessage, aor: String, bindings: [Binding],
                            supported: Set<String>, now: Int64) -> SIPMessage {
        var response = SIPMessage.response(to: request, status: SIPStatus(200), toTag: transaction.localTag)
        for binding in bindings {
            var parameters = binding.contactParameters
            parameters.set("expires", String(binding.remainingSeconds(at: now)))
            if supported.contains("gruu"), let instance = binding.instanceID {
                parameters.set("pub-gruu", "\"" + GRUU.public(aor: aor, instance: instance) + "\"")
                if let temporary = binding.temporaryGRUUs.last {
                    parameters.set("temp-gruu", "\"" + GRUU.temporary(user: temporary, aor: aor) + "\"")
                }
            }
            var contact = ""
            contact.reserveCapacity(binding.contactText.utf8.count + 2 + parameters.estimatedLength)
            contact.append("<")
            contact.append(binding.contactText)
            contact.append(">")
            parameters.append(to: &contact)
            response.appendHeader(.contact, contact)
        }
        // RFC 3327 §5.3: echo Path when the UA supports it.
        if supported.contains("path"), configuration.pathMode != .off {
            for path in request.values(.path) { response.appendHeader(.path, path) }
        }
        // RFC 5626 §6: the registrar says it applied outbound when a contact carried reg-id.
        let usedOutbound = bindings.contains { $0.regID != nil && $0.callID == request.callID }
        if usedOutbound, supported.contains("outbound") {
            response.appendHeader(.require, "outbound")
        }
        response.appendHeader(.date, HTTPDate.now())
        return response
    }
}
