import NIOConcurrencyHelpers

/// Stateless digest nonces (RFC 7616 §3.3: the server chooses the form): the issue time and an
/// HMAC of it under a shared secret, so any Tern node with the same secret can verify them.
///
/// Reuse is allowed while the nonce is fresh, provided every use carries a higher nonce-count than
/// the last (the per-nonce count is the only state, kept in memory and pruned as nonces age).
public final class NonceManager: Sendable {
    public enum Verdict: Sendable, Equatable {
        case fresh
        /// Well formed and ours, but too old (or a replayed count): challenge again with stale=true.
        case stale
        /// Not one of ours.
        case invalid
    }

    private let signingKey: Hashing.HMACSHA256Key
    private let lifetimeSeconds: Int64
    private let counts: [NIOLockedValueBox<Counts>]

    /// The last nonce-count of each nonce in use, and when the shard last dropped lapsed ones.
    private struct Counts {
        var table: [PrehashedString: LastUse] = [:]
        var prunedAt: Int64 = 0
    }

    private struct LastUse {
        var count: UInt32
        var issued: Int64
        /// Which request carried the count (``RequestMark``), and when.
        var request: Int
        var at: Int64
    }

    /// How long a request answered without a transaction may come again with the same count and be
    /// taken for a retransmission: Timer J's 64·T1, the time a stateful server would absorb it.
    public static let retransmissionWindowSeconds: Int64 = 32

    public init(secret: [UInt8], lifetimeSeconds: Int64) {
        self.signingKey = Hashing.HMACSHA256Key(secret)
        self.lifetimeSeconds = lifetimeSeconds
        self.counts = (0..<16).map { _ in NIOLockedValueBox(Counts()) }
    }

    /// A new nonce for `realm` issued at `now` (Unix seconds): the time, a random salt so that no two
    /// challenges share a nonce (nonce-counts are per client), and the signature of both.
    public func make(realm: String, now: Int64) -> String {
        // The salt comes from the kernel-randomness pool the tags use; OpenSSL's generator took a
        // lock and an AES block per challenge.
        let stamp = Self.stamp(issued: UInt64(max(0, now)), salt: RandomPool.next())
        // The nonce written once: the time by String(_:radix:) and three joins were 1.8 % of a
        // digest registration's CPU.
        return signature(stamp: stamp.utf8[...], realm: realm) { mac in
            String(unsafeUninitializedCapacity: stamp.utf8.count + 1 + mac.count * 2) { buffer in
                var index = 0
                for byte in stamp.utf8 {
                    buffer[index] = byte
                    index += 1
                }
                buffer[index] = UInt8(ascii: ".")
                index += 1
                for byte in mac {
                    buffer[index] = Hashing.hexDigit(byte >> 4)
                    buffer[index + 1] = Hashing.hexDigit(byte)
                    index += 2
                }
                return index
            }
        }
    }

    /// `issued-salt`: the issue time in hex without leading zeros, then the salt's low 48 bits as
    /// twelve hex digits.
    static func stamp(issued: UInt64, salt: UInt64) -> String {
        let timeDigits = max(1, (64 - issued.leadingZeroBitCount + 3) / 4)
        return String(unsafeUninitializedCapacity: timeDigits + 13) { buffer in
            var time = issued
            for index in stride(from: timeDigits - 1, through: 0, by: -1) {
                buffer[index] = Hashing.hexDigit(UInt8(truncatingIfNeeded: time))
                time >>= 4
            }
            buffer[timeDigits] = UInt8(ascii: "-")
            var random = salt
            for index in stride(from: timeDigits + 12, through: timeDigits + 1, by: -1) {
                buffer[index] = Hashing.hexDigit(UInt8(truncatingIfNeeded: random))
                random >>= 4
            }
            return timeDigits + 13
        }
    }

    /// Checks a nonce presented with credentials, and the nonce-count when qop is used.
    ///
    /// - Parameter retransmission: for a request answered without a server transaction, what tells
    ///   it from another (its Call-ID, CSeq and top Via branch, hashed; never 0). The same request
    ///   within ``retransmissionWindowSeconds`` repeats its count legitimately: a lost 200 OK made the
    ///   client send it again, where a stateful server would have answered from the transaction.
    public func verify(_ nonce: String, realm: String, nonceCount: UInt32?, now: Int64, retransmission: Int? = nil) -> Verdict {
        // `time-salt.signature`, taken apart in place (splitting into arrays showed in profiles).
        let bytes = nonce.utf8
        guard let dot = bytes.firstIndex(of: UInt8(ascii: ".")),
              !bytes[bytes.index(after: dot)...].contains(UInt8(ascii: ".")),
              let dash = bytes[..<dot].firstIndex(of: UInt8(ascii: "-")),
              let issued = Int64(nonce[..<dash], radix: 16),
              signature(stamp: bytes[..<dot], realm: realm, { Hashing.constantTimeEqualsHex($0, bytes[bytes.index(after: dot)...]) })
        else { return .invalid }
        guard now - issued < lifetimeSeconds, issued <= now + 5 else { return .stale }
        guard let nonceCount else { return .fresh }
        let key = PrehashedString(nonce)
        let shard = counts[Int(UInt(bitPattern: key.hashCode) % UInt(counts.count))]
        return shard.withLockedValue { counts -> Verdict in
            // Lapsed nonces go at most once a second: with more than 4,096 live ones in a shard,
            // filtering on every verify made each REGISTER walk the whole table.
            if counts.table.count > 4_096, now != counts.prunedAt {
                counts.table = counts.table.filter { now - $0.value.issued < lifetimeSeconds }
                counts.prunedAt = now
            }
            if let last = counts.table[key], nonceCount <= last.count {
                if nonceCount == last.count, let retransmission, retransmission == last.request,
                   now - last.at <= Self.retransmissionWindowSeconds {
                    return .fresh
                }
                return .stale
            }
            counts.table[key] = LastUse(count: nonceCount, issued: issued, request: retransmission ?? 0, at: now)
            return .fresh
        }
    }

    /// The first 16 bytes of the HMAC of `stamp:realm`, handed to `body`; the message is put together
    /// in a temporary buffer, so checking a nonce makes no String.
    private func signature<Result>(stamp: Substring.UTF8View, realm: String,
                                   _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        let realmBytes = realm.utf8
        let length = stamp.count + 1 + realmBytes.count
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { message in
            var index = message.startIndex
            for byte in stamp { message[index] = byte; index += 1 }
            message[index] = UInt8(ascii: ":")
            index += 1
            for byte in realmBytes { message[index] = byte; index += 1 }
            return signingKey.authenticate(UnsafeRawBufferPointer(message)) { mac in
                body(UnsafeBufferPointer(rebasing: mac.prefix(16)))
            }
        }
    }
}
