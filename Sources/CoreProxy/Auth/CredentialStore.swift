public import NIOCore

/// A user's stored digest secrets: HA1 = H(username:realm:password) per algorithm (RFC 7616 §3.4.2).
public struct DigestCredentials: Sendable, Hashable {
    public var ha1MD5: String?
    public var ha1SHA256: String?

    public init(ha1MD5: String?, ha1SHA256: String?) {
        self.ha1MD5 = ha1MD5
        self.ha1SHA256 = ha1SHA256
    }

    func ha1(_ algorithm: Hashing.Algorithm) -> String? {
        algorithm == .md5 ? ha1MD5 : ha1SHA256
    }
}

/// The answer of a ``CredentialStore``: at once from memory, or later from a database.
public enum CredentialLookup: Sendable {
    /// Known now; nil: no such user.
    case known(DigestCredentials?)
    /// Being fetched; the future completes on the loop that asked.
    case fetching(EventLoopFuture<DigestCredentials?>)
}

/// Where HA1 hashes come from (a file, MongoDB...). Never blocks: a store that needs I/O answers
/// ``CredentialLookup/fetching(_:)``.
public protocol CredentialStore: Sendable {
    func lookup(user: String, realm: String, on loop: any EventLoop) -> CredentialLookup
}

/// HA1 hashes from a text file, one user per line: `user realm md5-ha1 [sha256-ha1]`; `#` starts a
/// comment. Make a line with
/// `printf '%s:%s:%s' alice tern.test secret | md5sum` (and `sha256sum` for the second hash).
public struct FileCredentialStore: CredentialStore {
    /// By realm (lower-cased), then user: a lookup hashes the user as it came, where one key of
    /// both joined built a string (often too long to be stored inline) for every request.
    private let entries: [String: [String: DigestCredentials]]

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    public init(text: String) throws(ParseError) {
        var entries: [String: [String: DigestCredentials]] = [:]
        // isNewline: in Swift "\r\n" is one Character, equal to neither "\r" nor "\n" (files written on Windows).
        for (offset, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count == 3 || fields.count == 4 else {
                throw ParseError(line: offset + 1, message: "expected: user realm md5-ha1 [sha256-ha1]")
            }
            guard fields[2].count == 32, fields[2].allSatisfy(\.isHexDigit) else {
                throw ParseError(line: offset + 1, message: "md5-ha1 must be 32 hex digits")
            }
            if fields.count == 4, !(fields[3].count == 64 && fields[3].allSatisfy(\.isHexDigit)) {
                throw ParseError(line: offset + 1, message: "sha256-ha1 must be 64 hex digits")
            }
            entries[fields[1].lowercased(), default: [:]][fields[0]] = DigestCredentials(
                ha1MD5: fields[2].lowercased(), ha1SHA256: fields.count == 4 ? fields[3].lowercased() : nil)
        }
        self.entries = entries
    }

    public init(entries: [(user: String, realm: String, credentials: DigestCredentials)]) {
        var table: [String: [String: DigestCredentials]] = [:]
        for entry in entries { table[entry.realm.lowercased(), default: [:]][entry.user] = entry.credentials }
        self.entries = table
    }

    public var count: Int { entries.values.reduce(0) { $0 + $1.count } }

    public func credentials(user: String, realm: String) -> DigestCredentials? {
        // Realms are mostly written in lower case already: lower-cased only when not found as given.
        guard let users = entries[realm] ?? entries[realm.lowercased()] else { return nil }
        return users[user]
    }

    public func lookup(user: String, realm: String, on loop: any EventLoop) -> CredentialLookup {
        .known(credentials(user: user, realm: realm))
    }

    /// The credentials of a password (for tools and tests).
    public static func credentials(user: String, realm: String, password: String) -> DigestCredentials {
        let parts = [user, realm, password]
        return DigestCredentials(ha1MD5: Hashing.hex(.md5, joining: parts), ha1SHA256: Hashing.hex(.sha256, joining: parts))
    }
}
