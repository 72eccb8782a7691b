public import SIP

/// The canonical form of an address-of-record (RFC 3261 §10.3 step 5): `sip:user@domain`, user
/// unescaped, domain lower-cased, no port, parameters or headers. `sips:` AORs share the table with
/// `sip:` ones, as one user has one set of devices.
public enum AddressOfRecord {
    public static func canonical(_ uri: SIPURI) -> String? {
        guard uri.scheme == .sip || uri.scheme == .sips, !uri.host.isEmpty else { return nil }
        let host = uri.host.lowercased()
        guard let user = uri.unescapedUser, !user.isEmpty else { return "sip:" + host }
        return "sip:" + user + "@" + host
    }
}
