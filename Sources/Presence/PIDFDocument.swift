import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A presence document (RFC 3863 PIDF with the RFC 4479 data model and RFC 4480 RPID elements)
/// as Tern keeps it: the top-level elements as serialized XML, by kind, with the namespace
/// declarations they need. Tern composes and forwards presence; it does not interpret every
/// extension, so elements it does not know are kept as they came.
public struct PIDFDocument: Sendable, Hashable {
    public static let namespace = "urn:ietf:params:xml:ns:pidf"
    public static let dataModelNamespace = "urn:ietf:params:xml:ns:pidf:data-model"

    public struct Element: Sendable, Hashable {
        public enum Kind: Sendable, Hashable { case tuple, person, device, note, other }
        public var kind: Kind
        /// The `id` attribute (tuples, persons and devices have one).
        public var id: String?
        /// The element as XML, prefixes as in the document.
        public var xml: String
        /// For a tuple: `open` or `closed` from `<status><basic>`.
        public var basic: String?
    }

    /// The `entity` attribute: the presentity's URI.
    public var entity: String
    /// Prefix (empty for the default namespace) → namespace URI, as declared on the root.
    public var namespaces: [String: String]
    public var elements: [Element]

    public init(entity: String, namespaces: [String: String] = ["": PIDFDocument.namespace], elements: [Element] = []) {
        self.entity = entity
        self.namespaces = namespaces
        self.elements = elements
    }

    public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        case notXML(String)
        case notPIDF
        case missingEntity
        case tupleWithoutID
        case tupleWithoutStatus(String)
        case duplicateID(String)

        /// Fits a 400 reason phrase.
        public var description: String {
            switch self {
            case .notXML(let detail): "Malformed PIDF: not well-formed XML (\(detail))"
            case .notPIDF: "Malformed PIDF: root is not a PIDF presence element"
            case .missingEntity: "Malformed PIDF: presence has no entity"
            case .tupleWithoutID: "Malformed PIDF: tuple without id"
            case .tupleWithoutStatus(let id): "Malformed PIDF: tuple \(id) has no status"
            case .duplicateID(let id): "Malformed PIDF: duplicate id \(id)"
            }
        }
    }

    /// Parses and checks a PIDF body. External entities are never loaded.
    public init(parsing bytes: [UInt8]) throws(ParseError) {
        if let problem = XMLWellFormedness.problem(in: Data(bytes)) { throw .notXML(problem) }
        let document: XMLDocument
        do {
            document = try XMLDocument(data: Data(bytes), options: [.nodeLoadExternalEntitiesNever])
        } catch {
            throw .notXML(Self.shortDescription(error))
        }
        guard let root = document.rootElement(), root.localName == "presence", root.uri == Self.namespace else {
            throw .notPIDF
        }
        guard let entity = root.unqualifiedAttribute("entity"), !entity.isEmpty else { throw .missingEntity }
        var namespaces: [String: String] = [:]
        for declaration in root.namespaces ?? [] {
            namespaces[declaration.name ?? ""] = declaration.stringValue ?? ""
        }
        var elements: [Element] = []
        var ids = Set<String>()
        for case let child as XMLElement in root.children ?? [] {
            let id = child.unqualifiedAttribute("id")
            let kind: Element.Kind
            switch (child.uri, child.localName) {
            case (Self.namespace, "tuple"): kind = .tuple
            case (Self.namespace, "note"): kind = .note
            case (Self.dataModelNamespace, "person"): kind = .person
            case (Self.dataModelNamespace, "device"): kind = .device
            default: kind = .other
            }
            var basic: String?
            if kind == .tuple {
                guard let id, !id.isEmpty else { throw .tupleWithoutID }
                guard let status = child.elements(forLocalName: "status", uri: Self.namespace).first else {
                    throw .tupleWithoutStatus(id)
                }
                basic = status.elements(forLocalName: "basic", uri: Self.namespace).first?.stringValue?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if kind != .note && kind != .other, let id {
                guard ids.insert(id).inserted else { throw .duplicateID(id) }
            }
            elements.append(Element(kind: kind, id: id, xml: child.xmlString(options: [.nodeCompactEmptyElement]), basic: basic))
        }
        self.entity = entity
        self.namespaces = namespaces
        self.elements = elements
    }

    private static func shortDescription(_ error: any Error) -> String {
        let text = (error as NSError).localizedDescription
        return String(text.prefix(80))
    }

    /// The document as `application/pidf+xml`.
    public var xml: String {
        var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence"
        var declared = namespaces
        if declared[""] == nil { declared[""] = Self.namespace }
        for (prefix, uri) in declared.sorted(by: { $0.key < $1.key }) {
            text += prefix.isEmpty ? " xmlns=\"" : " xmlns:" + prefix + "=\""
            text += Self.escaped(uri) + "\""
        }
        text += " entity=\"" + Self.escaped(entity) + "\">\n"
        for element in elements { text += element.xml + "\n" }
        return text + "</presence>\n"
    }

    /// Whether any tuple says open.
    public var isOpen: Bool { elements.contains { $0.kind == .tuple && $0.basic == "open" } }

    /// The status a watcher sees, reduced to what a throttle compares: the basic status of each tuple.
    public var basicStatus: [String: String] {
        var status: [String: String] = [:]
        for element in elements where element.kind == .tuple { status[element.id ?? ""] = element.basic ?? "" }
        return status
    }

    /// Several publications of one presentity as one document (RFC 4479 §3.4 composition, kept
    /// simple): every tuple, person and device element, the newest winning when two share an id;
    /// notes and other elements of every publication; the namespaces all of them declared.
    /// `publications` come oldest first.
    public static func compose(entity: String, _ publications: [PIDFDocument]) -> PIDFDocument {
        var namespaces: [String: String] = ["": namespace]
        var byID: [String: Int] = [:]
        var elements: [Element] = []
        for publication in publications {
            for (prefix, uri) in publication.namespaces where namespaces[prefix] == nil {
                namespaces[prefix] = uri
            }
            for element in publication.elements {
                if let id = element.id, element.kind != .note, element.kind != .other {
                    let key = "\(element.kind):\(id)"
                    if let index = byID[key] {
                        elements[index] = element
                        continue
                    }
                    byID[key] = elements.count
                }
                elements.append(element)
            }
        }
        // Tuples first, then the data model, then notes (the order RFC 3863 §4.1 gives).
        let order: [Element.Kind: Int] = [.tuple: 0, .person: 1, .device: 2, .other: 3, .note: 4]
        let sorted = elements.enumerated().sorted { lhs, rhs in
            let (l, r) = (order[lhs.element.kind] ?? 3, order[rhs.element.kind] ?? 3)
            return l != r ? l < r : lhs.offset < rhs.offset
        }.map(\.element)
        return PIDFDocument(entity: entity, namespaces: namespaces, elements: sorted)
    }

    /// What a watcher sees when there is nothing to say (no publication, or not authorised yet):
    /// one closed tuple (RFC 3856 §6.6.2's "neutral" state).
    public static func closed(entity: String) -> PIDFDocument {
        PIDFDocument(entity: entity, elements: [
            Element(kind: .tuple, id: "tern-closed", xml: "<tuple id=\"tern-closed\"><status><basic>closed</basic></status></tuple>",
                    basic: "closed"),
        ])
    }

    /// Open while registered: one tuple per contact when presence is derived from registration.
    public static func registered(entity: String, contacts: [String]) -> PIDFDocument {
        PIDFDocument(entity: entity, elements: contacts.enumerated().map { index, contact in
            let id = "tern-reg-\(index)"
            return Element(kind: .tuple, id: id, xml: "<tuple id=\"\(id)\"><status><basic>open</basic></status><contact>"
                + escaped(contact) + "</contact></tuple>", basic: "open")
        })
    }

    public static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }
}

// MARK: - Partial presence (RFC 5262, RFC 5263)

extension PIDFDocument {
    public static let diffNamespace = "urn:ietf:params:xml:ns:pidf-diff"
    static let diffPrefix = "pdiff"

    private func diffRoot(_ name: String, version: Int) -> String {
        var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<" + Self.diffPrefix + ":" + name
        var declared = namespaces
        if declared[""] == nil { declared[""] = Self.namespace }
        declared[Self.diffPrefix] = Self.diffNamespace
        for (prefix, uri) in declared.sorted(by: { $0.key < $1.key }) {
            text += prefix.isEmpty ? " xmlns=\"" : " xmlns:" + prefix + "=\""
            text += Self.escaped(uri) + "\""
        }
        return text + " entity=\"" + Self.escaped(entity) + "\" version=\"\(version)\">\n"
    }

    /// The whole state as `application/pidf-diff+xml` (a `pidf-full` document): the first NOTIFY
    /// of a subscription that accepts partial state, and any time a diff cannot say it.
    public func fullStateXML(version: Int) -> String {
        var text = diffRoot("pidf-full", version: version)
        for element in elements { text += element.xml + "\n" }
        return text + "</" + Self.diffPrefix + ":pidf-full>\n"
    }

    /// What changed since `old` as a `pidf-diff` document (RFC 5262 §4 with RFC 5261 patch
    /// operations): tuples, persons and devices added, replaced or removed by id. Nil when
    /// something without an id changed (a note, an unknown element): then the full state goes.
    public func diff(from old: PIDFDocument, version: Int) -> String? {
        func keyed(_ document: PIDFDocument) -> (byKey: [String: Element], unkeyed: [String])? {
            var byKey: [String: Element] = [:]
            var unkeyed: [String] = []
            for element in document.elements {
                if let id = element.id, element.kind != .note, element.kind != .other {
                    byKey["\(element.kind):\(id)"] = element
                } else {
                    unkeyed.append(element.xml)
                }
            }
            return (byKey, unkeyed)
        }
        guard let before = keyed(old), let after = keyed(self), before.unkeyed == after.unkeyed,
              old.entity == entity, old.namespaces == namespaces else { return nil }
        var operations: [String] = []
        for element in elements {
            guard let id = element.id, element.kind != .note, element.kind != .other else { continue }
            let key = "\(element.kind):\(id)"
            if let previous = before.byKey[key] {
                if previous.xml != element.xml {
                    operations.append("<" + Self.diffPrefix + ":replace sel=\"" + selector(element, id: id) + "\">" + element.xml
                        + "</" + Self.diffPrefix + ":replace>")
                }
            } else {
                operations.append("<" + Self.diffPrefix + ":add sel=\"presence\">" + element.xml + "</" + Self.diffPrefix + ":add>")
            }
        }
        for element in old.elements {
            guard let id = element.id, element.kind != .note, element.kind != .other,
                  after.byKey["\(element.kind):\(id)"] == nil else { continue }
            operations.append("<" + Self.diffPrefix + ":remove sel=\"" + selector(element, id: id) + "\"/>")
        }
        var text = diffRoot("pidf-diff", version: version)
        for operation in operations { text += operation + "\n" }
        return text + "</" + Self.diffPrefix + ":pidf-diff>\n"
    }

    /// `*/tuple[@id='x']`, or `*/dm:person[@id='x']` with the document's own prefix for the data model.
    private func selector(_ element: Element, id: String) -> String {
        let name: String
        switch element.kind {
        case .tuple:
            name = "tuple"
        case .person, .device:
            let prefix = namespaces.first { $0.value == Self.dataModelNamespace }?.key ?? "dm"
            name = (prefix.isEmpty ? "" : prefix + ":") + (element.kind == .person ? "person" : "device")
        case .note, .other:
            name = "*"
        }
        let quoted = id.replacingOccurrences(of: "'", with: "&apos;")
        return "*/" + name + "[@id='" + Self.escaped(quoted) + "']"
    }
}
