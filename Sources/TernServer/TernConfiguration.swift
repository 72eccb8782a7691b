public import CoreProxy
public import Messaging
public import Presence
public import Logging
import NIOCore
import Foundation

/// Everything `tern` can be configured with. Every field has its default here, once; the YAML
/// reader (``TernConfiguration/init(yaml:)``) and `--check-config` both start from it.
public struct TernConfiguration: Sendable {
    /// Listeners (`listen:`). Default: UDP and TCP on 127.0.0.1:5060.
    public var listeners: [ListenerSpec]
    /// TLS certificate and key (`tls:`), needed by tls and wss listeners. Default: none.
    public var tls: TransportLayer.TLSSettings?
    /// `limits.max_message_size` (bytes, default 65,535).
    public var maxMessageSize: Int
    /// `limits.max_connections` (default 10,000).
    public var maxConnections: Int
    /// `limits.idle_timeout` (seconds, default 600).
    public var idleTimeoutSeconds: Int
    /// `limits.udp_buffer_bytes`: each UDP socket's receive and send buffer (default 4 MiB; the
    /// kernel caps it at net.core.rmem_max).
    public var udpBufferBytes: Int
    /// `limits.udp_sockets`: sockets per UDP listener sharing its port, one per event loop, so that
    /// many peers' traffic spreads over the cores (default 0 = one per event-loop thread; 1 = one).
    public var udpSockets: Int
    /// `timers.t1_ms`, `timers.t2_ms`, `timers.t4_ms` (defaults 500, 4000, 5000).
    public var t1Milliseconds: Int
    public var t2Milliseconds: Int
    public var t4Milliseconds: Int
    /// `sip.server_header` (default "Tern"; empty to send none).
    public var serverHeader: String
    /// `sip.supported`: option tags this server supports (default none).
    public var supportedExtensions: [String]
    /// `log.level` (trace, debug, info, notice, warning, error, critical; default info).
    public var logLevel: Logger.Level
    /// `shutdown.drain_timeout` (seconds to let transactions finish, default 5).
    public var drainTimeoutSeconds: Int
    /// `threads` (event-loop threads; default 0 = one per core).
    public var threads: Int
    /// `registrar.*`: domains (default: every domain), default/min/max expires (3600/60/7200 s),
    /// single_contact (false), max_contacts (32), remove_on_flow_close (true).
    public var registrar: Registrar.Configuration
    public var removeBindingsOnFlowClose: Bool
    /// `storage.sqlite_path`: the embedded store for what survives a restart (default
    /// `data/tern.sqlite`; empty keeps everything in memory).
    public var sqlitePath: String
    /// `storage.location`: where bindings survive a restart: `sqlite` (default), `mongodb` (a
    /// table several nodes share) or `memory` (nowhere).
    public var locationStore: LocationStoreKind
    /// `messaging.*`: offline messages (store and forward, RFC 3428). enabled (true), store
    /// (`sqlite`: the embedded file, or `mongodb`), collection (`messages`), max_age (604800 s),
    /// max_per_user (1000), over_limit_status/reason (486 Mailbox Full), max_body_bytes (65536),
    /// per_device_rate (10/s), total_rate (200/s), retry_after_failure (30 s).
    public var messaging: MessagingService.Configuration?
    public var messageStore: MessageStoreKind
    public var messageCollection: String
    /// `presence.*`: the presence server. enabled (true), policy (allow, same_domain, ask),
    /// default/min/max expires (3600/60/86400 s), notify_interval_ms (1000), basic_status_critical
    /// (true), notify_retries (2), notify_retry_delay_ms (5000), derive_from_registration (true).
    public var presence: PresenceService.Configuration?
    /// `presence.store`: where presence survives a restart: `sqlite` (default), `mongodb`, `memory`.
    public var presenceStore: LocationStoreKind
    /// `events.*`: the event bus (AMQP 0-9-1). enabled (false), brokers (list of amqp:// URIs,
    /// tried in turn), exchange (`tern.events`), outbox_size (100000), overflow (drop_oldest,
    /// drop_newest or spill), heartbeat (10 s), window (1000 unconfirmed), linger_ms (50), spill_path.
    public var events: EventSettings?
    /// `management.*`: the HTTP management API (JSON-RPC, XML-RPC, /metrics, /health, /ready).
    /// enabled (true), listen (`127.0.0.1:8070`), token (none: methods that change state are refused).
    public var management: ManagementSettings?
    /// `storage.node`: this node's name in shared tables (default: the host name).
    public var nodeName: String
    /// `storage.mongodb.*`: uri (none), database (the URI's, else `tern`), threads (4).
    public var mongoDB: MongoDBSettings?
    /// `proxy.*`: record_route (true), redirect (false), outbound_proxy (none), remove_dead_bindings (true).
    public var proxy: StatefulProxy.Configuration
    /// `auth.*`: enabled (false), credentials_file (HA1 lines), realm (the request's domain),
    /// algorithms ([SHA-256, MD5]), nonce_lifetime (300 s), secret (random per start),
    /// trust_tls_connections (false), tls_trust_seconds (3600), max_failures_per_minute (20).
    public var authentication: DigestAuthenticator.Configuration?
    public var credentialsFile: String?
    /// `auth.credentials`: `file` (default; `credentials_file`) or `mongodb` (collection
    /// `subscriber`), with `credentials_cache_seconds` (60).
    public var credentialsSource: CredentialsSource
    public var credentialsCacheSeconds: Int
    /// `hosts`: names resolved without DNS (RFC 3263 targets given by name), name → IP address.
    public var staticHosts: [String: String]
    /// Forwarding tunings, push notifications, waiting requests, keep-alive probes.
    public var mobile = MobileSettings()
    /// IMS (S-CSCF-like registrar and proxy over subscriber profiles); nil: off (default).
    public var ims: IMSSettings?
    /// SIP-I/SIP-T: the Hop Counter an IAM gets when it has none; nil: ISUP bodies pass untouched (default).
    public var sipIInitialHops: Int?
    /// The routing file (dialplan, dispatcher, least-cost routes, number portability); nil: no routing.
    public var routingFile: String?

    public init() {
        listeners = [
            ListenerSpec(transport: .udp, host: "127.0.0.1", port: 5060),
            ListenerSpec(transport: .tcp, host: "127.0.0.1", port: 5060),
        ]
        tls = nil
        maxMessageSize = 65_535
        maxConnections = 10_000
        idleTimeoutSeconds = 600
        udpBufferBytes = 4 << 20
        udpSockets = 0
        t1Milliseconds = 500
        t2Milliseconds = 4_000
        t4Milliseconds = 5_000
        serverHeader = "Tern"
        supportedExtensions = []
        logLevel = .info
        drainTimeoutSeconds = 5
        threads = 0
        staticHosts = [:]
        registrar = Registrar.Configuration()
        removeBindingsOnFlowClose = true
        sqlitePath = "data/tern.sqlite"
        proxy = StatefulProxy.Configuration()
        authentication = nil
        credentialsFile = nil
        credentialsSource = .file
        credentialsCacheSeconds = 60
        locationStore = .sqlite
        nodeName = ProcessInfo.processInfo.hostName
        mongoDB = nil
        messaging = MessagingService.Configuration()
        presence = PresenceService.Configuration()
        presenceStore = .sqlite
        events = nil
        management = ManagementSettings()
        messageStore = .sqlite
        messageCollection = "messages"
    }

    public enum MessageStoreKind: String, Sendable, CaseIterable {
        case sqlite, mongodb
    }

    public enum LocationStoreKind: String, Sendable, CaseIterable {
        case sqlite, mongodb, memory
    }

    public struct EventSettings: Sendable {
        public var brokers: [String] = []
        public var exchange = "tern.events"
        public var outboxSize = 100_000
        public var overflow = "drop_oldest"
        public var heartbeat = 10
        public var window = 1000
        public var lingerMilliseconds = 50
        /// `events.spill_path`: the SQLite file `overflow: spill` writes to (default: `tern-events.sqlite`
        /// beside `storage.sqlite_path`).
        public var spillPath = ""
        /// `events.commands.*`: the command queue. enabled (true), queue (`tern.commands`),
        /// binding_key (`command.#`), prefetch (32).
        public var commandsEnabled = true
        public var commandQueue = "tern.commands"
        public var commandBindingKey = "command.#"
        public var commandPrefetch = 32
        public init() {}
    }

    public struct ManagementSettings: Sendable {
        public var host = "127.0.0.1"
        /// 0 picks a free port (logged when bound).
        public var port = 8070
        public var token: String?
        public init() {}
    }

    public enum CredentialsSource: String, Sendable, CaseIterable {
        case file, mongodb
    }

    public struct MongoDBSettings: Sendable {
        public var uri: String
        public var database: String?
        public var threads: Int
        public init(uri: String, database: String? = nil, threads: Int = 4) {
            self.uri = uri
            self.database = database
            self.threads = threads
        }
    }

    /// Where `overflow: spill` writes: `events.spill_path`, else beside the embedded store.
    public var eventSpillPath: String {
        if let path = events?.spillPath, !path.isEmpty { return path }
        let directory = (sqlitePath as NSString).deletingLastPathComponent
        return directory.isEmpty ? "tern-events.sqlite" : directory + "/tern-events.sqlite"
    }

    /// The core's configuration derived from this one.
    public var serverConfiguration: SIPServer.Configuration {
        var registrar = registrar
        registrar.pushProviders = mobile.push.map { Set($0.providers) }
        registrar.pushRegistrationMargin = mobile.push?.registrationMargin ?? registrar.pushRegistrationMargin
        var proxy = proxy
        proxy.pendingWait = .milliseconds(Int64(mobile.pendingWaitMilliseconds))
        proxy.pendingMethods = Set(mobile.pendingMethods)
        proxy.waitForUnregistered = mobile.waitForUnregistered
        proxy.pushAlways = mobile.pushAlways
        var server = SIPServer.Configuration(
            transport: TransportLayer.Configuration(
                listeners: listeners,
                tls: tls,
                maxMessageSize: maxMessageSize,
                maxConnections: maxConnections,
                idleTimeout: .seconds(Int64(idleTimeoutSeconds)),
                staticHosts: staticHosts,
                udpBufferBytes: udpBufferBytes,
                udpSocketsPerListener: udpSockets
            ),
            timers: TransactionTimers(
                t1: .milliseconds(Int64(t1Milliseconds)),
                t2: .milliseconds(Int64(t2Milliseconds)),
                t4: .milliseconds(Int64(t4Milliseconds))
            ),
            pipeline: RequestPipeline.Configuration(
                supportedExtensions: supportedExtensions,
                serverHeader: serverHeader.isEmpty ? nil : serverHeader
            ),
            registrar: registrar,
            proxy: proxy,
            authentication: authentication,
            removeBindingsOnFlowClose: removeBindingsOnFlowClose,
            drainTimeout: .seconds(Int64(drainTimeoutSeconds))
        )
        server.tunings = mobile.tunings
        server.dropUnregisteredMedia = mobile.dropUnregisteredMedia
        return server
    }
}
