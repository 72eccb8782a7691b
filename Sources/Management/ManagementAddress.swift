import CoreProxy
import SIP

/// Addresses-of-record as callers write them: `sip:alice@example.com`, `sips:...`, or the bare
/// `alice@example.com`; all become the canonical form the location and presence tables use.
enum ManagementAddress {
    static func aor(_ params: ManagementParameters, _ name: String) throws(ManagementError) -> String {
        let text = try params.string(name)
        let withScheme = text.hasPrefix("sip:") || text.hasPrefix("sips:") ? text : "sip:" + text
        guard let uri = try? SIPURI(parsing: withScheme), let canonical = AddressOfRecord.canonical(uri) else {
            throw .invalidParams("parameter '\(name)' is not a SIP address: \(text)")
        }
        return canonical
    }
}
