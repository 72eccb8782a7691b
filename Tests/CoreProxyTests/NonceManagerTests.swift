@testable import CoreProxy
import Testing

/// Stateless nonces with per-nonce counts (RFC 7616 §3.3–3.4).
struct NonceManagerTests {
    /// More live nonces than a shard keeps before it prunes: pruning drops only lapsed ones, so a
    /// replayed count is still caught, and a count that rises is still accepted.
    @Test func replaysAreCaughtAmongManyLiveNonces() {
        let manager = NonceManager(secret: Array("secret".utf8), lifetimeSeconds: 300)
        let now: Int64 = 1_795_750_000
        let nonces = (0..<70_000).map { _ in manager.make(realm: "tern.test", now: now) }
        for nonce in nonces {
            #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now) == .fresh)
        }
        #expect(manager.verify(nonces[0], realm: "tern.test", nonceCount: 1, now: now + 1) == .stale)
        #expect(manager.verify(nonces[0], realm: "tern.test", nonceCount: 2, now: now + 1) == .fresh)
        #expect(manager.verify(nonces[1], realm: "tern.test", nonceCount: 1, now: now + 2) == .stale)
        // Past its lifetime a nonce is stale whatever its count; one from another realm is not ours.
        #expect(manager.verify(nonces[2], realm: "tern.test", nonceCount: 9, now: now + 301) == .stale)
        #expect(manager.verify(nonces[3], realm: "other.test", nonceCount: 9, now: now) == .invalid)
    }

    /// A request answered without a transaction may come again with its count: the same request
    /// (its mark) within Timer J's 32 s is fresh; another request, or later, is a replay.
    @Test func aRetransmissionRepeatsItsCountWithinTheWindow() {
        let manager = NonceManager(secret: Array("secret".utf8), lifetimeSeconds: 300)
        let now: Int64 = 1_795_750_000
        let nonce = manager.make(realm: "tern.test", now: now)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now, retransmission: 41) == .fresh)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now + 1, retransmission: 41) == .fresh)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now + 1, retransmission: 43) == .stale)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now + 1) == .stale)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now + 33, retransmission: 41) == .stale)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 2, now: now + 33, retransmission: 45) == .fresh)
        // A lower count is a replay whatever the mark.
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: 1, now: now + 34, retransmission: 45) == .stale)
    }

    /// The time as `String(_:radix: 16)` writes it (what ``NonceManager/verify`` reads back), then
    /// the salt's low 48 bits.
    @Test func aStampIsTheTimeInHexAndTwelveDigitsOfSalt() {
        #expect(NonceManager.stamp(issued: 0x6943_a1b2, salt: 0xffff_0000_00ab_cdef) == "6943a1b2-000000abcdef")
        #expect(NonceManager.stamp(issued: 0, salt: 0) == "0-000000000000")
        #expect(NonceManager.stamp(issued: UInt64(Int64.max), salt: 1) == String(Int64.max, radix: 16) + "-000000000001")
        let manager = NonceManager(secret: Array("secret".utf8), lifetimeSeconds: 300)
        let nonce = manager.make(realm: "tern.test", now: 1_796_000_000)
        #expect(nonce.hasPrefix(String(1_796_000_000, radix: 16) + "-"))
        #expect(nonce.split(separator: ".").last?.count == 32)
        #expect(manager.verify(nonce, realm: "tern.test", nonceCount: nil, now: 1_796_000_010) == .fresh)
    }
}
