/// A publication as it survives a restart.
public struct StoredPublication: Sendable, Codable, Hashable {
    public var presentity: String
    /// Stable across refreshes (the entity tag changes with each).
    public var id: String
    public var etag: String
    public var xml: String
    public var expiresAt: Int64
    public var sequence: UInt64
}

/// A subscription's dialog and settings as they survive a restart.
public struct StoredSubscription: Sendable, Codable, Hashable {
    public var id: String
    public var package: String
    public var presentity: String
    public var watcher: String
    public var callID: String
    public var localTag: String
    public var remoteTag: String
    public var localURI: String
    public var remoteURI: String
    public var remoteTarget: String
    public var routeSet: [String]
    public var transport: String
    /// A UDP flow (listener number and source address) outlives a restart; a connection does not.
    public var udpListener: Int?
    public var sourceIP: String?
    public var sourcePort: Int?
    public var event: String
    public var contact: String
    public var expiresAt: Int64
    public var authorization: String
    public var acceptsGzip: Bool
    /// RFC 5263 partial state (absent in records written before Tern kept it).
    public var acceptsDiff: Bool?
    public var minIntervalMilliseconds: Int64
    public var localCSeq: UInt32
    public var remoteCSeq: UInt32
    public var createdAt: Int64
}

/// A presentity's decision about a watcher, as it survives a restart.
public struct StoredDecision: Sendable, Codable, Hashable {
    public var presentity: String
    public var watcher: String
    public var decision: String
}

/// Everything a restart brings back.
public struct PresenceSnapshot: Sendable {
    public var publications: [StoredPublication] = []
    public var subscriptions: [StoredSubscription] = []
    public var decisions: [StoredDecision] = []
    public init() {}
}

/// Where presence state survives a restart: write-behind (the service answers from memory; the
/// store follows within milliseconds), loaded once at start.
public protocol PresenceStore: Sendable {
    func save(_ publication: StoredPublication)
    func deletePublication(presentity: String, id: String)
    func save(_ subscription: StoredSubscription)
    func deleteSubscription(id: String)
    /// nil removes the decision (the policy applies again).
    func saveDecision(presentity: String, watcher: String, decision: String?)
    /// What is still valid at `now` (lapsed entries are removed).
    func load(now: Int64) async throws -> PresenceSnapshot
    func flush() async throws
}
