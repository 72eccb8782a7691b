import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
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

    static let namespace = "urn:ietf:params:xml:ns:reginfo"

    /// Why a body is not a reginfo document, said in the 400's reason phrase.
    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    init(version: Int, state: String, registrations: [Registration]) {
        self.version = version
        self.state = state
        self.registrations = registrations
    }

    /// Reads a reginfo document (RFC 3680 §5.4). External entities are never loaded.
    init(parsing bytes: [UInt8]) throws(Malformed) {
        if let problem = XMLWellFormedness.problem(in: Data(bytes)) { throw Malformed(description: "Malformed reginfo: " + problem) }
        let document: XMLDocument
        do {
            document = try XMLDocument(data: Data(bytes), options: [.nodeLoadExternalEntitiesNever])
        } catch {
            throw Malformed(description: "Malformed reginfo: not XML")
        }
        guard let root = document.rootElement(), root.localName == "reginfo", root.uri == Self.namespace else {
            throw Malformed(description: "Malformed reginfo: the root is not reginfo in " + Self.namespace)
        }
        guard let versionText = root.unqualifiedAttribute("version"), let version = Int(versionText), version >= 0 else {
            throw Malformed(description: "Malformed reginfo: version missing or not a number")
        }
        guard let state = root.unqualifiedAttribute("state"), state == "full" || state == "partial" else {
            throw Malformed(description: "Malformed reginfo: state must be full or partial")
        }
        var registrations: [Registration] = []
        for element in root.elements(forLocalName: "registration", uri: Self.namespace) {
            guard let aor = element.unqualifiedAttribute("aor"), let id = element.unqualifiedAttribute("id"),
                  let registrationState = element.unqualifiedAttribute("state") else {
                throw Malformed(description: "Malformed reginfo: a registration needs aor, id and state")
            }
            var contacts: [Contact] = []
            for contact in element.elements(forLocalName: "contact", uri: Self.namespace) {
                guard let contactID = contact.unqualifiedAttribute("id"), let contactState = contact.unqualifiedAttribute("state"),
                      let event = contact.unqualifiedAttribute("event"),
                      let uri = contact.elements(forLocalName: "uri", uri: Self.namespace).first?.stringValue?
                        .trimmingCharacters(in: .whitespacesAndNewlines), !uri.isEmpty else {
                    throw Malformed(description: "Malformed reginfo: a contact of \(aor) needs id, state, event and uri")
                }
                contacts.append(Contact(id: contactID, state: contactState, event: event,
                                        expires: contact.unqualifiedAttribute("expires").flatMap { Int($0) }, uri: uri))
            }
            registrations.append(Registration(aor: aor, id: id, state: registrationState, contacts: contacts))
        }
        self.init(version: version, state: state, registrations: registrations)
    }
}
