public import SIP

/// The push parameters a device put in its Contact URI (RFC 8599 §4.1.1): which push service
/// (`pn-provider`), the app or project there (`pn-param`) and the device's token (`pn-prid`).
public struct PushContact: Sendable, Hashable {
    public var provider: String
    public var param: String?
    public var prid: String

    /// Nil when the URI names no provider or no token: the device cannot be woken.
    public init?(contact: SIPURI) {
        guard case .some(.some(let provider)) = contact.parameters["pn-provider"], !provider.isEmpty,
              case .some(.some(let prid)) = contact.parameters["pn-prid"], !prid.isEmpty
        else { return nil }
        self.provider = percentDecoded(provider)
        self.prid = percentDecoded(prid)
        if case .some(.some(let param)) = contact.parameters["pn-param"] {
            self.param = percentDecoded(param)
        } else {
            self.param = nil
        }
    }

    /// The URI parameters RFC 8599 defines; §13 wants them kept from other users.
    static let uriParameterNames: Set<String> = ["pn-provider", "pn-param", "pn-prid", "pn-purr"]

    /// `uri` without the push parameters, as it goes to the device (RFC 8599 §13).
    public static func stripped(_ uri: SIPURI) -> SIPURI {
        guard uri.parameters.contains(where: { uriParameterNames.contains($0.name.lowercased()) }) else { return uri }
        var copy = uri
        for name in uriParameterNames { copy.parameters.remove(name) }
        return copy
    }
}

extension Binding {
    /// How to wake the device when it sleeps (RFC 8599), nil when it registered no push parameters.
    public var push: PushContact? { PushContact(contact: contact) }
}
