/// Globally routable user agent URIs (RFC 5627).
public enum GRUU {
    /// The public GRUU of an instance: its AOR with `gr` set to the instance ID (RFC 5627 §3.1).
    public static func `public`(aor: String, instance: String) -> String {
        aor + ";gr=" + instance
    }

    /// A fresh, unguessable user part for a temporary GRUU (RFC 5627 §3.2).
    public static func newTemporaryUser() -> String {
        "tgruu." + SIPIdentifiers.tag() + SIPIdentifiers.tag()
    }

    /// The temporary GRUU for a user part made by ``newTemporaryUser()``, in the AOR's domain.
    public static func temporary(user: String, aor: String) -> String {
        let domain = aor.split(separator: "@").last.map(String.init) ?? aor
        let host = domain.hasPrefix("sip:") ? String(domain.dropFirst(4)) : domain
        return "sip:" + user + "@" + host + ";gr"
    }
}
