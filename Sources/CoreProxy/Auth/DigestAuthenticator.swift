public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import SIP
import Metrics
#if canImport(Glibc)
import Glibc
#endif

/// Digest authentication (RFC 3261 §22, RFC 7616, RFC 2617): 401 for REGISTER and requests to the
/// server, 407 for requests being proxied; MD5 and SHA-256; stateless nonces reusable with a rising
/// nonce-count; optional trust of an authenticated TLS/WSS connection; failures counted per source
/// and rate-limited.
public final class DigestAuthenticator: Sendable {
    public struct Configuration: Sendable {
        /// The realm; nil uses the domain of the request (To for REGISTER, From otherwise).
        public var realm: String?
        /// Algorithms offered, strongest first (default SHA-256 and MD5).
        public var algorithms: [Hashing.Algorithm]
        /// How long a nonce may be reused (default 300 s).
        public var nonceLifetimeSeconds: Int64
        /// Secret that signs nonces; give every node the same one (default: random per start).
        public var secret: [UInt8]
        /// Accept further requests from a user on a TLS/WSS connection where they authenticated
        /// (default false), for this long (default 3600 s).
        public var trustTLSConnections: Bool
        public var tlsTrustSeconds: Int64
        /// Failures from one source address within a minute before it is refused with 403 (default 20).
        public var maxFailuresPerMinute: Int

        public init(realm: String? = nil, algorithms: [Hashing.Algorithm] = [.sha256, .md5],
                    nonceLifetimeSeconds: Int64 = 300, secret: [UInt8] = Hashing.randomBytes(32),
                    trustTLSConnections: Bool = false, tlsTrustSeconds: Int64 = 3600, maxFailuresPerMinute: Int = 20) {
            self.realm = realm
            self.algorithms = algorithms
            self.nonceLifetimeSeconds = nonceLifetimeSeconds
            self.secret = secret
            self.trustTLSConnections = trustTLSConnections
            self.tlsTrustSeconds = tlsTrustSeconds
            self.maxFailuresPerMinute = maxFailuresPerMinute
        }
    }

    public enum Outcome: Sendable {
        /// Authenticated as this user (or trusted on its connection).
        case accepted(user: String)
        /// Answered with a challenge or a refusal; the request goes no further.
        case answered
        /// The credentials are being fetched; the outcome follows on the transaction's event loop.
        case pending(EventLoopFuture<Outcome>)
    }

    public let configuration: Configuration
    private let credentials: any CredentialStore
    private let nonces: NonceManager
    private let logger: Logger
    /// Who authenticated on which TLS/WSS connection (the seed's tuning), in the shared cache, so an
    /// operator can see and clear it through the management API.
    private let cache: SharedCache
    public static let trustTable = "auth_tls_connections"
    private let failures = NIOLockedValueBox<[String: (count: Int, windowStart: Int64)]>([:])
    private let challenges = Counter(label: "tern.auth.challenges")
    private let failed = Counter(label: "tern.auth.failures")
    private let rateLimited = Counter(label: "tern.auth.rate_limited")

    public init(configuration: Configuration, credentials: any CredentialStore, cache: SharedCache = SharedCache(), logger: Logger) {
        self.configuration = configuration
        self.cache = cache
        cache.declare(Self.trustTable, defaultLifetimeSeconds: configuration.tlsTrustSeconds)
        self.credentials = credentials
        self.logger = logger
        self.nonces = NonceManager(secret: configuration.secret, lifetimeSeconds: configuration.nonceLifetimeSeconds)
    }

    private func now() -> Int64 { Int64(time(nil)) }

    /// Authenticates `request` (the routed copy of the transaction's request) or answers it.
    ///
    /// - Parameter proxying: the request goes on to another element (407 and Proxy-Authorization)
    ///   rather than being answered here (401 and Authorization).
    public func authenticate(_ transaction: ServerTransaction, request: SIPMessage, proxying: Bool) -> Outcome {
        let inbound = transaction.inbound
        let identityAddress = (request.method == .register ? try? request.to() : try? request.from()) ?? nil
        let claimedUser = identityAddress?.uri.unescapedUser ?? ""
        let realm = configuration.realm ?? identityAddress?.uri.host.lowercased() ?? "tern"
        let now = now()

        if isRateLimited(inbound.source, now: now) {
            rateLimited.increment()
            transaction.respond(SIPStatus(403, "Too Many Failed Authentications"))
            return .answered
        }
        if configuration.trustTLSConnections, inbound.transport.isSecure, let connection = inbound.connectionID {
            if cache.get(Self.trustTable, connection.description + "|" + claimedUser) != nil { return .accepted(user: claimedUser) }
        }

        let headerName: SIPHeaderName = proxying ? .proxyAuthorization : .authorization
        let all = (try? request.credentials(headerName)) ?? []
        guard let presented = all.first(where: { $0.scheme.caseInsensitiveEquals("Digest")
            && ($0["realm"] ?? "").caseInsensitiveEquals(realm) }) else {
            challenge(transaction, realm: realm, proxying: proxying, stale: false, now: now)
            return .answered
        }
        guard let username = presented["username"], let nonce = presented["nonce"], let response = presented["response"],
              let uri = presented["uri"], let algorithm = Hashing.Algorithm(digestName: presented["algorithm"]),
              configuration.algorithms.contains(algorithm)
        else {
            transaction.respond(SIPStatus(400, "Bad Credentials"))
            return .answered
        }
        let qop = presented["qop"]
        let nonceCount = presented["nc"].flatMap { UInt32($0, radix: 16) }
        if qop != nil, nonceCount == nil || presented["cnonce"] == nil {
            transaction.respond(SIPStatus(400, "Bad Credentials: qop without nc or cnonce"))
            return .answered
        }
        let attempt = Attempt(username: username, claimedUser: claimedUser, realm: realm, nonce: nonce, response: response,
                              uri: uri, algorithm: algorithm, qop: qop, nc: presented["nc"], nonceCount: nonceCount,
                              cnonce: presented["cnonce"], source: inbound.source, proxying: proxying, now: now)
        switch credentials.lookup(user: username, realm: realm, on: transaction.eventLoop) {
        case .known(let stored):
            return verify(attempt, stored: stored, transaction: transaction, request: request)
        case .fetching(let future):
            return .pending(future.map { [self] stored in
                verify(attempt, stored: stored, transaction: transaction, request: request)
            }.recover { [logger] error in
                logger.error("credential lookup failed", metadata: ["user": "\(username)", "error": "\(error)"])
                // Another registrar may be able to answer (RFC 3263 failover on 503).
                transaction.respond(SIPStatus(503, "Credential Store Unavailable"), headers: [(.retryAfter, "5")])
                return .answered
            })
        }
    }

    /// What a request presented, carried across a credential fetch.
    private struct Attempt: Sendable {
        var username: String
        var claimedUser: String
        var realm: String
        var nonce: String
        var response: String
        var uri: String
        var algorithm: Hashing.Algorithm
        var qop: String?
        var nc: String?
        var nonceCount: UInt32?
        var cnonce: String?
        var source: SocketAddress
        var proxying: Bool
        var now: Int64
    }

    /// Checks the response against the stored secret; only the response proves anything, and the
    /// nonce-count is recorded after that check.
    private func verify(_ attempt: Attempt, stored: DigestCredentials?, transaction: ServerTransaction, request: SIPMessage) -> Outcome {
        let (username, realm, now, proxying) = (attempt.username, attempt.realm, attempt.now, attempt.proxying)
        guard let stored, let ha1 = stored.ha1(attempt.algorithm) else {
            recordFailure(attempt.source, now: now, reason: "unknown user \(username)")
            challenge(transaction, realm: realm, proxying: proxying, stale: false, now: now)
            return .answered
        }
        let algorithm = attempt.algorithm
        let method = request.method?.rawValue ?? ""
        let ha2 = Hashing.hex(algorithm, joining: [method, attempt.uri])
        let parts = if let qop = attempt.qop, let nc = attempt.nc, let cnonce = attempt.cnonce {
            [ha1, attempt.nonce, nc, cnonce, qop, ha2]
        } else {
            [ha1, attempt.nonce, ha2]
        }
        let matches = Hashing.withDigest(algorithm, joining: parts) { expected in
            Hashing.constantTimeEqualsHex(expected, attempt.response.utf8, ignoringCase: true)
        }
        guard matches else {
            recordFailure(attempt.source, now: now, reason: "wrong response for \(username)")
            challenge(transaction, realm: realm, proxying: proxying, stale: false, now: now)
            return .answered
        }
        // Only a request answered without a transaction can reach us twice as a retransmission.
        let retransmission = transaction.requestMark
        switch nonces.verify(attempt.nonce, realm: realm, nonceCount: attempt.qop == nil ? nil : attempt.nonceCount, now: now,
                             retransmission: retransmission) {
        case .fresh:
            break
        case .stale, .invalid:
            // Right password, but an old or replayed nonce: a new one, and the client need not ask the user.
            challenge(transaction, realm: realm, proxying: proxying, stale: true, now: now)
            return .answered
        }
        guard username == attempt.claimedUser else {
            transaction.respond(SIPStatus(403, "Identity Mismatch"))
            return .answered
        }
        let inbound = transaction.inbound
        if configuration.trustTLSConnections, inbound.transport.isSecure, let connection = inbound.connectionID {
            cache.set(Self.trustTable, connection.description + "|" + username, inbound.source.description)
        }
        return .accepted(user: username)
    }

    /// Forgets the trust given to a connection (it closed).
    public func connectionClosed(_ id: ConnectionID) {
        cache.delete(Self.trustTable, keysWithPrefix: id.description + "|")
    }

    private func challenge(_ transaction: ServerTransaction, realm: String, proxying: Bool, stale: Bool, now: Int64) {
        challenges.increment()
        let nonce = nonces.make(realm: realm, now: now)
        let name: SIPHeaderName = proxying ? .proxyAuthenticate : .wwwAuthenticate
        let headers = configuration.algorithms.map { algorithm in
            (name, "Digest realm=\"\(realm)\", nonce=\"\(nonce)\", qop=\"auth\", algorithm=\(algorithm.rawValue)"
                + (stale ? ", stale=true" : ""))
        }
        transaction.respond(SIPStatus(proxying ? 407 : 401), headers: headers)
    }

    /// Failures are counted per source IP address; its text is made only when there are failures to look at.
    private static func failureKey(_ source: SocketAddress) -> String { source.peerIP ?? "?" }

    private func isRateLimited(_ source: SocketAddress, now: Int64) -> Bool {
        failures.withLockedValue { table in
            guard !table.isEmpty else { return false }
            let key = Self.failureKey(source)
            guard let entry = table[key] else { return false }
            if now - entry.windowStart >= 60 {
                table[key] = nil
                return false
            }
            return entry.count >= configuration.maxFailuresPerMinute
        }
    }

    private func recordFailure(_ source: SocketAddress, now: Int64, reason: String) {
        failed.increment()
        let key = Self.failureKey(source)
        logger.info("authentication failed", metadata: ["source": "\(key)", "reason": "\(reason)"])
        failures.withLockedValue { table in
            if table.count > 100_000 { table = table.filter { now - $0.value.windowStart < 60 } }
            var entry = table[key] ?? (0, now)
            if now - entry.windowStart >= 60 { entry = (0, now) }
            entry.count += 1
            table[key] = entry
        }
    }
}
