public import Logging
public import MongoSupport
import NIOConcurrencyHelpers
public import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// HA1 hashes from the MongoDB collection `subscriber`, one document per user and realm:
/// `{username, realm, ha1_md5, ha1_sha256}` (HA1 = H(username:realm:password), RFC 7616 §3.4.2).
///
/// A lookup that is not in the cache is fetched on the database threads while the request waits;
/// answers are cached (found ones for `cacheSeconds`, unknown users for `negativeCacheSeconds`) so
/// that a phone's REGISTER, its refreshes and its calls cost one database read between them.
public final class MongoCredentialStore: CredentialStore {
    public static let collection = "subscriber"

    private struct Entry {
        var credentials: DigestCredentials?
        var until: Int64
    }

    private let database: MongoDatabase
    private let cacheSeconds: Int64
    private let negativeCacheSeconds: Int64
    private let maxCached: Int
    private let cache = NIOLockedValueBox<[String: Entry]>([:])
    private let logger: Logger

    public init(database: MongoDatabase, cacheSeconds: Int64 = 60, negativeCacheSeconds: Int64 = 5,
                maxCached: Int = 200_000, logger: Logger) {
        self.database = database
        self.cacheSeconds = cacheSeconds
        self.negativeCacheSeconds = negativeCacheSeconds
        self.maxCached = maxCached
        self.logger = logger
    }

    /// Creates the unique index on (username, realm).
    public func prepare() async throws {
        try await database.perform { session in
            try session.createIndexes(Self.collection, [
                ["key": .document(["username": .int32(1), "realm": .int32(1)]), "name": .string("username_realm"), "unique": .bool(true)],
            ])
        }
    }

    public func lookup(user: String, realm: String, on loop: any EventLoop) -> CredentialLookup {
        let key = user + "\u{0}" + realm.lowercased()
        let now = Int64(time(nil))
        if let entry = cache.withLockedValue({ $0[key] }), entry.until > now {
            return .known(entry.credentials)
        }
        let realmKey = realm.lowercased()
        let future = database.perform(on: loop) { session -> DigestCredentials? in
            let found = try session.find(Self.collection, filter: ["username": .string(user), "realm": .string(realmKey)], limit: 1)
            guard let document = found.first else { return nil }
            let md5 = document["ha1_md5"]?.string.map { $0.lowercased() }
            let sha256 = document["ha1_sha256"]?.string.map { $0.lowercased() }
            return DigestCredentials(ha1MD5: md5, ha1SHA256: sha256)
        }
        future.whenSuccess { [self] credentials in
            let until = now + (credentials == nil ? negativeCacheSeconds : cacheSeconds)
            cache.withLockedValue { table in
                if table.count >= maxCached { table = table.filter { $0.value.until > now } }
                if table.count < maxCached { table[key] = Entry(credentials: credentials, until: until) }
            }
        }
        return .fetching(future)
    }

    /// Forgets cached answers (after credentials changed).
    public func invalidate() {
        cache.withLockedValue { $0.removeAll() }
    }

    /// Stores a user's hashes (management, provisioning, tests).
    public func setCredentials(user: String, realm: String, _ credentials: DigestCredentials) async throws {
        let realmKey = realm.lowercased()
        var document: BSONDocument = ["username": .string(user), "realm": .string(realmKey)]
        if let md5 = credentials.ha1MD5 { document["ha1_md5"] = .string(md5) }
        if let sha256 = credentials.ha1SHA256 { document["ha1_sha256"] = .string(sha256) }
        try await database.perform { [document] session in
            try session.bulkWrite(Self.collection, [.replaceOne(
                filter: ["username": .string(user), "realm": .string(realmKey)], replacement: document, upsert: true)])
        }
        cache.withLockedValue { $0[user + "\u{0}" + realmKey] = nil }
    }
}
