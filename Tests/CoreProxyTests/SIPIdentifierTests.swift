import CoreProxy
import Testing

/// Identifiers Tern puts on the wire: 64 random bits as 16 hex digits, drawn from pages of kernel
/// randomness (more draws than one page holds, so a refill is crossed).
struct SIPIdentifierTests {
    @Test func tagsAndBranchesAreSixteenHexDigitsAndDistinct() {
        var seen = Set<String>()
        for _ in 0..<2_000 {
            let tag = SIPIdentifiers.tag()
            #expect(tag.utf8.count == 16 && tag.allSatisfy { $0.isHexDigit && !$0.isUppercase })
            seen.insert(tag)
        }
        #expect(seen.count == 2_000)
        let branch = SIPIdentifiers.branch()
        #expect(branch.hasPrefix("z9hG4bK") && branch.utf8.count == 23)
        #expect(SIPIdentifiers.callID().utf8.count == 32)
    }
}
