import SIP

/// The written form of a subscription, the same in the profiles file (YAML), in MongoDB and in the
/// management API (JSON):
/// `{ private_id, service_profiles: [ { public_identities: [ { uri, barred, default } ] } ] }`.
public struct IMSProfileDocument: Codable, Sendable {
    public struct Profile: Codable, Sendable {
        public var publicIdentities: [Identity]

        public init(publicIdentities: [Identity]) {
            self.publicIdentities = publicIdentities
        }

        enum CodingKeys: String, CodingKey {
            case publicIdentities = "public_identities"
        }
    }

    public struct Identity: Codable, Sendable {
        public var uri: String
        public var barred: Bool?
        public var isDefault: Bool?

        public init(uri: String, barred: Bool? = nil, isDefault: Bool? = nil) {
            self.uri = uri
            self.barred = barred
            self.isDefault = isDefault
        }

        enum CodingKeys: String, CodingKey {
            case uri, barred
            case isDefault = "default"
        }
    }

    public var privateID: String
    public var serviceProfiles: [Profile]

    enum CodingKeys: String, CodingKey {
        case privateID = "private_id"
        case serviceProfiles = "service_profiles"
    }

    public init(privateID: String, serviceProfiles: [Profile]) {
        self.privateID = privateID
        self.serviceProfiles = serviceProfiles
    }

    public init(_ subscription: IMSSubscription) {
        privateID = subscription.privateID
        serviceProfiles = subscription.serviceProfiles.map { profile in
            Profile(publicIdentities: profile.publicIdentities.map {
                Identity(uri: $0.uri.description, barred: $0.barred, isDefault: $0.isDefault)
            })
        }
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// The subscription, once every identity parses and each profile has one that is not barred.
    public func subscription() throws(Invalid) -> IMSSubscription {
        guard !privateID.isEmpty else { throw Invalid(description: "private_id is empty") }
        guard !serviceProfiles.isEmpty else { throw Invalid(description: "\(privateID): no service_profiles") }
        var profiles: [IMSServiceProfile] = []
        for (index, profile) in serviceProfiles.enumerated() {
            var identities: [IMSPublicIdentity] = []
            for identity in profile.publicIdentities {
                guard let uri = try? SIPURI(parsing: identity.uri), IMSIdentityKey.of(uri) != nil else {
                    throw Invalid(description: "\(privateID): \(identity.uri) is not a SIP or global tel URI")
                }
                identities.append(IMSPublicIdentity(uri: uri, barred: identity.barred ?? false, isDefault: identity.isDefault ?? false))
            }
            let built = IMSServiceProfile(publicIdentities: identities)
            guard built.defaultIdentity != nil else {
                throw Invalid(description: "\(privateID): service_profiles[\(index)] has no identity that is not barred")
            }
            profiles.append(built)
        }
        return IMSSubscription(privateID: privateID, serviceProfiles: profiles)
    }
}
