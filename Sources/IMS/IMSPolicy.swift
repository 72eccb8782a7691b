public import CoreProxy
public import NIOCore
public import SIP
import NIOConcurrencyHelpers

/// Tern as an S-CSCF-like registrar and proxy (TS 24.229) over profiles instead of an HSS:
/// registrations of barred or unknown identities are refused, one REGISTER binds the whole implicit
/// registration set, the 200 OK says which identities it covers and the Service-Route, the visited
/// network is checked, and requests get the identity and charging headers of the trust domain.
public final class IMSPolicy: RegistrationPolicy, TrustPolicy, Sendable {
    public struct Configuration: Sendable {
        /// This server's own URI: the Service-Route is `sip:orig@` its host (RFC 3608).
        public var serverURI: SIPURI
        /// Visited networks allowed to register users (P-Visited-Network-ID); nil allows any.
        public var visitedNetworks: Set<String>?
        /// Peers inside the trust domain (RFC 3325): their P-Asserted-Identity, P-Charging-Vector and
        /// P-Access-Network-Info are kept, and they receive them.
        public var trustedNetworks: [IPNetwork]
        public var trustedHosts: [String]
        /// This operator's inter-operator identifier, put in P-Charging-Vector as orig-ioi (nil: none).
        public var ioi: String?
        /// Remove P-Asserted-Identity toward every untrusted peer, not only when `Privacy: id` asks.
        public var stripIdentityToUntrusted: Bool
        /// Where numbers no subscriber has are sent (a BGCF or PSTN gateway; TS 24.229 §5.4.3.2);
        /// nil answers them 404.
        public var breakout: SIPURI?

        public init(serverURI: SIPURI, visitedNetworks: Set<String>? = nil, trustedNetworks: [IPNetwork] = [], trustedHosts: [String] = [],
                    ioi: String? = nil, stripIdentityToUntrusted: Bool = false, breakout: SIPURI? = nil) {
            self.breakout = breakout
            self.serverURI = serverURI
            self.visitedNetworks = visitedNetworks
            self.trustedNetworks = trustedNetworks
            self.trustedHosts = trustedHosts
            self.ioi = ioi
            self.stripIdentityToUntrusted = stripIdentityToUntrusted
        }
    }

    public let configuration: Configuration
    public let profiles: IMSProfiles
    private let location: LocationService
    private let counter = NIOLockedValueBox<UInt64>(0)
    private let serviceControl = NIOLockedValueBox<IMSServiceControl?>(nil)

    /// Reports registrations to application servers (third-party REGISTER).
    public func setServiceControl(_ control: IMSServiceControl) {
        serviceControl.withLockedValue { $0 = control }
    }

    public func registered(_ request: SIPMessage, response: SIPMessage, aor: String, kind: Int, source: SocketAddress) {
        serviceControl.withLockedValue { $0 }?.registered(request, response: response, aor: aor, kind: kind,
                                                          trusted: isTrusted(host: source.ipAddress ?? ""))
    }

    public init(configuration: Configuration, profiles: IMSProfiles, location: LocationService) {
        self.configuration = configuration
        self.profiles = profiles
        self.location = location
    }

    // MARK: - Registration (TS 24.229 5.4.1.2; RFC 3608, RFC 7315 §4.1, §4.3)

    public func review(_ request: SIPMessage, to: SIPURI) -> RegistrationReview {
        guard let membership = profiles.membership(of: to), let identity = profiles.identity(to) else {
            return .refuse(SIPStatus(403, "Unknown Public Identity"), headers: [])
        }
        guard !identity.barred else { return .refuse(SIPStatus(403, "Public Identity Barred"), headers: []) }
        if let allowed = configuration.visitedNetworks {
            for network in Self.visitedNetworks(request) where !allowed.contains(network) {
                return .refuse(SIPStatus(403, "Visited Network Not Allowed"), headers: [])
            }
        }
        let associated = membership.profile.associatedIdentities.map { "<" + $0.uri.description + ">" }.joined(separator: ", ")
        var headers: [(SIPHeaderName, String)] = []
        if !associated.isEmpty { headers.append((.pAssociatedURI, associated)) }
        headers.append((.serviceRoute, "<sip:orig@" + configuration.serverURI.host + (configuration.serverURI.port.map { ":" + String($0) } ?? "") + ";lr>"))
        return .accept(aor: membership.setAOR, responseHeaders: headers)
    }

    public func locationAOR(for uri: SIPURI) -> String? {
        profiles.membership(of: uri)?.setAOR
    }

    /// A telephone number (`tel:`, `user=phone`) that no subscriber has leaves the home network
    /// (RFC 3966, TS 24.229 §5.4.3.2: ENUM is out of scope, so straight to the breakout).
    public func breakout(for uri: SIPURI) -> Breakout? {
        let telephone = uri.scheme == .tel || IMSIdentityKey.of(uri)?.hasPrefix("tel:") == true
        guard telephone, profiles.membership(of: uri) == nil else { return nil }
        return configuration.breakout.map(Breakout.route) ?? .notFound
    }

    /// The networks a P-Visited-Network-ID names (tokens or quoted strings, comma-separated).
    static func visitedNetworks(_ request: SIPMessage) -> [String] {
        request.values(.pVisitedNetworkID).flatMap { $0.split(separator: ",") }.map { item in
            let text = (item.split(separator: ";").first.map { String($0) } ?? "").trimmingWhitespace
            return text.hasPrefix("\"") && text.hasSuffix("\"") && text.count >= 2 ? String(text.dropFirst().dropLast()) : text
        }.filter { !$0.isEmpty }
    }

    // MARK: - The trust domain (RFC 3325, RFC 7315 §4.4, §4.6)

    public func isTrusted(host: String) -> Bool {
        configuration.trustedNetworks.contains { $0.contains(host: host) }
            || configuration.trustedHosts.contains { $0.caseInsensitiveEquals(host) }
    }

    public func arriving(_ request: inout SIPMessage, from source: SocketAddress, initial: Bool) -> SIPStatus? {
        let sourceIP = source.ipAddress ?? ""
        guard !isTrusted(host: sourceIP) else { return nil }
        // What an untrusted sender says about its identity, network or charging is not believed.
        let preferred = request.firstValue(.pPreferredIdentity)
        request.removeHeaders(.pAssertedIdentity)
        request.removeHeaders(.pPreferredIdentity)
        request.removeHeaders(.pAccessNetworkInfo)
        request.removeHeaders(.pChargingVector)
        guard initial, request.method != .register else { return nil }
        if let asserted = assertedIdentity(request, preferred: preferred, source: source) {
            request.appendHeader(.pAssertedIdentity, "<" + asserted.description + ">")
        }
        request.appendHeader(.pChargingVector, newChargingVector())
        return nil
    }

    /// The terminating side's part of the charging vector (RFC 7315 §4.6): a response going back to a
    /// trusted peer carries the request's vector with our term-ioi.
    public func answering(_ response: inout SIPMessage, to request: SIPMessage) {
        guard let ioi = configuration.ioi, let vector = request.firstValue(.pChargingVector), !response.contains(.pChargingVector),
              let via = (try? request.topVia()) ?? nil, isTrusted(host: via.received ?? via.host)
        else { return }
        response.appendHeader(.pChargingVector, vector.contains("term-ioi=") ? vector : vector + ";term-ioi=" + ioi)
    }

    public func leaving(_ request: inout SIPMessage, to peer: TuningPeer) {
        guard !peer.addresses.contains(where: isTrusted(host:)) else { return }
        let privacy = request.values(.privacy).flatMap { $0.split(separator: ";") }.map { $0.trimmingWhitespace.lowercased() }
        if configuration.stripIdentityToUntrusted || privacy.contains("id") {
            request.removeHeaders(.pAssertedIdentity)
        }
        request.removeHeaders(.pChargingVector)
        request.removeHeaders(.pAccessNetworkInfo)
        request.removeHeaders(.pVisitedNetworkID)
    }

    /// The identity the network asserts for a registered caller: its preferred one when that is in
    /// its set and not barred, else its default (RFC 3325 §6, TS 24.229 5.4.3.2). A caller that is
    /// not registered from this address and port (the flow its REGISTER came over) gets none.
    func assertedIdentity(_ request: SIPMessage, preferred: String?, source: SocketAddress) -> SIPURI? {
        guard let from = ((try? request.from()) ?? nil)?.uri, let membership = profiles.membership(of: from),
              let aor = membership.setAOR,
              location.bindings(for: aor).contains(where: { $0.source == source })
        else { return nil }
        if let preferred, let uri = (try? SIPAddress(parsing: preferred))?.uri, let key = IMSIdentityKey.of(uri),
           let identity = membership.profile.publicIdentities.first(where: { $0.key == key }), !identity.barred {
            return identity.uri
        }
        return membership.profile.defaultIdentity?.uri
    }

    /// A fresh P-Charging-Vector: a unique icid, where it was made, and our orig-ioi.
    func newChargingVector() -> String {
        let number = counter.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        var value = "icid-value=" + SIPIdentifiers.tag() + String(number, radix: 16) + ";icid-generated-at=" + configuration.serverURI.host
        if let ioi = configuration.ioi { value += ";orig-ioi=" + ioi }
        return value
    }
}
