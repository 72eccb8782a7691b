import CLibCrypto

/// Hashes and HMAC from the system libcrypto (one BoringSSL copy in the build is enough).
///
/// The digests are fetched from OpenSSL's provider once. `EVP_md5()` and the one-shot `HMAC()`
/// look the algorithm up again on every call (property parsing, locks, string compares): that
/// was 9% of a digest REGISTER's CPU.
public enum Hashing {
    public enum Algorithm: String, Sendable, Hashable, CaseIterable {
        case md5 = "MD5"
        case sha256 = "SHA-256"

        /// Reads a Digest `algorithm` value (RFC 7616 §3.3); absent means MD5.
        public init?(digestName: String?) {
            switch digestName?.uppercased() {
            case nil, "MD5": self = .md5
            case "SHA-256": self = .sha256
            default: return nil
            }
        }

        fileprivate var fetched: FetchedDigest {
            switch self {
            case .md5: Hashing.md5
            case .sha256: Hashing.sha256
            }
        }
    }

    /// The lower-case hex digest of `text`.
    public static func hex(_ algorithm: Algorithm, _ text: String) -> String {
        withDigest(algorithm.fetched, of: text) { hexString($0) }
    }

    /// The lower-case hex digest of `parts` joined by ':', the form of every Digest input (RFC 7616 §3.4.1).
    public static func hex(_ algorithm: Algorithm, joining parts: [String]) -> String {
        withDigest(algorithm, joining: parts) { hexString($0) }
    }

    /// Hashes `parts` joined by ':' and hands the digest to `body`. The input is put together in a
    /// temporary buffer: joining a response's six parts with `+` made ten Strings.
    public static func withDigest<Result>(_ algorithm: Algorithm, joining parts: [String],
                                          _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        let length = parts.reduce(max(parts.count - 1, 0)) { $0 + $1.utf8.count }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(length, 1)) { buffer in
            var written = 0
            for (index, part) in parts.enumerated() {
                if index > 0 {
                    buffer[written] = UInt8(ascii: ":")
                    written += 1
                }
                for byte in part.utf8 {
                    buffer[written] = byte
                    written += 1
                }
            }
            return withDigest(algorithm.fetched, of: UnsafeBufferPointer(rebasing: buffer[..<written]), body)
        }
    }

    /// Whether `presented` is the hex of `digest`, looking at every byte whatever differs. With
    /// `ignoringCase`, upper-case hex digits count as their lower-case ones.
    static func constantTimeEqualsHex(_ digest: UnsafeBufferPointer<UInt8>, _ presented: some Collection<UInt8>,
                                      ignoringCase: Bool = false) -> Bool {
        guard presented.count == digest.count * 2 else { return false }
        var difference: UInt8 = 0
        var index = presented.startIndex
        func compareNext(_ nibble: UInt8) {
            var digit = presented[index]
            if ignoringCase, digit >= UInt8(ascii: "A"), digit <= UInt8(ascii: "F") { digit += 0x20 }
            difference |= digit ^ hexDigit(nibble)
            index = presented.index(after: index)
        }
        for byte in digest {
            compareNext(byte >> 4)
            compareNext(byte)
        }
        return difference == 0
    }

    /// HMAC-SHA-256 of `message` under `key` (RFC 2104), from two SHA-256 passes.
    public static func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { HMACSHA256Key(key).authenticate($0) { Array($0) } }
    }

    /// An HMAC-SHA-256 key with its padded blocks worked out once (RFC 2104 §2), for a key that signs
    /// many messages: the nonces of every challenge and every REGISTER with credentials. Padding and
    /// concatenating per call was seven arrays for each nonce made or checked.
    public struct HMACSHA256Key: Sendable {
        private static let blockSize = 64
        private let innerPad: [UInt8]
        private let outerPad: [UInt8]

        public init(_ key: [UInt8]) {
            var block = key.count > Self.blockSize ? Hashing.withDigest(Hashing.sha256, of: key) { Array($0) } : key
            block.append(contentsOf: repeatElement(0, count: Self.blockSize - block.count))
            innerPad = block.map { $0 ^ 0x36 }
            outerPad = block.map { $0 ^ 0x5C }
        }

        /// The HMAC of `message`, handed to `body` from a temporary buffer.
        public func authenticate<Result>(_ message: UnsafeRawBufferPointer,
                                         _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
            let block = Self.blockSize
            let capacity = block + max(message.count, Int(EVP_MAX_MD_SIZE))
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
                _ = buffer.initialize(from: innerPad)
                _ = UnsafeMutableBufferPointer(rebasing: buffer[block...]).initialize(from: message)
                let innerLength = Hashing.withDigest(Hashing.sha256, of: UnsafeBufferPointer(rebasing: buffer[..<(block + message.count)])) { inner in
                    _ = UnsafeMutableBufferPointer(rebasing: buffer[block...]).initialize(from: inner)
                    return inner.count
                }
                _ = buffer.initialize(from: outerPad)
                return Hashing.withDigest(Hashing.sha256, of: UnsafeBufferPointer(rebasing: buffer[..<(block + innerLength)]), body)
            }
        }
    }

    /// Cryptographically random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        if RAND_bytes(&bytes, Int32(count)) != 1 {
            var generator = SystemRandomNumberGenerator()
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
        }
        return bytes
    }

    static func hexString(_ bytes: some Collection<UInt8>) -> String {
        // Written as bytes: a Character appended at a time was 3% of a digest REGISTER.
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            var index = 0
            for byte in bytes {
                buffer[index] = hexDigit(byte >> 4)
                buffer[index + 1] = hexDigit(byte)
                index += 2
            }
            return index
        }
    }

    /// The lower-case hex digit of the low four bits of `nibble`.
    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        hexDigits[Int(nibble & 0x0F)]
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
    private static let md5 = FetchedDigest(name: "MD5", legacy: EVP_md5())
    private static let sha256 = FetchedDigest(name: "SHA256", legacy: EVP_sha256())

    /// Hashes `input` and hands the digest to `body`, without an intermediate array.
    private static func withDigest<Input: Sequence<UInt8>, Result>(
        _ digest: FetchedDigest, of input: Input, _ body: (UnsafeBufferPointer<UInt8>) -> Result
    ) -> Result {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Int(EVP_MAX_MD_SIZE)) { output in
            var length: UInt32 = 0
            let hashed: Int32? = input.withContiguousStorageIfAvailable { bytes in
                EVP_Digest(bytes.baseAddress, bytes.count, output.baseAddress, &length, digest.pointer, nil)
            }
            if hashed == nil {
                let bytes = Array(input)
                _ = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, output.baseAddress, &length, digest.pointer, nil) }
            }
            return body(UnsafeBufferPointer(rebasing: output.prefix(Int(length))))
        }
    }

    private static func withDigest<Result>(_ digest: FetchedDigest, of text: String,
                                           _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        var text = text
        return text.withUTF8 { bytes in withDigest(digest, of: bytes, body) }
    }
}

/// A digest implementation fetched from the default provider once and kept for the process.
/// OpenSSL documents fetched algorithm objects as shareable between threads.
private final class FetchedDigest: @unchecked Sendable {
    let pointer: OpaquePointer?

    init(name: String, legacy: OpaquePointer?) {
        // Not fetchable (a provider configuration without it): the legacy object still works, slowly.
        pointer = EVP_MD_fetch(nil, name, nil) ?? legacy
    }
}
