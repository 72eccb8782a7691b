@testable import SIP
import Testing

/// List values split at commas outside quotes and `<...>` (RFC 3261 §7.3.1).
struct HeaderValueSplitterTests {
    @Test(arguments: [
        ("SIP/2.0/UDP a.test;branch=z9hG4bK1", ["SIP/2.0/UDP a.test;branch=z9hG4bK1"]),
        ("  <sip:a@b>  ", ["<sip:a@b>"]),
        ("a, b,c ,\td", ["a", "b", "c", "d"]),
        ("<sip:a@b;x=1,2>, \"Doe, John\" <sip:j@d>", ["<sip:a@b;x=1,2>", "\"Doe, John\" <sip:j@d>"]),
        ("\"quote \\\" and, comma\" <sip:q@d>,x", ["\"quote \\\" and, comma\" <sip:q@d>", "x"]),
        (" , a,, ,b, ", ["a", "b"]),
        ("", []),
        ("é, ü", ["é", "ü"]),
    ])
    func listsSplitAtTopLevelCommas(value: String, expected: [String]) {
        #expect(HeaderValueSplitter.splitList(value) == expected)
    }
}
