import CoreProxy
import IMS
import MongoSupport
import SIP
import Foundation
import Yams

/// The `ims:` section: Tern as an S-CSCF-like registrar over subscriber profiles.
public struct IMSSettings: Sendable {
    public var serverURI = "sip:scscf.ims.local"
    /// A YAML file of `subscribers:` (docs/ims.md); read relative to the working directory.
    public var profilesFile = ""
    /// A MongoDB collection of the same documents (with storage.mongodb.uri); edits are written back.
    public var profilesCollection = ""
    public var visitedNetworks: [String]?
    /// Trusted peers: networks in CIDR form or host names.
    public var trusted: [String] = []
    public var ioi = ""
    public var stripIdentityToUntrusted = false
    /// Application servers (hosts) that may subscribe to any user's `reg` events.
    public var applicationServers: [String] = []
    /// Where numbers no subscriber has go (a BGCF or PSTN gateway); empty answers them 404.
    public var breakout = ""

    /// The policy's configuration; nil with the key at fault.
    func policyConfiguration() throws(ConfigurationError) -> IMSPolicy.Configuration {
        guard let uri = try? SIPURI(parsing: serverURI) else {
            throw ConfigurationError(key: "ims.server_uri", line: nil, message: "\(serverURI): not a SIP URI")
        }
        var networks: [IPNetwork] = []
        var hosts: [String] = []
        for entry in trusted {
            if let network = IPNetwork(entry) { networks.append(network) } else { hosts.append(entry) }
        }
        var breakoutURI: SIPURI?
        if !breakout.isEmpty {
            guard let parsed = try? SIPURI(parsing: breakout), parsed.scheme != .tel else {
                throw ConfigurationError(key: "ims.breakout", line: nil, message: "\(breakout): not a SIP URI")
            }
            breakoutURI = parsed
        }
        return IMSPolicy.Configuration(serverURI: uri, visitedNetworks: visitedNetworks.map(Set.init), trustedNetworks: networks,
                                       trustedHosts: hosts, ioi: ioi.isEmpty ? nil : ioi,
                                       stripIdentityToUntrusted: stripIdentityToUntrusted, breakout: breakoutURI)
    }
}

extension TernConfiguration {
    mutating func readIMS(_ node: Node) throws(ConfigurationError) {
        var section = try MappingReader(node, path: "ims")
        var settings = IMSSettings()
        let enabled = try section.bool("enabled") ?? true
        settings.serverURI = try section.string("server_uri") ?? settings.serverURI
        guard (try? SIPURI(parsing: settings.serverURI)) != nil else {
            throw section.error("server_uri", node, "\(settings.serverURI): not a SIP URI")
        }
        settings.profilesFile = try section.string("profiles_file") ?? ""
        settings.profilesCollection = try section.string("profiles_collection") ?? ""
        settings.visitedNetworks = try section.strings("visited_networks")
        settings.trusted = try section.strings("trusted") ?? []
        settings.ioi = try section.string("ioi") ?? ""
        settings.stripIdentityToUntrusted = try section.bool("strip_identity_to_untrusted") ?? false
        settings.applicationServers = try section.strings("application_servers") ?? []
        settings.breakout = try section.string("breakout") ?? ""
        if !settings.breakout.isEmpty, !Self.isSIPURI(settings.breakout) {
            throw section.error("breakout", node, "\(settings.breakout): not a SIP URI")
        }
        try section.finish()
        if enabled, !settings.profilesCollection.isEmpty, mongoDB == nil {
            throw ConfigurationError(key: "ims.profiles_collection", line: nil, message: "needs storage.mongodb.uri")
        }
        ims = enabled ? settings : nil
    }

    static func isSIPURI(_ text: String) -> Bool {
        guard let uri = try? SIPURI(parsing: text) else { return false }
        return uri.scheme == .sip || uri.scheme == .sips
    }

    mutating func readSIPI(_ node: Node) throws(ConfigurationError) {
        var section = try MappingReader(node, path: "sip_i")
        let enabled = try section.bool("enabled") ?? true
        let hops = try section.int("initial_hops", in: 1...31) ?? 31
        try section.finish()
        sipIInitialHops = enabled ? hops : nil
    }

    func imsYAMLLines() -> [String] {
        let settings = ims ?? IMSSettings()
        var lines = [
            "ims:",
            "  enabled: \(ims != nil)",
            "  server_uri: \"\(settings.serverURI)\"",
            "  profiles_file: \"\(settings.profilesFile)\"",
            "  profiles_collection: \"\(settings.profilesCollection)\"",
            "  trusted: [\(settings.trusted.map { "\"" + $0 + "\"" }.joined(separator: ", "))]",
            "  ioi: \"\(settings.ioi)\"",
            "  strip_identity_to_untrusted: \(settings.stripIdentityToUntrusted)",
            "  application_servers: [\(settings.applicationServers.map { "\"" + $0 + "\"" }.joined(separator: ", "))]",
            "  breakout: \"\(settings.breakout)\"",
        ]
        if let visited = settings.visitedNetworks {
            lines.append("  visited_networks: [\(visited.map { "\"" + $0 + "\"" }.joined(separator: ", "))]")
        }
        lines += ["sip_i:", "  enabled: \(sipIInitialHops != nil)", "  initial_hops: \(sipIInitialHops ?? 31)"]
        return lines
    }
}

/// Subscriber profiles from the profiles file and from MongoDB.
enum IMSProfileLoader {
    struct ProfilesFile: Decodable {
        var subscribers: [IMSProfileDocument]
    }

    static func load(file path: String) throws -> [IMSSubscription] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let decoded: ProfilesFile
        do {
            decoded = try YAMLDecoder().decode(ProfilesFile.self, from: text)
        } catch {
            throw ConfigurationError(key: "ims.profiles_file", line: nil, message: "\(path): \(error)")
        }
        return try decoded.subscribers.map { document in
            do {
                return try document.subscription()
            } catch {
                throw ConfigurationError(key: "ims.profiles_file", line: nil, message: "\(path): \(error)")
            }
        }
    }

    /// Documents `{ private_id, profile }`, the profile as the JSON text of the profile document.
    static func load(collection: String, from database: MongoDatabase) async throws -> [IMSSubscription] {
        let documents = try await database.perform { session in try session.find(collection, projection: ["_id": .int64(0)]) }
        return try documents.map { bson in
            do {
                return try document(from: bson).subscription()
            } catch {
                throw ConfigurationError(key: "ims.profiles_collection", line: nil, message: "\(collection): \(error)")
            }
        }
    }

    static func document(from bson: BSONDocument) throws -> IMSProfileDocument {
        guard let text = bson["profile"]?.string else {
            throw IMSProfileDocument.Invalid(description: "\(bson["private_id"]?.string ?? "?"): no profile field")
        }
        return try JSONDecoder().decode(IMSProfileDocument.self, from: Data(text.utf8))
    }

    static func bson(_ document: IMSProfileDocument) throws -> BSONDocument {
        let text = String(decoding: try JSONEncoder().encode(document), as: UTF8.self)
        return ["private_id": .string(document.privateID), "profile": .string(text)]
    }
}
