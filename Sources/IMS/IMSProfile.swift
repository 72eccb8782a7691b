public import SIP
import CoreProxy

/// A subscriber's profile as the HSS would hold it (TS 29.228 IMSSubscription), without Diameter:
/// a private identity and its service profiles. Each service profile is one implicit registration
/// set: registering any of its public identities registers them all.
public struct IMSSubscription: Sendable, Hashable {
    public var privateID: String
    public var serviceProfiles: [IMSServiceProfile]

    public init(privateID: String, serviceProfiles: [IMSServiceProfile]) {
        self.privateID = privateID
        self.serviceProfiles = serviceProfiles
    }
}

public struct IMSServiceProfile: Sendable, Hashable {
    public var publicIdentities: [IMSPublicIdentity]
    /// Initial filter criteria, applied by priority (lowest first).
    public var filterCriteria: [InitialFilterCriteria]

    public init(publicIdentities: [IMSPublicIdentity], filterCriteria: [InitialFilterCriteria] = []) {
        self.publicIdentities = publicIdentities
        self.filterCriteria = filterCriteria.sorted { $0.priority < $1.priority }
    }

    /// The default public identity: the one marked so, else the first that is not barred (TS 24.229 5.4.1.2.2).
    public var defaultIdentity: IMSPublicIdentity? {
        publicIdentities.first { $0.isDefault && !$0.barred } ?? publicIdentities.first { !$0.barred }
    }

    /// What P-Associated-URI lists: every identity not barred, the default first (RFC 7315 §4.1).
    public var associatedIdentities: [IMSPublicIdentity] {
        guard let first = defaultIdentity else { return [] }
        return [first] + publicIdentities.filter { !$0.barred && $0.key != first.key }
    }
}

public struct IMSPublicIdentity: Sendable, Hashable {
    public var uri: SIPURI
    public var barred: Bool
    public var isDefault: Bool

    public init(uri: SIPURI, barred: Bool = false, isDefault: Bool = false) {
        self.uri = uri
        self.barred = barred
        self.isDefault = isDefault
    }

    /// How the identity is looked up (``IMSIdentityKey``).
    public var key: String { IMSIdentityKey.of(uri) ?? uri.description }
}

/// One form for the many ways an identity is written (RFC 3966, TS 24.229): a SIP identity as its
/// AOR; `tel:+E164`, `sip:+E164@host;user=phone` and a local number with a global phone-context all
/// as `tel:+digits`.
public enum IMSIdentityKey {
    public static func of(_ uri: SIPURI) -> String? {
        switch uri.scheme {
        case .tel:
            return telKey(uri)
        case .sip, .sips:
            if case .some(.some(let user)) = uri.parameters["user"], user.lowercased() == "phone",
               let number = uri.unescapedUser, number.hasPrefix("+") {
                return "tel:" + digits(String(number.split(separator: ";").first ?? ""))
            }
            return AddressOfRecord.canonical(uri)
        default:
            return nil
        }
    }

    private static func telKey(_ uri: SIPURI) -> String? {
        guard let number = uri.user, !number.isEmpty else { return nil }
        if number.hasPrefix("+") { return "tel:" + digits(number) }
        // A local number is global only with a global phone-context (RFC 3966 §5.1.5).
        if case .some(.some(let context)) = uri.parameters["phone-context"], context.hasPrefix("+") {
            return "tel:" + digits(context) + digits(number)
        }
        return nil
    }

    /// `+` and the digits, visual separators gone.
    static func digits(_ text: String) -> String {
        var out = ""
        for character in text where character.isNumber || (character == "+" && out.isEmpty) { out.append(character) }
        return out
    }
}
