import Testing
@testable import CoreProxy

/// The digests and HMAC against published test vectors, since digest authentication and nonces
/// depend on them bit for bit.
struct HashingTests {
    @Test func md5AndSHA256MatchTheirPublishedVectors() {
        // RFC 1321 §A.5 and FIPS 180-2 appendix B.1.
        #expect(Hashing.hex(.md5, "") == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Hashing.hex(.md5, "abc") == "900150983cd24fb0d6963f7d28e17f72")
        #expect(Hashing.hex(.sha256, "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Non-ASCII text is hashed as its UTF-8 bytes.
        #expect(Hashing.hex(.md5, "é") == "66ddcd97cfdeabb2f6fb8a999b4bc76f")
    }

    @Test func hmacSHA256MatchesRFC4231() {
        func hex(_ bytes: [UInt8]) -> String { Hashing.hexString(bytes) }
        // Test case 1: a 20-byte key.
        #expect(hex(Hashing.hmacSHA256(key: [UInt8](repeating: 0x0B, count: 20), Array("Hi There".utf8)))
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        // Test case 2: a key shorter than the block, "Jefe".
        #expect(hex(Hashing.hmacSHA256(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8)))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Test case 6: a 131-byte key, longer than the block, is hashed first.
        #expect(hex(Hashing.hmacSHA256(key: [UInt8](repeating: 0xAA, count: 131),
                                       Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    /// Digest inputs are parts joined by ':' (RFC 7616 §3.4.1): hashing the parts is hashing the joined text.
    @Test func joinedPartsHashAsTheirJoinedText() {
        // RFC 2617 §3.5's example: HA1, HA2 and the response of Mufasa's request.
        let ha1 = Hashing.hex(.md5, joining: ["Mufasa", "testrealm@host.com", "Circle Of Life"])
        #expect(ha1 == "939e7578ed9e3c518a452acee763bce9")
        let ha2 = Hashing.hex(.md5, joining: ["GET", "/dir/index.html"])
        #expect(ha2 == "39aff3a2bab6126f332b942af96d3366")
        let response = Hashing.hex(.md5, joining: [ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth", ha2])
        #expect(response == "6629fae49393a05397450978507c4ef1")
        #expect(Hashing.hex(.sha256, joining: ["a", "", "b"]) == Hashing.hex(.sha256, "a::b"))
        #expect(Hashing.hex(.md5, joining: []) == Hashing.hex(.md5, ""))
    }

    /// A presented response is compared with the digest's hex whatever its letters' case; a nonce's
    /// signature, written by Tern in lower case, only as it was written.
    @Test func hexComparisonFoldsCaseOnlyWhenAsked() {
        let digest: [UInt8] = [0x00, 0xAB, 0xF9, 0x5C]
        digest.withUnsafeBufferPointer { bytes in
            #expect(Hashing.constantTimeEqualsHex(bytes, Array("00abf95c".utf8)))
            #expect(!Hashing.constantTimeEqualsHex(bytes, Array("00ABF95C".utf8)))
            #expect(Hashing.constantTimeEqualsHex(bytes, "00ABf95C".utf8, ignoringCase: true))
            #expect(!Hashing.constantTimeEqualsHex(bytes, Array("00abf95d".utf8), ignoringCase: true))
            #expect(!Hashing.constantTimeEqualsHex(bytes, Array("00abf95".utf8)))
            #expect(!Hashing.constantTimeEqualsHex(bytes, Array("00abf95c0".utf8)))
            // 'G' is no hex digit, folded or not.
            #expect(!Hashing.constantTimeEqualsHex(bytes, Array("00abg95c".utf8), ignoringCase: true))
        }
    }
}
