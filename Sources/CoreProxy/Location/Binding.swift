public import NIOCore
public import SIP

/// One registered contact of an address-of-record (RFC 3261 §10, RFC 5626, RFC 5627).
public struct Binding: Sendable, Hashable {
    /// The fields, behind one reference: a REGISTER copies its binding half a dozen times (into the
    /// table, its change event, the 200 OK, the diff against the old set), and a copy of twenty
    /// fields retained each one (3 to 4% of a REGISTER). Copies share the storage; a change to a
    /// shared one copies it first.
    private var storage: Storage

    /// The fields of a binding. Mutated only through a binding that holds the only reference to it
    /// (``Binding/update(_:)``), so sharing it between threads is safe.
    private final class Storage: @unchecked Sendable {
        var aor: String
        var contact: SIPURI
        var contactText: String
        var contactParameters: SIPParameters
        var expiresAt: Int64
        var callID: String
        var cseq: UInt32
        var instanceID: String?
        var regID: UInt32?
        var transport: SIPTransportProtocol
        var flow: SIPFlow?
        var source: SocketAddress?
        var path: [String] = []
        var userAgent: String?
        var temporaryGRUUs: [String] = []
        var registeredAt: Int64 = 0
        var acceptsGzip = false
        var registeringBranch = 0
        var isBehindNAT = false
        var key: String

        init(aor: String, contact: SIPURI, contactText: String, contactParameters: SIPParameters, expiresAt: Int64,
             callID: String, cseq: UInt32, transport: SIPTransportProtocol, flow: SIPFlow?, source: SocketAddress?,
             instanceID: String?, regID: UInt32?, key: String) {
            self.aor = aor
            self.contact = contact
            self.contactText = contactText
            self.contactParameters = contactParameters
            self.expiresAt = expiresAt
            self.callID = callID
            self.cseq = cseq
            self.transport = transport
            self.flow = flow
            self.source = source
            self.instanceID = instanceID
            self.regID = regID
            self.key = key
        }

        func copy() -> Storage {
            let copy = Storage(aor: aor, contact: contact, contactText: contactText, contactParameters: contactParameters,
                               expiresAt: expiresAt, callID: callID, cseq: cseq, transport: transport, flow: flow,
                               source: source, instanceID: instanceID, regID: regID, key: key)
            copy.path = path
            copy.userAgent = userAgent
            copy.temporaryGRUUs = temporaryGRUUs
            copy.registeredAt = registeredAt
            copy.acceptsGzip = acceptsGzip
            copy.registeringBranch = registeringBranch
            copy.isBehindNAT = isBehindNAT
            return copy
        }

        func hasSameFields(as other: Storage) -> Bool {
            aor == other.aor && contact == other.contact && contactText == other.contactText
                && contactParameters == other.contactParameters && expiresAt == other.expiresAt && callID == other.callID
                && cseq == other.cseq && instanceID == other.instanceID && regID == other.regID
                && transport == other.transport && flow == other.flow && source == other.source && path == other.path
                && userAgent == other.userAgent && temporaryGRUUs == other.temporaryGRUUs
                && registeredAt == other.registeredAt && acceptsGzip == other.acceptsGzip
                && registeringBranch == other.registeringBranch && isBehindNAT == other.isBehindNAT && key == other.key
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(aor)
            hasher.combine(key)
            hasher.combine(contactText)
            hasher.combine(expiresAt)
            hasher.combine(callID)
            hasher.combine(cseq)
        }
    }

    /// Changes the fields, copying them first when another binding shares them.
    private mutating func update(_ change: (Storage) -> Void) {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        change(storage)
    }

    public static func == (lhs: Binding, rhs: Binding) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.hasSameFields(as: rhs.storage)
    }

    public func hash(into hasher: inout Hasher) { storage.hash(into: &hasher) }

    /// The canonical address-of-record, `sip:user@domain` (see ``AddressOfRecord``).
    public var aor: String {
        get { storage.aor }
        set { update { $0.aor = newValue } }
    }
    /// The Contact URI as the device registered it (the device's own view, echoed in 200 OK).
    public var contact: SIPURI {
        get { storage.contact }
        set {
            update { storage in
                storage.contact = newValue
                storage.contactText = newValue.description
            }
            rekey()
        }
    }
    /// ``contact`` as text, spelled once: the 200 OK, every binding event and the stores write it.
    public var contactText: String { storage.contactText }
    /// Contact parameters other than `expires` (q, +sip.instance, reg-id, feature tags...).
    public var contactParameters: SIPParameters {
        get { storage.contactParameters }
        set { update { $0.contactParameters = newValue } }
    }
    /// Unix time in milliseconds when the binding lapses.
    public var expiresAt: Int64 {
        get { storage.expiresAt }
        set { update { $0.expiresAt = newValue } }
    }
    public var callID: String {
        get { storage.callID }
        set { update { $0.callID = newValue } }
    }
    public var cseq: UInt32 {
        get { storage.cseq }
        set { update { $0.cseq = newValue } }
    }
    /// `+sip.instance` (RFC 5626 §4.1): one device, whatever its contact URI.
    public var instanceID: String? {
        get { storage.instanceID }
        set {
            update { $0.instanceID = newValue }
            rekey()
        }
    }
    /// `reg-id` (RFC 5626 §4.2): with the instance, one flow of that device.
    public var regID: UInt32? {
        get { storage.regID }
        set {
            update { $0.regID = newValue }
            rekey()
        }
    }
    /// The transport the REGISTER arrived over.
    public var transport: SIPTransportProtocol {
        get { storage.transport }
        set { update { $0.transport = newValue } }
    }
    /// The flow the REGISTER arrived on: requests for this device go back over it (RFC 5626 §5.3).
    /// Nil after a restart for connection flows, which died with the old process.
    public var flow: SIPFlow? {
        get { storage.flow }
        set { update { $0.flow = newValue } }
    }
    /// The address the REGISTER came from (`received`/`rport`, RFC 3581).
    public var source: SocketAddress? {
        get { storage.source }
        set { update { $0.source = newValue } }
    }
    /// Path header values of the REGISTER (RFC 3327), the route set toward the contact.
    public var path: [String] {
        get { storage.path }
        set { update { $0.path = newValue } }
    }
    public var userAgent: String? {
        get { storage.userAgent }
        set { update { $0.userAgent = newValue } }
    }
    /// Temporary GRUUs handed out for this instance since its Call-ID last changed (RFC 5627 §4.2).
    public var temporaryGRUUs: [String] {
        get { storage.temporaryGRUUs }
        set { update { $0.temporaryGRUUs = newValue } }
    }
    /// Unix milliseconds of the REGISTER that last added or refreshed it (0 when unknown, after a
    /// restart from a store that does not keep it): "the device the user used last".
    public var registeredAt: Int64 {
        get { storage.registeredAt }
        set { update { $0.registeredAt = newValue } }
    }
    /// Whether the REGISTER's Accept-Encoding named gzip: bodies sent to the device may be compressed.
    public var acceptsGzip: Bool {
        get { storage.acceptsGzip }
        set { update { $0.acceptsGzip = newValue } }
    }
    /// A hash of the top Via branch of the REGISTER that last set it (0 when unknown): with
    /// stateless replies, what tells that REGISTER's retransmissions from a new one with its CSeq.
    public var registeringBranch: Int {
        get { storage.registeringBranch }
        set { update { $0.registeringBranch = newValue } }
    }

    public init(aor: String, contact: SIPURI, contactParameters: SIPParameters, expiresAt: Int64, callID: String,
                cseq: UInt32, transport: SIPTransportProtocol, flow: SIPFlow?, source: SocketAddress?,
                instanceID: String? = nil, regID: UInt32? = nil) {
        let contactText = contact.description
        storage = Storage(aor: aor, contact: contact, contactText: contactText, contactParameters: contactParameters,
                          expiresAt: expiresAt, callID: callID, cseq: cseq, transport: transport, flow: flow, source: source,
                          instanceID: instanceID, regID: regID,
                          key: Binding.key(instanceID: instanceID, regID: regID, contact: contact, spelled: contactText))
    }

    private mutating func rekey() {
        let key = Binding.key(instanceID: instanceID, regID: regID, contact: contact, spelled: contactText)
        update { $0.key = key }
    }

    /// What identifies this binding among its AOR's bindings: the device and flow when the contact
    /// names them (RFC 5626 §6: same instance and reg-id replace each other; RFC 5627: same instance),
    /// otherwise the contact URI (RFC 3261 §10.3 step 7, with URI comparison).
    /// Kept with the binding (and redone when any part changes): registrations, lookups and the
    /// location service's change events compare keys several times per REGISTER.
    public var key: String { storage.key }

    /// - Parameter spelled: `contact` spelled out, when it is at hand: a contact already in normal
    ///   form (most are) is keyed by it instead of being normalized again.
    static func key(instanceID: String?, regID: UInt32?, contact: SIPURI, spelled: String? = nil) -> String {
        if let instanceID {
            return "instance:" + instanceID + (regID.map { ";reg-id=" + String($0) } ?? "")
        }
        if let spelled, let key = ContactKey.folded(contact, spelled: spelled, prefix: "contact:") { return key }
        return ContactKey.normalized(contact, prefix: "contact:")
    }

    /// Seconds left at `now` (0 when lapsed).
    public func remainingSeconds(at now: Int64) -> Int {
        max(0, Int((expiresAt - now + 999) / 1000))
    }

    /// The q-value, 1.0 when absent (RFC 3261 §20.10 leaves the default to the server; Tern treats
    /// an unranked contact as most preferred, as Kamailio does).
    public var q: Double {
        guard let text = contactParameters.unquoted("q"), let value = Double(text), (0...1).contains(value) else { return 1 }
        return value
    }

    /// The media types the device registered as feature tags (RFC 3840 §9: `audio`, `video`, ...),
    /// nil when it registered none, which says nothing about what it supports.
    public var registeredMediaTypes: Set<String>? {
        var types: Set<String> = []
        for tag in ["audio", "video", "text", "application", "message"] {
            guard case .some(let value) = contactParameters[tag] else { continue }
            let text = value.map { $0.trimmingCharacters(in: "\"").uppercased() }
            if text == nil || text == "TRUE" { types.insert(tag) }
        }
        return types.isEmpty ? nil : types
    }

    /// Whether the device is behind NAT (decided at registration by ``NATDetection``): requests for it
    /// then go to the address its REGISTER came from, not to its Contact.
    public var isBehindNAT: Bool {
        get { storage.isBehindNAT }
        set { update { $0.isBehindNAT = newValue } }
    }

    /// Whether requests for this device must use the flow its REGISTER arrived on: always for
    /// connections (RFC 5626 §5.3, and the only way through NAT), for UDP when behind NAT or when
    /// the device asked for outbound (reg-id). Otherwise the Contact is reachable as it stands, which
    /// also makes third-party registrations work.
    public var routesOverFlow: Bool {
        transport.isReliable || isBehindNAT || regID != nil
    }
}

/// URI normalisation for binding identity: §19.1.4 equivalence reduced to a string (escapes
/// resolved, host lower-cased, parameters sorted by name).
enum ContactKey {
    static func normalized(_ uri: SIPURI, prefix: StaticString = "") -> String {
        // Built in one reserved string, and case-folded only where there is an upper-case letter:
        // every REGISTER without +sip.instance makes one (2% of a REGISTER when built piecewise).
        var text = ""
        text.reserveCapacity(prefix.utf8CodeUnitCount + 16 + (uri.user?.utf8.count ?? 0) + uri.host.utf8.count
                             + uri.parameters.estimatedLength)
        text.append(prefix.description)
        text.append(uri.scheme.description)
        text.append(":")
        if let user = uri.unescapedUser {
            text.append(user)
            text.append("@")
        }
        appendFolded(uri.host, to: &text)
        if let port = uri.port {
            text.append(":")
            text.append(String(port))
        }
        if uri.parameters.count == 1, let only = uri.parameters.items.first {
            appendParameter(only, to: &text)
        } else if uri.parameters.count > 1 {
            // Sorted as written out, so that the order of the parameters does not matter.
            let parameters = uri.parameters.map { item in
                var rendered = ""
                appendParameter(item, to: &rendered)
                return rendered
            }.sorted()
            for parameter in parameters { text.append(parameter) }
        }
        return text
    }

    /// ``normalized(_:prefix:)`` made from `spelled`, `uri`'s description, when that needs no more
    /// than ASCII letters after the user part lower-cased (`transport=UDP`): no escapes, nothing
    /// beyond ASCII, at most one parameter so none to sort. Nil otherwise.
    static func folded(_ uri: SIPURI, spelled: String, prefix: StaticString) -> String? {
        guard uri.scheme == .sip || uri.scheme == .sips, uri.password == nil, uri.headers.isEmpty, uri.opaque == nil,
              uri.parameters.count <= 1 else { return nil }
        if let user = uri.user, user.utf8.contains(UInt8(ascii: "%")) { return nil }
        if let only = uri.parameters.items.first, let value = only.value, value.utf8.contains(UInt8(ascii: "%")) { return nil }
        var spelled = spelled
        return spelled.withUTF8 { bytes -> String? in
            var foldFrom = 0
            // The user part keeps its case; it ends at the first '@' (unescaped only there).
            if uri.user != nil, let at = bytes.firstIndex(of: UInt8(ascii: "@")) { foldFrom = at }
            let prefixLength = prefix.utf8CodeUnitCount
            var ascii = true
            let key = String(unsafeUninitializedCapacity: prefixLength + bytes.count) { buffer in
                prefix.withUTF8Buffer { source in
                    for index in 0..<prefixLength { buffer[index] = source[index] }
                }
                for index in 0..<bytes.count {
                    let byte = bytes[index]
                    ascii = ascii && byte < 0x80
                    buffer[prefixLength + index] = index >= foldFrom && byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
                }
                return prefixLength + bytes.count
            }
            return ascii ? key : nil
        }
    }

    private static func needsFolding(_ part: String) -> Bool {
        part.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A || $0 >= 0x80 })
    }

    private static func appendParameter(_ item: SIPParameters.Parameter, to text: inout String) {
        text.append(";")
        appendFolded(item.name, to: &text)
        if let value = item.value {
            text.append("=")
            appendFolded(percentDecoded(value), to: &text)
        }
    }

    private static func appendFolded(_ part: String, to text: inout String) {
        if needsFolding(part) {
            text.append(part.lowercased())
        } else {
            text.append(part)
        }
    }
}
