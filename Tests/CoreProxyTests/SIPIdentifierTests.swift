@testable import CoreProxy
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

    /// A branch of several parts is written in one go: the prefix, then each value as 16 hex digits.
    @Test func joinedWritesThePrefixAndEachValue() {
        #expect(SIPIdentifiers.joined("z9hG4bKtn", hex: 0x1, 0x0123_4567_89ab_cdef)
                 == "z9hG4bKtn0000000000000001.0123456789abcdef")
        #expect(SIPIdentifiers.joined("z9hG4bK", hex: UInt64.max) == "z9hG4bKffffffffffffffff")
        #expect(SIPIdentifiers.joined("p") == "p")
    }
}
