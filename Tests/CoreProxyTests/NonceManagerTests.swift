import CoreProxy
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
}
