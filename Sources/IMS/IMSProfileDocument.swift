import SIP

/// The written form of a subscription, the same in the profiles file (YAML), in MongoDB and in the
/// management API (JSON):
/// `{ private_id, service_profiles: [ { public_identities: [ { uri, barred, default } ] } ] }`.
public struct IMSProfileDocument: Codable, Sendable {
    public struct Profile: Codable, Sendable {
        public var publicIdentities: [Identity]
        public var ifc: [Criterion]?

        public init(publicIdentities: [Identity], ifc: [Criterion]? = nil) {
            self.publicIdentities = publicIdentities
            self.ifc = ifc
        }

        enum CodingKeys: String, CodingKey {
            case publicIdentities = "public_identities"
            case ifc
        }
    }

    /// An initial filter criterion: `{ priority, trigger: { cnf, spt: [...] }, application_server: {...} }`.
    public struct Criterion: Codable, Sendable {
        public struct Trigger: Codable, Sendable {
            public var cnf: Bool?
            public var spt: [Point]
        }

        /// One service point trigger: exactly one of the condition fields.
        public struct Point: Codable, Sendable {
            public struct Pattern: Codable, Sendable {
                public var name: String?
                public var line: String?
                public var content: String?
            }

            public var group: Int?
            public var negated: Bool?
            public var method: String?
            public var requestURI: String?
            public var header: Pattern?
            public var sessionCase: Int?
            public var sdp: Pattern?
            public var registrationType: [Int]?

            enum CodingKeys: String, CodingKey {
                case group, negated, method, header, sdp
                case requestURI = "request_uri"
                case sessionCase = "session_case"
                case registrationType = "registration_type"
            }
        }

        public struct Server: Codable, Sendable {
            public var serverName: String
            public var defaultHandling: String?
            public var serviceInfo: String?
            public var includeRegisterRequest: Bool?
            public var includeRegisterResponse: Bool?

            enum CodingKeys: String, CodingKey {
                case serverName = "server_name"
                case defaultHandling = "default_handling"
                case serviceInfo = "service_info"
                case includeRegisterRequest = "include_register_request"
                case includeRegisterResponse = "include_register_response"
            }
        }

        public var priority: Int
        public var trigger: Trigger?
        public var applicationServer: Server

        enum CodingKeys: String, CodingKey {
            case priority, trigger
            case applicationServer = "application_server"
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
            }, ifc: profile.filterCriteria.isEmpty ? nil : profile.filterCriteria.map(Criterion.init))
        }
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
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
            var criteria: [InitialFilterCriteria] = []
            for criterion in profile.ifc ?? [] { criteria.append(try criterion.criterion(privateID)) }
            let built = IMSServiceProfile(publicIdentities: identities, filterCriteria: criteria)
            guard built.defaultIdentity != nil else {
                throw Invalid(description: "\(privateID): service_profiles[\(index)] has no identity that is not barred")
            }
            profiles.append(built)
        }
        return IMSSubscription(privateID: privateID, serviceProfiles: profiles)
    }
}

extension IMSProfileDocument.Criterion {
    init(_ criterion: InitialFilterCriteria) {
        let server = criterion.applicationServer
        priority = criterion.priority
        applicationServer = Server(serverName: server.serverName.description, defaultHandling: server.defaultHandling.rawValue,
                                   serviceInfo: server.serviceInfo, includeRegisterRequest: server.includeRegisterRequest,
                                   includeRegisterResponse: server.includeRegisterResponse)
        trigger = criterion.trigger.map { trigger in
            Trigger(cnf: trigger.conjunctive, spt: trigger.triggers.map { spt in
                var point = Point(group: spt.group, negated: spt.negated)
                switch spt.kind {
                case .method(let method): point.method = method
                case .requestURI(let pattern): point.requestURI = pattern
                case .header(let name, let content): point.header = Point.Pattern(name: name, content: content)
                case .sessionCase(let sessionCase): point.sessionCase = sessionCase.rawValue
                case .sessionDescription(let line, let content): point.sdp = Point.Pattern(line: line, content: content)
                case .registrationType(let types): point.registrationType = types.sorted()
                }
                return point
            })
        }
    }

    func criterion(_ owner: String) throws(IMSProfileDocument.Invalid) -> InitialFilterCriteria {
        guard let serverName = try? SIPURI(parsing: applicationServer.serverName) else {
            throw IMSProfileDocument.Invalid(description: "\(owner): ifc \(priority): \(applicationServer.serverName) is not a SIP URI")
        }
        let handling = InitialFilterCriteria.DefaultHandling(rawValue: applicationServer.defaultHandling ?? "continue")
        guard let handling else {
            throw IMSProfileDocument.Invalid(description: "\(owner): ifc \(priority): default_handling is continue or terminate")
        }
        let server = InitialFilterCriteria.ApplicationServer(
            serverName: serverName, defaultHandling: handling, serviceInfo: applicationServer.serviceInfo,
            includeRegisterRequest: applicationServer.includeRegisterRequest ?? false,
            includeRegisterResponse: applicationServer.includeRegisterResponse ?? false)
        var point: InitialFilterCriteria.TriggerPoint?
        if let trigger {
            var triggers: [InitialFilterCriteria.ServicePointTrigger] = []
            for spt in trigger.spt {
                let kind: InitialFilterCriteria.ServicePointTrigger.Kind
                if let method = spt.method {
                    kind = .method(method)
                } else if let pattern = spt.requestURI {
                    kind = .requestURI(pattern)
                } else if let header = spt.header, let name = header.name {
                    kind = .header(name, content: header.content)
                } else if let value = spt.sessionCase, let sessionCase = InitialFilterCriteria.SessionCase(rawValue: value) {
                    kind = .sessionCase(sessionCase)
                } else if let sdp = spt.sdp, let line = sdp.line {
                    kind = .sessionDescription(line: line, content: sdp.content)
                } else if let types = spt.registrationType {
                    kind = .registrationType(Set(types))
                } else {
                    throw IMSProfileDocument.Invalid(description: "\(owner): ifc \(priority): a trigger names no condition")
                }
                triggers.append(.init(group: spt.group ?? 0, negated: spt.negated ?? false, kind))
            }
            point = InitialFilterCriteria.TriggerPoint(conjunctive: trigger.cnf ?? true, triggers: triggers)
        }
        return InitialFilterCriteria(priority: priority, trigger: point, applicationServer: server)
    }
}

extension IMSProfileDocument.Criterion.Point {
    init(group: Int, negated: Bool) {
        self.group = group
        self.negated = negated
    }
}
