import CLibCrypto

/// Hashes and HMAC from the system libcrypto (one BoringSSL copy in the build is enough).
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
    }

    /// The lower-case hex digest of `text`.
    public static func hex(_ algorithm: Algorithm, _ text: String) -> String {
        let md = algorithm == .md5 ? EVP_md5() : EVP_sha256()
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { input in
            EVP_Digest(input.baseAddress, input.count, &output, &length, md, nil)
        }
        return hexString(output.prefix(Int(length)))
    }

    /// HMAC-SHA-256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                     messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count, &output, &length)
            }
        }
        return Array(output.prefix(Int(length)))
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
                buffer[index] = hexDigits[Int(byte >> 4)]
                buffer[index + 1] = hexDigits[Int(byte & 0x0F)]
                index += 2
            }
            return index
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
