import CoreProxy
import Foundation
import Logging
import SIP
import Testing
@testable import TernServer
import Messaging
import Presence
import NIOCore

@Suite struct ConfigurationTests {
    @Test func emptyFileGivesDefaults() throws {
        let configuration = try TernConfiguration(yaml: "")
        #expect(configuration.listeners.map(\.description) == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
        #expect(configuration.maxMessageSize == 65_535)
        #expect(configuration.t1Milliseconds == 500)
        #expect(configuration.tls == nil)
    }

    @Test func everyKeyIsRead() throws {
        let yaml = """
        listen:
          - udp:[::1]:0
          - wss:0.0.0.0:8443
        tls:
          certificate: /c.pem
          private_key: /k.pem
          client_certificates: required
        limits:
          max_message_size: 4096
          max_connections: 3
          idle_timeout: 30
        timers:
          t1_ms: 100
          t2_ms: 800
          t4_ms: 900
        sip:
          server_header: ""
          supported: [path, gruu]
        hosts:
          edge.example: 127.0.0.2
        log:
          level: debug
        shutdown:
          drain_timeout: 1
        threads: 2
        """
        let configuration = try TernConfiguration(yaml: yaml)
        #expect(configuration.listeners == [
            ListenerSpec(transport: .udp, host: "::1", port: 0),
            ListenerSpec(transport: .wss, host: "0.0.0.0", port: 8443),
        ])
        #expect(configuration.tls?.clientCertificates == .required)
        #expect(configuration.maxMessageSize == 4096)
        #expect(configuration.maxConnections == 3)
        #expect(configuration.idleTimeoutSeconds == 30)
        #expect(configuration.t1Milliseconds == 100)
        #expect(configuration.serverConfiguration.pipeline.serverHeader == nil)
        #expect(configuration.supportedExtensions == ["path", "gruu"])
        #expect(configuration.staticHosts == ["edge.example": "127.0.0.2"])
        #expect(configuration.logLevel == .debug)
        #expect(configuration.drainTimeoutSeconds == 1)
        #expect(configuration.threads == 2)
        #expect(configuration.authentication == nil)
        // What --check-config prints reads back to the same configuration.
        let again = try TernConfiguration(yaml: configuration.yamlDescription)
        #expect(again.yamlDescription == configuration.yamlDescription)
    }

    static let errors: [(String, String)] = [
        ("colour: blue\n", "colour (line 1): unknown key"),
        ("limits:\n  max_conections: 3\n", "limits.max_conections (line 2): unknown key"),
        ("limits:\n  max_connections: lots\n", "limits.max_connections (line 2): expected a whole number"),
        ("limits:\n  max_message_size: 10\n", "limits.max_message_size (line 2): 10 is out of range 1024...16777216"),
        ("listen:\n  - udp:127.0.0.1\n", "listen (line 2): expected PROTO:HOST:PORT, got 'udp:127.0.0.1'"),
        ("listen:\n  - smtp:127.0.0.1:25\n", "listen (line 2): unknown transport 'smtp' (udp, tcp, tls, ws, wss)"),
        ("listen:\n  - tls:127.0.0.1:5061\n", "listen: tls:127.0.0.1:5061 needs tls.certificate and tls.private_key"),
        ("listen:\n  - sctp:127.0.0.1:5060\n", "listen: sctp:127.0.0.1:5060: SCTP is not available on this system"),
        ("log:\n  level: loud\n", "log.level (line 2): expected trace, debug, info, notice, warning, error or critical"),
        ("hosts:\n  edge: not-an-ip\n", "hosts.edge (line 2): expected an IPv4 or IPv6 address"),
        ("auth:\n  enabled: true\n", "auth.credentials_file (line 2): needed when auth is enabled"),
        ("auth:\n  credentials_file: f\n  algorithms: [SHA-512]\n", "auth.algorithms (line 2): SHA-512: expected MD5 or SHA-256"),
        ("proxy:\n  outbound_proxy: \"not a uri\"\n", "proxy.outbound_proxy (line 2): not a SIP URI: no scheme"),
        ("registrar:\n  min_expires: 900\n  max_expires: 600\n", "registrar.min_expires (line 2): must not exceed registrar.max_expires"),
        ("storage:\n  location: redis\n", "storage.location (line 2): redis: expected sqlite, mongodb or memory"),
        ("storage:\n  location: mongodb\n", "storage.location: mongodb needs storage.mongodb.uri"),
        ("storage:\n  mongodb:\n    uri: http://db\n", "storage.mongodb.uri (line 3): expected a mongodb:// URI"),
        ("auth:\n  credentials: ldap\n", "auth.credentials (line 2): ldap: expected file or mongodb"),
        ("auth:\n  credentials: mongodb\n", "auth.credentials: mongodb needs storage.mongodb.uri"),
        ("messaging:\n  store: mongodb\n", "messaging.store: mongodb needs storage.mongodb.uri"),
        ("messaging:\n  store: redis\n", "messaging.store (line 2): redis: expected sqlite or mongodb"),
        ("messaging:\n  total_rate: fast\n", "messaging.total_rate (line 2): expected a number"),
        ("events:\n  enabled: true\n", "events.brokers (line 2): needed when events are enabled"),
        ("events:\n  brokers: [http://mq]\n", "events.brokers (line 2): http://mq: expected amqp://user:password@host:port/vhost"),
        ("events:\n  brokers: [amqp://mq]\n  overflow: later\n", "events.overflow (line 2): later: expected drop_oldest, drop_newest or spill"),
        ("storage:\n  sqlite_path: \"\"\nevents:\n  brokers: [amqp://mq]\n  overflow: spill\n",
         "events.overflow: spill needs events.spill_path or storage.sqlite_path"),
        ("events:\n  brokers: [amqp://mq]\n  commands:\n    prefetch: 0\n", "events.commands.prefetch (line 4): 0 is out of range 1...65535"),
        ("management:\n  listen: localhost\n", "management.listen (line 2): localhost: expected HOST:PORT (IPv6 in brackets)"),
        ("management:\n  port: 80\n", "management.port (line 2): unknown key"),
        ("limits:\n  udp_buffer_bytes: 10\n", "limits.udp_buffer_bytes (line 2): 10 is out of range 65536...1073741824"),
        ("presence:\n  policy: friends\n", "presence.policy (line 2): friends: expected allow, same_domain or ask"),
        ("presence:\n  min_expires: 900\n  max_expires: 600\n", "presence.min_expires (line 2): must not exceed presence.max_expires"),
        ("mobile:\n  tunings:\n    - gzip: sometimes\n", "mobile.tunings[0].gzip (line 3): sometimes: expected never, auto or always"),
        ("mobile:\n  tunings:\n    - match:\n        networks: [10.0.0.0/33]\n",
         "mobile.tunings[0].match.networks (line 4): 10.0.0.0/33: expected ADDRESS/BITS"),
        ("mobile:\n  tunings:\n    - match:\n        colour: red\n", "mobile.tunings[0].match.colour (line 4): unknown key"),
        ("mobile:\n  push:\n    gateway_url: ftp://x\n", "mobile.push.gateway_url (line 3): expected an http:// or https:// URL"),
        ("mobile:\n  push:\n    registration_margin: 60\n", "mobile.push.registration_margin (line 3): 60 is out of range 121...86400"),
        ("mobile:\n  pending:\n    wait_ms: -1\n", "mobile.pending.wait_ms (line 3): -1 is out of range 0...300000"),
        ("mobile:\n  keepalive:\n    every: 30\n", "mobile.keepalive.every (line 3): unknown key"),
    ]

    @Test(arguments: errors)
    func badConfigurationNamesTheKey(_ yaml: String, _ message: String) {
        #expect(throws: ConfigurationError.self) { try TernConfiguration(yaml: yaml) }
        do {
            _ = try TernConfiguration(yaml: yaml)
        } catch {
            #expect(error.description == message)
        }
    }

    /// Stateless REGISTER replies: off unless asked, and then the transaction layer keeps no REGISTER.
    @Test func statelessRegistrarIsRead() throws {
        #expect(try TernConfiguration(yaml: "").serverConfiguration.registrar.statelessReplies)
        let configuration = try TernConfiguration(yaml: "registrar:\n  stateless: false\n")
        #expect(configuration.serverConfiguration.registrar.statelessReplies == false)
        #expect(configuration.yamlDescription.contains("  stateless: false"))
    }

    @Test func authenticationSectionIsRead() throws {
        let configuration = try TernConfiguration(yaml: """
        auth:
          credentials_file: /etc/tern/ha1
          realm: tern.test
          algorithms: [MD5]
          nonce_lifetime: 60
          trust_tls_connections: true
        proxy:
          outbound_proxy: sip:edge.example.net:5070
          redirect: true
        """)
        let auth = try #require(configuration.authentication)
        #expect(auth.realm == "tern.test")
        #expect(auth.algorithms == [.md5])
        #expect(auth.nonceLifetimeSeconds == 60)
        #expect(auth.trustTLSConnections)
        #expect(configuration.credentialsFile == "/etc/tern/ha1")
        #expect(configuration.proxy.outboundProxy?.port == 5070)
        #expect(configuration.proxy.redirect)
    }

    @Test func mongoDBStorageIsRead() throws {
        let configuration = try TernConfiguration(yaml: """
        storage:
          location: mongodb
          node: node-7
          mongodb:
            uri: mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=2000
            database: sip
            threads: 8
        auth:
          credentials: mongodb
          credentials_cache_seconds: 30
        """)
        #expect(configuration.locationStore == .mongodb)
        #expect(configuration.nodeName == "node-7")
        #expect(configuration.mongoDB?.uri == "mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=2000")
        #expect(configuration.mongoDB?.database == "sip" && configuration.mongoDB?.threads == 8)
        #expect(configuration.credentialsSource == .mongodb && configuration.credentialsCacheSeconds == 30)
        #expect(configuration.authentication != nil, "credentials from MongoDB need no file")
        let again = try TernConfiguration(yaml: configuration.yamlDescription)
        #expect(again.yamlDescription == configuration.yamlDescription)
    }

    @Test func messagingSectionIsRead() throws {
        let configuration = try TernConfiguration(yaml: """
        messaging:
          store: mongodb
          collection: offline
          fork: newest
          max_age: 3600
          max_per_user: 50
          over_limit_status: 507
          over_limit_reason: Full
          max_body_bytes: 1024
          per_device_rate: 2.5
          total_rate: 40
          retry_after_failure: 9
        storage:
          mongodb:
            uri: mongodb://127.0.0.1:27017
        """)
        let messaging = try #require(configuration.messaging)
        #expect(configuration.messageStore == .mongodb && configuration.messageCollection == "offline")
        #expect(configuration.proxy.newestDeviceOnly == [.message])
        #expect(messaging.maxAgeSeconds == 3600 && messaging.maxPerUser == 50 && messaging.maxBodyBytes == 1024)
        #expect(messaging.overLimitStatus.code == 507 && messaging.overLimitStatus.reason == "Full")
        #expect(messaging.perDeviceRate == 2.5 && messaging.totalRate == 40 && messaging.retryAfterFailure == .seconds(9))
        #expect(try TernConfiguration(yaml: "messaging:\n  enabled: false\n").messaging == nil)
        let again = try TernConfiguration(yaml: configuration.yamlDescription)
        #expect(again.yamlDescription == configuration.yamlDescription)
    }

    @Test func presenceSectionIsRead() throws {
        let configuration = try TernConfiguration(yaml: """
        presence:
          policy: same_domain
          default_expires: 1800
          min_expires: 30
          max_expires: 7200
          notify_interval_ms: 250
          basic_status_critical: false
          notify_retries: 4
          notify_retry_delay_ms: 900
          derive_from_registration: false
        """)
        let presence = try #require(configuration.presence)
        #expect(presence.policy == .sameDomain && presence.defaultExpires == 1800 && presence.minExpires == 30)
        #expect(presence.maxExpires == 7200 && presence.minNotifyInterval == .milliseconds(250) && !presence.basicStatusIsCritical)
        #expect(presence.notifyRetries == 4 && presence.notifyRetryDelay == .milliseconds(900) && !presence.deriveFromRegistration)
        #expect(try TernConfiguration(yaml: "presence:\n  enabled: false\n").presence == nil)
        let again = try TernConfiguration(yaml: configuration.yamlDescription)
        #expect(again.yamlDescription == configuration.yamlDescription)
    }

    @Test func mobileSectionIsRead() throws {
        let yaml = """
        mobile:
          drop_unregistered_media: false
          tunings:
            - match: { networks: [10.64.0.0/10, "2001:db8::/32"], user_agents: [TernPhone], methods: [invite, MESSAGE] }
              keep_headers: [P-Asserted-Identity]
              sdp_keep_codecs: [opus, PCMU]
              sdp_remove_media: [Video]
              compact_headers: true
              gzip: always
              gzip_min_bytes: 64
            - match: { hosts: [pcscf.example] }
              gzip: never
          push:
            providers: [apns]
            gateway_url: https://push.example/v1
            authorization: Bearer secret
            template: '{"to":"${prid}"}'
            timeout_ms: 2000
            retries: 1
            retry_delay_ms: 100
            max_in_flight: 10
            registration_margin: 200
          pending:
            wait_ms: 5000
            methods: [INVITE]
            wait_for_unregistered: true
            push_always: true
          keepalive:
            interval: 30
            failures: 3
        """
        let configuration = try TernConfiguration(yaml: yaml)
        let mobile = configuration.mobile
        #expect(!mobile.dropUnregisteredMedia)
        #expect(mobile.tunings.count == 2)
        let first = try #require(mobile.tunings.first)
        #expect(first.networks.map(\.description) == ["10.64.0.0/10", "2001:db8::/32"])
        #expect(first.userAgents == ["TernPhone"] && first.methods == [.invite, .message])
        #expect(first.tuning.keepHeaders == [SIPHeaderName("P-Asserted-Identity")])
        #expect(first.tuning.sdpKeepCodecs == ["opus", "PCMU"] && first.tuning.sdpRemoveMedia == ["video"])
        #expect(first.tuning.compactHeaders && first.tuning.gzip == .always && first.tuning.gzipMinimumBytes == 64)
        #expect(mobile.tunings.last?.hosts == ["pcscf.example"] && mobile.tunings.last?.tuning.gzip == MessageTuning.Gzip.never)
        let push = try #require(mobile.push)
        #expect(push.providers == ["apns"] && push.gatewayURL == "https://push.example/v1" && push.authorization == "Bearer secret")
        #expect(push.template == "{\"to\":\"${prid}\"}" && push.timeoutMilliseconds == 2000 && push.retries == 1)
        #expect(push.retryDelayMilliseconds == 100 && push.maxInFlight == 10 && push.registrationMargin == 200)
        #expect(mobile.pendingWaitMilliseconds == 5000 && mobile.pendingMethods == [.invite])
        #expect(mobile.waitForUnregistered && mobile.pushAlways)
        #expect(mobile.keepAliveInterval == 30 && mobile.keepAliveFailures == 3)
        let server = configuration.serverConfiguration
        #expect(server.registrar.pushProviders == ["apns"] && server.registrar.pushRegistrationMargin == 200)
        #expect(server.proxy.pendingWait == .milliseconds(5000) && server.proxy.pushAlways && server.proxy.waitForUnregistered)
        #expect(server.tunings.count == 2 && !server.dropUnregisteredMedia)
        #expect(try TernConfiguration(yaml: "mobile:\n  push:\n    enabled: false\n").mobile.push == nil)
        #expect(!configuration.yamlDescription(redactingSecrets: true).contains("secret"))
        let again = try TernConfiguration(yaml: configuration.yamlDescription)
        #expect(again.yamlDescription == configuration.yamlDescription)
    }

    @Test func exampleConfigurationIsValid() throws {
        let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let text = try String(contentsOfFile: "/" + path + "/tern.example.yaml", encoding: .utf8)
        let configuration = try TernConfiguration(yaml: text)
        #expect(Set(configuration.listeners.map(\.transport)) == [.udp, .tcp, .tls, .ws, .wss])
    }
}
