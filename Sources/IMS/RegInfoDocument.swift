import Presence

/// An `application/reginfo+xml` document (RFC 3680 §5.3).
struct RegInfoDocument {
    struct Contact {
        var id: String
        /// active or terminated.
        var state: String
        /// registered, created, refreshed, shortened, expired, deactivated, probation, unregistered, rejected.
        var event: String
        var expires: Int?
        var uri: String
    }

    struct Registration {
        var aor: String
        var id: String
        /// init, active or terminated.
        var state: String
        var contacts: [Contact]
    }

    var version: Int
    /// full or partial.
    var state: String
    var registrations: [Registration]

    var xml: String {
        var out = "<?xml version=\"1.0\"?>\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"\(version)\" state=\"\(state)\">\n"
        for registration in registrations {
            out += "  <registration aor=\"\(escaped(registration.aor))\" id=\"\(registration.id)\" state=\"\(registration.state)\">\n"
            for contact in registration.contacts {
                out += "    <contact id=\"\(contact.id)\" state=\"\(contact.state)\" event=\"\(contact.event)\""
                if let expires = contact.expires { out += " expires=\"\(expires)\"" }
                out += ">\n      <uri>\(escaped(contact.uri))</uri>\n    </contact>\n"
            }
            out += "  </registration>\n"
        }
        return out + "</reginfo>\n"
    }

    private func escaped(_ text: String) -> String { PIDFDocument.escaped(text) }
}
