import EventBus
import Foundation
import IMS
import SIP

/// Subscriber profiles (the HSS's part): read one, put one, delete one.
enum IMSMethods {
    static func methods(_ profiles: IMSProfiles?, store: (@Sendable (String, IMSProfileDocument?) async throws -> Void)?,
                        control: IMSServiceControl?) -> [ManagementMethod] {
        [
            ManagementMethod("sipi.decode", "The fields of an ISUP message (hex, from the message type on), by the names of Kamailio's "
                             + "$sipt(...).", parameters: ["hex"]) { params in
                let message = try isupMessage(params)
                return .object(message.fields.map { ($0.name, .string($0.value)) })
            },
            ManagementMethod("sipi.rewrite", "Kamailio's sipt functions on an ISUP IAM (hex): destination { number, nature, hops }, "
                             + "calling { number, nature, presentation, screening }, forwarding { number, nature }. Returns the new hex "
                             + "and its fields.", parameters: ["hex", "destination", "calling", "forwarding"]) { params in
                var message = try isupMessage(params)
                guard message.type == ISUPMessage.MessageType.initialAddress.rawValue else {
                    throw ManagementError.invalidParams("hex: not an IAM (message type \(message.type))")
                }
                if let destination = try nested(params, "destination") {
                    message.setDestination(try destination.string("number"), hops: try destination.int("hops", default: 31, in: 1...31),
                                           nature: UInt8(try destination.int("nature", default: 4, in: 0...127)))
                }
                if let calling = try nested(params, "calling") {
                    message.setCalling(try calling.string("number"), nature: UInt8(try calling.int("nature", default: 4, in: 0...127)),
                                       presentation: UInt8(try calling.int("presentation", default: 0, in: 0...3)),
                                       screening: UInt8(try calling.int("screening", default: 3, in: 0...3)))
                }
                if let forwarding = try nested(params, "forwarding") {
                    message.setForwarding(try forwarding.string("number"), nature: UInt8(try forwarding.int("nature", default: 4, in: 0...127)))
                }
                return .object([("hex", .string(message.encoded.map { String(format: "%02x", $0) }.joined())),
                                ("fields", .object(message.fields.map { ($0.name, .string($0.value)) }))])
            },
            ManagementMethod("ims.deregister", "Network-initiated de-registration of the user with this public identity: its bindings go, "
                             + "reg watchers hear deactivated, application servers get a third-party de-REGISTER.",
                             parameters: ["identity"], changesState: true) { params in
                let control = try ManagementError.available(control, "ims is off")
                let text = try params.string("identity")
                guard let uri = try? SIPURI(parsing: text) else { throw ManagementError.invalidParams("identity: not a SIP or tel URI") }
                guard let removed = control.deregister(identity: uri) else { throw ManagementError.notFound("no subscriber has \(text)") }
                return .object([("identity", .string(text)), ("bindings_removed", .int(Int64(removed)))])
            },
            ManagementMethod("ims.profile.get", "A subscriber's profile, by private identity or by any public identity.",
                             parameters: ["private_id", "identity"]) { params in
                let profiles = try ManagementError.available(profiles, "ims is off")
                if let privateID = try params.optionalString("private_id") {
                    guard let subscription = profiles.subscription(privateID: privateID) else {
                        throw ManagementError.notFound("no subscriber \(privateID)")
                    }
                    return try encode(subscription)
                }
                let text = try params.string("identity")
                guard let uri = try? SIPURI(parsing: text) else { throw ManagementError.invalidParams("identity: not a SIP or tel URI") }
                guard let membership = profiles.membership(of: uri) else { throw ManagementError.notFound("no subscriber has \(text)") }
                return try encode(membership.subscription)
            },
            ManagementMethod("ims.profile.put", "Adds or replaces a subscriber: { private_id, service_profiles: [ { public_identities: "
                             + "[ { uri, barred, default } ] } ] }. Registered users keep their devices and reg watchers hear the "
                             + "identities that came and went; a set whose default identity changed is de-registered.",
                             parameters: ["profile"], changesState: true) { params in
                let profiles = try ManagementError.available(profiles, "ims is off")
                guard let value = params.values["profile"] else { throw ManagementError.invalidParams("profile is needed") }
                let document: IMSProfileDocument
                do {
                    document = try JSONDecoder().decode(IMSProfileDocument.self, from: Data(value.json.utf8))
                } catch {
                    throw ManagementError.invalidParams("profile: \(error)")
                }
                let subscription: IMSSubscription
                do {
                    subscription = try document.subscription()
                } catch {
                    throw ManagementError.invalidParams("profile: \(error)")
                }
                try await store?(subscription.privateID, document)
                if let control { control.replaceProfile(privateID: subscription.privateID, with: subscription) } else { profiles.put(subscription) }
                return try encode(subscription)
            },
            ManagementMethod("ims.profile.delete", "Removes a subscriber; its registered devices are de-registered by the network.", parameters: ["private_id"], changesState: true) { params in
                let profiles = try ManagementError.available(profiles, "ims is off")
                let privateID = try params.string("private_id")
                guard profiles.subscription(privateID: privateID) != nil else { throw ManagementError.notFound("no subscriber \(privateID)") }
                try await store?(privateID, nil)
                var removed = 0
                if let control { removed = control.replaceProfile(privateID: privateID, with: nil) } else { profiles.remove(privateID: privateID) }
                return .object([("private_id", .string(privateID)), ("deleted", .bool(true)), ("bindings_removed", .int(Int64(removed)))])
            },
        ]
    }

    static func encode(_ subscription: IMSSubscription) throws(ManagementError) -> JSONValue {
        do {
            let data = try JSONEncoder().encode(IMSProfileDocument(subscription))
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ManagementError.internalError("\(error)")
        }
    }

    /// The `hex` parameter as an ISUP message (from the message type on).
    private static func isupMessage(_ params: ManagementParameters) throws -> ISUPMessage {
        let hex = try params.string("hex").filter { !$0.isWhitespace }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) ?? hex.endIndex
            guard let byte = UInt8(hex[index..<next], radix: 16) else { throw ManagementError.invalidParams("hex: not hexadecimal") }
            bytes.append(byte)
            index = next
        }
        do {
            return try ISUPMessage(parsing: bytes)
        } catch {
            throw ManagementError.invalidParams("hex: \(error)")
        }
    }

    /// An object parameter read with the same typed access (its errors name the inner field).
    private static func nested(_ params: ManagementParameters, _ name: String) throws -> ManagementParameters? {
        switch params.values[name] {
        case nil, .null?: return nil
        case .object(let fields)?: return ManagementParameters(Dictionary(fields, uniquingKeysWith: { _, last in last }))
        default: throw ManagementError.invalidParams("parameter '\(name)' must be an object")
        }
    }
}
