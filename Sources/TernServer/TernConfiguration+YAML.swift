import CoreProxy
import Messaging
import Presence
import EventBus
import NIOCore
import SIP
import Logging
import Yams
import Foundation

/// A configuration problem, naming the key and the line.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var line: Int?
    public var message: String

    public var description: String {
        let location = line.map { " (line \($0))" } ?? ""
        return "\(key)\(location): \(message)"
    }
}

extension TernConfiguration {
    /// Reads YAML over the defaults. Unknown keys and bad values are errors that name the key and line.
    public init(yaml text: String) throws(ConfigurationError) {
        self.init()
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: "(file)", line: nil, message: "not valid YAML: \(error)")
        }
        guard let root else { return }
        var reader = try MappingReader(root, path: "")
        if let node = reader.take("listen") {
            guard let items = node.sequence else { throw reader.error("listen", node, "expected a list of PROTO:HOST:PORT") }
            listeners = []
            for item in items {
                guard let text = item.string else { throw reader.error("listen", item, "expected PROTO:HOST:PORT") }
                do {
                    listeners.append(try ListenerSpec(parsing: text))
                } catch {
                    throw reader.error("listen", item, error.description)
                }
            }
        }
        // An empty mapping (what --check-config prints without TLS) means no TLS.
        if let node = reader.take("tls"), node.mapping.map({ !$0.isEmpty }) ?? true {
            var tlsReader = try MappingReader(node, path: "tls")
            guard let certificate = try tlsReader.string("certificate"),
                  let key = try tlsReader.string("private_key")
            else { throw reader.error("tls", node, "needs certificate and private_key") }
            var settings = TransportLayer.TLSSettings(certificateChainPath: certificate, privateKeyPath: key)
            settings.trustRootsPath = try tlsReader.string("trust_roots")
            if let mode = try tlsReader.string("client_certificates") {
                guard let parsed = TransportLayer.TLSSettings.ClientCertificates(rawValue: mode) else {
                    throw tlsReader.error("client_certificates", node, "expected none, optional or required")
                }
                settings.clientCertificates = parsed
            }
            try tlsReader.finish()
            tls = settings
        }
        if let node = reader.take("limits") {
            var limits = try MappingReader(node, path: "limits")
            maxMessageSize = try limits.int("max_message_size", in: 1_024...16_777_216) ?? maxMessageSize
            maxConnections = try limits.int("max_connections", in: 1...10_000_000) ?? maxConnections
            idleTimeoutSeconds = try limits.int("idle_timeout", in: 1...86_400) ?? idleTimeoutSeconds
            udpBufferBytes = try limits.int("udp_buffer_bytes", in: 65_536...1_073_741_824) ?? udpBufferBytes
            udpSockets = try limits.int("udp_sockets", in: 0...256) ?? udpSockets
            try limits.finish()
        }
        if let node = reader.take("timers") {
            var timers = try MappingReader(node, path: "timers")
            t1Milliseconds = try timers.int("t1_ms", in: 1...60_000) ?? t1Milliseconds
            t2Milliseconds = try timers.int("t2_ms", in: 1...600_000) ?? t2Milliseconds
            t4Milliseconds = try timers.int("t4_ms", in: 1...600_000) ?? t4Milliseconds
            try timers.finish()
        }
        if let node = reader.take("sip") {
            var sip = try MappingReader(node, path: "sip")
            serverHeader = try sip.string("server_header") ?? serverHeader
            supportedExtensions = try sip.strings("supported") ?? supportedExtensions
            try sip.finish()
        }
        if let node = reader.take("log") {
            var log = try MappingReader(node, path: "log")
            if let level = try log.string("level") {
                guard let parsed = Logger.Level(rawValue: level) else {
                    throw log.error("level", node, "expected trace, debug, info, notice, warning, error or critical")
                }
                logLevel = parsed
            }
            try log.finish()
        }
        if let node = reader.take("shutdown") {
            var shutdown = try MappingReader(node, path: "shutdown")
            drainTimeoutSeconds = try shutdown.int("drain_timeout", in: 0...3_600) ?? drainTimeoutSeconds
            try shutdown.finish()
        }
        if let node = reader.take("registrar") {
            var section = try MappingReader(node, path: "registrar")
            registrar.domains = try section.strings("domains") ?? registrar.domains
            registrar.defaultExpires = UInt32(try section.int("default_expires", in: 1...604_800) ?? Int(registrar.defaultExpires))
            registrar.minExpires = UInt32(try section.int("min_expires", in: 1...604_800) ?? Int(registrar.minExpires))
            registrar.maxExpires = UInt32(try section.int("max_expires", in: 1...604_800) ?? Int(registrar.maxExpires))
            registrar.singleContactPerAOR = try section.bool("single_contact") ?? registrar.singleContactPerAOR
            registrar.maxContactsPerAOR = try section.int("max_contacts", in: 1...1_000) ?? registrar.maxContactsPerAOR
            registrar.statelessReplies = try section.bool("stateless") ?? registrar.statelessReplies
            removeBindingsOnFlowClose = try section.bool("remove_on_flow_close") ?? removeBindingsOnFlowClose
            if let mode = try section.string("path_mode") {
                guard let parsed = Registrar.Configuration.PathMode(rawValue: mode) else {
                    throw ConfigurationError(key: "registrar.path_mode", line: node.mark.map { $0.line },
                                             message: "\(mode): expected " + Registrar.Configuration.PathMode.allCases.map(\.rawValue).joined(separator: ", "))
                }
                registrar.pathMode = parsed
            }
            try section.finish()
            guard registrar.minExpires <= registrar.maxExpires else {
                throw ConfigurationError(key: "registrar.min_expires", line: node.mark.map { $0.line },
                                         message: "must not exceed registrar.max_expires")
            }
        }
        if let node = reader.take("proxy") {
            var section = try MappingReader(node, path: "proxy")
            proxy.recordRoute = try section.bool("record_route") ?? proxy.recordRoute
            proxy.redirect = try section.bool("redirect") ?? proxy.redirect
            proxy.redirectDomains = try section.strings("redirect_domains") ?? proxy.redirectDomains
            proxy.removeDeadBindings = try section.bool("remove_dead_bindings") ?? proxy.removeDeadBindings
            if let seconds = try section.int("timer_c", in: 181...7_200) { proxy.timerC = .seconds(Int64(seconds)) }
            if let text = try section.string("outbound_proxy"), !text.isEmpty {
                do {
                    proxy.outboundProxy = try SIPURI(parsing: text)
                } catch {
                    throw section.error("outbound_proxy", node, "not a SIP URI: \(error.reason)")
                }
            }
            try section.finish()
        }
        if let node = reader.take("auth") {
            var section = try MappingReader(node, path: "auth")
            var settings = DigestAuthenticator.Configuration()
            let enabled = try section.bool("enabled") ?? true
            credentialsFile = try section.string("credentials_file")
            if let source = try section.string("credentials") {
                guard let kind = CredentialsSource(rawValue: source) else {
                    throw section.error("credentials", node, "\(source): expected file or mongodb")
                }
                credentialsSource = kind
            }
            credentialsCacheSeconds = try section.int("credentials_cache_seconds", in: 0...86_400) ?? credentialsCacheSeconds
            settings.realm = try section.string("realm").flatMap { $0.isEmpty ? nil : $0 }
            if let names = try section.strings("algorithms") {
                settings.algorithms = []
                for name in names {
                    guard let algorithm = Hashing.Algorithm(digestName: name) else {
                        throw section.error("algorithms", node, "\(name): expected MD5 or SHA-256")
                    }
                    settings.algorithms.append(algorithm)
                }
            }
            settings.nonceLifetimeSeconds = Int64(try section.int("nonce_lifetime", in: 1...86_400) ?? Int(settings.nonceLifetimeSeconds))
            if let secret = try section.string("secret"), !secret.isEmpty { settings.secret = Array(secret.utf8) }
            settings.trustTLSConnections = try section.bool("trust_tls_connections") ?? settings.trustTLSConnections
            settings.tlsTrustSeconds = Int64(try section.int("tls_trust_seconds", in: 1...86_400) ?? Int(settings.tlsTrustSeconds))
            settings.maxFailuresPerMinute = try section.int("max_failures_per_minute", in: 1...100_000) ?? settings.maxFailuresPerMinute
            try section.finish()
            if enabled {
                guard credentialsFile != nil || credentialsSource == .mongodb else {
                    throw ConfigurationError(key: "auth.credentials_file", line: node.mark.map { $0.line },
                                             message: "needed when auth is enabled")
                }
                authentication = settings
            }
        }
        if let node = reader.take("storage") {
            var section = try MappingReader(node, path: "storage")
            sqlitePath = try section.string("sqlite_path") ?? sqlitePath
            if let kind = try section.string("location") {
                guard let parsed = LocationStoreKind(rawValue: kind) else {
                    throw section.error("location", node, "\(kind): expected sqlite, mongodb or memory")
                }
                locationStore = parsed
            }
            if let name = try section.string("node"), !name.isEmpty { nodeName = name }
            if let mongoNode = section.take("mongodb") {
                var mongo = try MappingReader(mongoNode, path: "storage.mongodb")
                if let uri = try mongo.string("uri"), !uri.isEmpty {
                    guard uri.hasPrefix("mongodb://") || uri.hasPrefix("mongodb+srv://") else {
                        throw mongo.error("uri", mongoNode, "expected a mongodb:// URI")
                    }
                    mongoDB = MongoDBSettings(uri: uri)
                }
                let database = try mongo.string("database").flatMap { $0.isEmpty ? nil : $0 }
                let threads = try mongo.int("threads", in: 1...64)
                try mongo.finish()
                if mongoDB != nil {
                    mongoDB?.database = database
                    mongoDB?.threads = threads ?? 4
                }
            }
            try section.finish()
        }
        if let node = reader.take("messaging") {
            var section = try MappingReader(node, path: "messaging")
            var settings = messaging ?? MessagingService.Configuration()
            let enabled = try section.bool("enabled") ?? true
            if let kind = try section.string("store") {
                guard let parsed = MessageStoreKind(rawValue: kind) else {
                    throw section.error("store", node, "\(kind): expected sqlite or mongodb")
                }
                messageStore = parsed
            }
            messageCollection = try section.string("collection").flatMap { $0.isEmpty ? nil : $0 } ?? messageCollection
            if let fork = try section.string("fork") {
                switch fork {
                case "all": proxy.newestDeviceOnly.remove(.message)
                case "newest": proxy.newestDeviceOnly.insert(.message)
                default: throw section.error("fork", node, "\(fork): expected all or newest")
                }
            }
            settings.maxAgeSeconds = Int64(try section.int("max_age", in: 1...31_536_000) ?? Int(settings.maxAgeSeconds))
            settings.maxPerUser = try section.int("max_per_user", in: 1...1_000_000) ?? settings.maxPerUser
            let code = try section.int("over_limit_status", in: 400...699) ?? settings.overLimitStatus.code
            let reason = try section.string("over_limit_reason") ?? settings.overLimitStatus.reason
            settings.overLimitStatus = SIPStatus(code, reason)
            settings.maxBodyBytes = try section.int("max_body_bytes", in: 0...16_777_216) ?? settings.maxBodyBytes
            settings.perDeviceRate = try section.double("per_device_rate", in: 0...100_000) ?? settings.perDeviceRate
            settings.totalRate = try section.double("total_rate", in: 0...1_000_000) ?? settings.totalRate
            if let seconds = try section.int("retry_after_failure", in: 1...86_400) { settings.retryAfterFailure = .seconds(Int64(seconds)) }
            settings.reportExpired = try section.bool("report_expired") ?? settings.reportExpired
            try section.finish()
            messaging = enabled ? settings : nil
        }
        if let node = reader.take("presence") {
            var section = try MappingReader(node, path: "presence")
            var settings = presence ?? PresenceService.Configuration()
            let enabled = try section.bool("enabled") ?? true
            if let policy = try section.string("policy") {
                guard let parsed = PresenceService.Configuration.Policy(rawValue: policy) else {
                    throw section.error("policy", node, "\(policy): expected allow, same_domain or ask")
                }
                settings.policy = parsed
            }
            settings.defaultExpires = UInt32(try section.int("default_expires", in: 1...604_800) ?? Int(settings.defaultExpires))
            settings.minExpires = UInt32(try section.int("min_expires", in: 1...604_800) ?? Int(settings.minExpires))
            settings.maxExpires = UInt32(try section.int("max_expires", in: 1...604_800) ?? Int(settings.maxExpires))
            if let interval = try section.int("notify_interval_ms", in: 0...3_600_000) {
                settings.minNotifyInterval = .milliseconds(Int64(interval))
            }
            settings.basicStatusIsCritical = try section.bool("basic_status_critical") ?? settings.basicStatusIsCritical
            settings.notifyRetries = try section.int("notify_retries", in: 0...100) ?? settings.notifyRetries
            if let delay = try section.int("notify_retry_delay_ms", in: 0...3_600_000) {
                settings.notifyRetryDelay = .milliseconds(Int64(delay))
            }
            settings.deriveFromRegistration = try section.bool("derive_from_registration") ?? settings.deriveFromRegistration
            if let kind = try section.string("store") {
                guard let parsed = LocationStoreKind(rawValue: kind) else {
                    throw section.error("store", node, "\(kind): expected sqlite, mongodb or memory")
                }
                presenceStore = parsed
            }
            try section.finish()
            guard settings.minExpires <= settings.maxExpires else {
                throw ConfigurationError(key: "presence.min_expires", line: node.mark.map { $0.line },
                                         message: "must not exceed presence.max_expires")
            }
            presence = enabled ? settings : nil
        }
        if let node = reader.take("events") {
            var section = try MappingReader(node, path: "events")
            var settings = EventSettings()
            let enabled = try section.bool("enabled") ?? true
            if let brokers = try section.strings("brokers") {
                for broker in brokers where AMQPPublisher.Broker(uri: broker) == nil {
                    throw section.error("brokers", node, "\(broker): expected amqp://user:password@host:port/vhost")
                }
                settings.brokers = brokers
            }
            settings.exchange = try section.string("exchange") ?? settings.exchange
            settings.outboxSize = try section.int("outbox_size", in: 1...100_000_000) ?? settings.outboxSize
            if let overflow = try section.string("overflow") {
                guard EventOutbox.OverflowPolicy(rawValue: overflow) != nil else {
                    throw section.error("overflow", node, "\(overflow): expected drop_oldest, drop_newest or spill")
                }
                settings.overflow = overflow
            }
            settings.heartbeat = try section.int("heartbeat", in: 0...600) ?? settings.heartbeat
            settings.window = try section.int("window", in: 1...1_000_000) ?? settings.window
            settings.lingerMilliseconds = try section.int("linger_ms", in: 0...1_000) ?? settings.lingerMilliseconds
            settings.spillPath = try section.string("spill_path") ?? settings.spillPath
            if let commandsNode = section.take("commands") {
                var commands = try MappingReader(commandsNode, path: "events.commands")
                settings.commandsEnabled = try commands.bool("enabled") ?? settings.commandsEnabled
                settings.commandQueue = try commands.string("queue") ?? settings.commandQueue
                settings.commandBindingKey = try commands.string("binding_key") ?? settings.commandBindingKey
                settings.commandPrefetch = try commands.int("prefetch", in: 1...65_535) ?? settings.commandPrefetch
                try commands.finish()
            }
            try section.finish()
            if enabled, settings.brokers.isEmpty {
                throw ConfigurationError(key: "events.brokers", line: node.mark.map { $0.line }, message: "needed when events are enabled")
            }
            events = enabled ? settings : nil
        }
        if let node = reader.take("management") {
            var section = try MappingReader(node, path: "management")
            var settings = ManagementSettings()
            let enabled = try section.bool("enabled") ?? true
            if let listen = try section.string("listen") {
                guard let parsed = ManagementSettings.parseListen(listen) else {
                    throw section.error("listen", node, "\(listen): expected HOST:PORT (IPv6 in brackets)")
                }
                (settings.host, settings.port) = parsed
            }
            settings.token = try section.string("token").flatMap { $0.isEmpty ? nil : $0 }
            try section.finish()
            management = enabled ? settings : nil
        }
        if let node = reader.take("hosts") {
            let hosts = try MappingReader(node, path: "hosts")
            for entry in hosts.entries {
                guard let address = entry.value.string,
                      IPv6Address(address.utf8) != nil || IPv6Address.parseIPv4(address.utf8) != nil
                else {
                    throw ConfigurationError(key: "hosts." + entry.key, line: entry.line,
                                             message: "expected an IPv4 or IPv6 address")
                }
                staticHosts[entry.key.lowercased()] = address
            }
        }
        if let node = reader.take("mobile") { try readMobile(node) }
        if let node = reader.take("ims") { try readIMS(node) }
        if let node = reader.take("sip_i") { try readSIPI(node) }
        if let node = reader.take("routing") {
            var section = try MappingReader(node, path: "routing")
            routingFile = try section.string("file").flatMap { $0.isEmpty ? nil : $0 }
            try section.finish()
        }
        threads = try reader.int("threads", in: 0...256) ?? threads
        try reader.finish()
        try validate()
    }

    /// Cross-field checks: a TLS listener needs a certificate.
    public func validate() throws(ConfigurationError) {
        for spec in listeners where spec.transport.isSecure && tls == nil {
            throw ConfigurationError(key: "listen", line: nil, message: "\(spec) needs tls.certificate and tls.private_key")
        }
        for spec in listeners where spec.transport == .sctp {
            throw ConfigurationError(key: "listen", line: nil, message: "\(spec): SCTP is not available on this system")
        }
        if listeners.isEmpty {
            throw ConfigurationError(key: "listen", line: nil, message: "at least one listener is needed")
        }
        if locationStore == .mongodb, mongoDB == nil {
            throw ConfigurationError(key: "storage.location", line: nil, message: "mongodb needs storage.mongodb.uri")
        }
        if presence != nil, presenceStore == .mongodb, mongoDB == nil {
            throw ConfigurationError(key: "presence.store", line: nil, message: "mongodb needs storage.mongodb.uri")
        }
        if messaging != nil, messageStore == .mongodb, mongoDB == nil {
            throw ConfigurationError(key: "messaging.store", line: nil, message: "mongodb needs storage.mongodb.uri")
        }
        if let events, events.overflow == "spill", events.spillPath.isEmpty, sqlitePath.isEmpty {
            throw ConfigurationError(key: "events.overflow", line: nil, message: "spill needs events.spill_path or storage.sqlite_path")
        }
        if authentication != nil, credentialsSource == .mongodb, mongoDB == nil {
            throw ConfigurationError(key: "auth.credentials", line: nil, message: "mongodb needs storage.mongodb.uri")
        }
    }

    private var messagingDescribed: MessagingService.Configuration { messaging ?? MessagingService.Configuration() }
    private var presenceDescribed: PresenceService.Configuration { presence ?? PresenceService.Configuration() }

    /// The effective configuration as YAML, every key shown.
    public var yamlDescription: String { yamlDescription(redactingSecrets: false) }

    /// The same with passwords in URIs and the management token left out (for the management API).
    public func yamlDescription(redactingSecrets: Bool) -> String {
        func uri(_ text: String) -> String { redactingSecrets ? Self.redactingPassword(text) : text }
        var lines: [String] = ["listen:"]
        lines += listeners.map { "  - \($0)" }
        if let tls {
            lines += [
                "tls:",
                "  certificate: \(tls.certificateChainPath)",
                "  private_key: \(tls.privateKeyPath)",
                "  trust_roots: \(tls.trustRootsPath ?? "(system)")",
                "  client_certificates: \(tls.clientCertificates.rawValue)",
            ]
        } else {
            lines.append("tls: {}")
        }
        lines += [
            "limits:",
            "  max_message_size: \(maxMessageSize)",
            "  max_connections: \(maxConnections)",
            "  udp_buffer_bytes: \(udpBufferBytes)",
            "  udp_sockets: \(udpSockets)",
            "  idle_timeout: \(idleTimeoutSeconds)",
            "timers:",
            "  t1_ms: \(t1Milliseconds)",
            "  t2_ms: \(t2Milliseconds)",
            "  t4_ms: \(t4Milliseconds)",
            "sip:",
            "  server_header: \"\(serverHeader)\"",
            "  supported: [\(supportedExtensions.joined(separator: ", "))]",
            "log:",
            "  level: \(logLevel.rawValue)",
            "shutdown:",
            "  drain_timeout: \(drainTimeoutSeconds)",
            "threads: \(threads)",
            "registrar:",
            "  domains: [\(registrar.domains.joined(separator: ", "))]",
            "  default_expires: \(registrar.defaultExpires)",
            "  min_expires: \(registrar.minExpires)",
            "  max_expires: \(registrar.maxExpires)",
            "  single_contact: \(registrar.singleContactPerAOR)",
            "  max_contacts: \(registrar.maxContactsPerAOR)",
            "  stateless: \(registrar.statelessReplies)",
            "  remove_on_flow_close: \(removeBindingsOnFlowClose)",
            "  path_mode: \(registrar.pathMode.rawValue)",
            "proxy:",
            "  record_route: \(proxy.recordRoute)",
            "  redirect: \(proxy.redirect)",
            "  redirect_domains: [\(proxy.redirectDomains.joined(separator: ", "))]",
            "  outbound_proxy: \"\(proxy.outboundProxy?.description ?? "")\"",
            "  remove_dead_bindings: \(proxy.removeDeadBindings)",
            "  timer_c: \(proxy.timerC.nanoseconds / 1_000_000_000)",
            "auth:",
            "  enabled: \(authentication != nil)",
            "  credentials: \(credentialsSource.rawValue)",
            "  credentials_file: \"\(credentialsFile ?? "")\"",
            "  credentials_cache_seconds: \(credentialsCacheSeconds)",
            "  realm: \"\(authentication?.realm ?? "")\"",
            "  algorithms: [\((authentication?.algorithms ?? [.sha256, .md5]).map(\.rawValue).joined(separator: ", "))]",
            "  nonce_lifetime: \(authentication?.nonceLifetimeSeconds ?? 300)",
            "  trust_tls_connections: \(authentication?.trustTLSConnections ?? false)",
            "  tls_trust_seconds: \(authentication?.tlsTrustSeconds ?? 3600)",
            "  max_failures_per_minute: \(authentication?.maxFailuresPerMinute ?? 20)",
            "messaging:",
            "  enabled: \(messaging != nil)",
            "  store: \(messageStore.rawValue)",
            "  collection: \(messageCollection)",
            "  fork: \(proxy.newestDeviceOnly.contains(.message) ? "newest" : "all")",
            "  max_age: \(messagingDescribed.maxAgeSeconds)",
            "  max_per_user: \(messagingDescribed.maxPerUser)",
            "  over_limit_status: \(messagingDescribed.overLimitStatus.code)",
            "  over_limit_reason: \"\(messagingDescribed.overLimitStatus.reason)\"",
            "  max_body_bytes: \(messagingDescribed.maxBodyBytes)",
            "  per_device_rate: \(messagingDescribed.perDeviceRate)",
            "  total_rate: \(messagingDescribed.totalRate)",
            "  retry_after_failure: \(messagingDescribed.retryAfterFailure.nanoseconds / 1_000_000_000)",
            "  report_expired: \(messagingDescribed.reportExpired)",
            "presence:",
            "  enabled: \(presence != nil)",
            "  policy: \(presenceDescribed.policy.rawValue)",
            "  default_expires: \(presenceDescribed.defaultExpires)",
            "  min_expires: \(presenceDescribed.minExpires)",
            "  max_expires: \(presenceDescribed.maxExpires)",
            "  notify_interval_ms: \(presenceDescribed.minNotifyInterval.nanoseconds / 1_000_000)",
            "  basic_status_critical: \(presenceDescribed.basicStatusIsCritical)",
            "  notify_retries: \(presenceDescribed.notifyRetries)",
            "  notify_retry_delay_ms: \(presenceDescribed.notifyRetryDelay.nanoseconds / 1_000_000)",
            "  derive_from_registration: \(presenceDescribed.deriveFromRegistration)",
            "  store: \(presenceStore.rawValue)",
            "events:",
            "  enabled: \(events != nil)",
            "  brokers: [\((events?.brokers ?? []).map(uri).joined(separator: ", "))]",
            "  exchange: \(events?.exchange ?? "tern.events")",
            "  outbox_size: \(events?.outboxSize ?? 100_000)",
            "  overflow: \(events?.overflow ?? "drop_oldest")",
            "  heartbeat: \(events?.heartbeat ?? 10)",
            "  window: \(events?.window ?? 1000)",
            "  linger_ms: \(events?.lingerMilliseconds ?? 50)",
            "  spill_path: \"\(events?.spillPath ?? "")\"",
            "  commands:",
            "    enabled: \(events?.commandsEnabled ?? true)",
            "    queue: \(events?.commandQueue ?? "tern.commands")",
            "    binding_key: \"\(events?.commandBindingKey ?? "command.#")\"",
            "    prefetch: \(events?.commandPrefetch ?? 32)",
            "management:",
            "  enabled: \(management != nil)",
            "  listen: \(ManagementSettings.formatListen(management ?? ManagementSettings()))",
            "  token: \"\(management?.token.map { redactingSecrets ? "(set)" : $0 } ?? "")\"",
        ] + mobileYAMLLines(redactingSecrets: redactingSecrets) + [
            "routing:",
            "  file: \"\(routingFile ?? "")\"",
        ] + imsYAMLLines() + [
            "storage:",
            "  sqlite_path: \"\(sqlitePath)\"",
            "  location: \(locationStore.rawValue)",
            "  node: \"\(nodeName)\"",
            "  mongodb:",
            "    uri: \"\(uri(mongoDB?.uri ?? ""))\"",
            "    database: \"\(mongoDB?.database ?? "")\"",
            "    threads: \(mongoDB?.threads ?? 4)",
        ]
        if staticHosts.isEmpty {
            lines.append("hosts: {}")
        } else {
            lines.append("hosts:")
            lines += staticHosts.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)" }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension TernConfiguration {
    /// `scheme://user:password@host` → `scheme://user:***@host`.
    static func redactingPassword(_ uri: String) -> String {
        guard let scheme = uri.range(of: "://"), let at = uri[scheme.upperBound...].lastIndex(of: "@") else { return uri }
        let credentials = uri[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return uri }
        return String(uri[..<credentials.index(after: colon)]) + "***" + String(uri[at...])
    }
}

extension TernConfiguration.ManagementSettings {
    /// `HOST:PORT`, IPv6 hosts in brackets.
    public static func parseListen(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    static func formatListen(_ settings: Self) -> String {
        (settings.host.contains(":") ? "[" + settings.host + "]" : settings.host) + ":" + String(settings.port)
    }
}

/// Walks one YAML mapping, handing out keys and remembering which were used, so that anything left
/// over is reported as unknown.
struct MappingReader {
    let path: String
    var entries: [(key: String, value: Node, line: Int)]

    init(_ node: Node, path: String) throws(ConfigurationError) {
        self.path = path
        guard let mapping = node.mapping else {
            throw ConfigurationError(key: path.isEmpty ? "(top level)" : path, line: node.mark.map { $0.line },
                                     message: "expected a mapping of keys")
        }
        entries = mapping.map { (key: $0.key.string ?? "", value: $0.value, line: $0.key.mark?.line ?? 0) }
    }

    private func fullKey(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func error(_ key: String, _ node: Node, _ message: String) -> ConfigurationError {
        ConfigurationError(key: fullKey(key), line: node.mark.map { $0.line }, message: message)
    }

    mutating func take(_ key: String) -> Node? {
        guard let index = entries.firstIndex(where: { $0.key == key }) else { return nil }
        return entries.remove(at: index).value
    }

    mutating func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let node = take(key) else { return nil }
        guard let value = node.string else { throw error(key, node, "expected a string") }
        return value
    }

    mutating func strings(_ key: String) throws(ConfigurationError) -> [String]? {
        guard let node = take(key) else { return nil }
        guard let items = node.sequence else { throw error(key, node, "expected a list of strings") }
        var result: [String] = []
        for item in items {
            guard let value = item.string else { throw error(key, item, "expected a string") }
            result.append(value)
        }
        return result
    }

    mutating func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        guard let node = take(key) else { return nil }
        switch node.string?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, node, "expected true or false")
        }
    }

    mutating func double(_ key: String, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let node = take(key) else { return nil }
        guard let text = node.string, let value = Double(text) else { throw error(key, node, "expected a number") }
        guard range.contains(value) else {
            throw error(key, node, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    mutating func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let node = take(key) else { return nil }
        guard let text = node.string, let value = Int(text) else { throw error(key, node, "expected a whole number") }
        guard range.contains(value) else {
            throw error(key, node, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func finish() throws(ConfigurationError) {
        if let unknown = entries.first {
            throw ConfigurationError(key: fullKey(unknown.key), line: unknown.line, message: "unknown key")
        }
    }
}
