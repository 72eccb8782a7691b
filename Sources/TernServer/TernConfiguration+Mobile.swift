public import CoreProxy
public import SIP
import NIOCore
import Yams

/// The `mobile:` section: forwarding tunings, push notifications, requests that wait for a device,
/// and keep-alive probes.
public struct MobileSettings: Sendable {
    public var tunings: [MessageTuningRule] = []
    public var dropUnregisteredMedia = true
    public var push: PushSettings?
    public var pendingWaitMilliseconds = 25_000
    public var pendingMethods: [SIPMethod] = [.invite, .message]
    public var waitForUnregistered = false
    public var pushAlways = false
    /// Seconds between keep-alive probes of NATed and outbound bindings; 0 is off.
    public var keepAliveInterval = 0
    /// Probes unanswered in a row before the binding goes.
    public var keepAliveFailures = 2

    public struct PushSettings: Sendable {
        public var providers: [String] = ["apns", "fcm", "webpush"]
        public var gatewayURL = ""
        public var authorization = ""
        public var template = ""
        public var timeoutMilliseconds = 5_000
        public var retries = 3
        public var retryDelayMilliseconds = 500
        public var maxInFlight = 1_000
        public var registrationMargin = 130
    }
}

extension TernConfiguration {
    mutating func readMobile(_ node: Node) throws(ConfigurationError) {
        var section = try MappingReader(node, path: "mobile")
        var settings = MobileSettings()
        settings.dropUnregisteredMedia = try section.bool("drop_unregistered_media") ?? settings.dropUnregisteredMedia
        if let rules = section.take("tunings") {
            guard let items = rules.sequence else { throw section.error("tunings", rules, "expected a list of rules") }
            for (index, item) in items.enumerated() {
                settings.tunings.append(try Self.tuningRule(item, path: "mobile.tunings[\(index)]"))
            }
        }
        if let node = section.take("push") {
            var push = try MappingReader(node, path: "mobile.push")
            var pushSettings = MobileSettings.PushSettings()
            let enabled = try push.bool("enabled") ?? true
            pushSettings.providers = try push.strings("providers")?.map { $0.lowercased() } ?? pushSettings.providers
            pushSettings.gatewayURL = try push.string("gateway_url") ?? ""
            if !pushSettings.gatewayURL.isEmpty, !(pushSettings.gatewayURL.hasPrefix("http://") || pushSettings.gatewayURL.hasPrefix("https://")) {
                throw push.error("gateway_url", node, "expected an http:// or https:// URL")
            }
            pushSettings.authorization = try push.string("authorization") ?? ""
            pushSettings.template = try push.string("template") ?? ""
            pushSettings.timeoutMilliseconds = try push.int("timeout_ms", in: 100...120_000) ?? pushSettings.timeoutMilliseconds
            pushSettings.retries = try push.int("retries", in: 0...10) ?? pushSettings.retries
            pushSettings.retryDelayMilliseconds = try push.int("retry_delay_ms", in: 10...60_000) ?? pushSettings.retryDelayMilliseconds
            pushSettings.maxInFlight = try push.int("max_in_flight", in: 1...100_000) ?? pushSettings.maxInFlight
            pushSettings.registrationMargin = try push.int("registration_margin", in: 121...86_400) ?? pushSettings.registrationMargin
            try push.finish()
            settings.push = enabled ? pushSettings : nil
        }
        if let node = section.take("pending") {
            var pending = try MappingReader(node, path: "mobile.pending")
            settings.pendingWaitMilliseconds = try pending.int("wait_ms", in: 0...300_000) ?? settings.pendingWaitMilliseconds
            if let methods = try pending.strings("methods") { settings.pendingMethods = methods.map { SIPMethod($0.uppercased()) } }
            settings.waitForUnregistered = try pending.bool("wait_for_unregistered") ?? settings.waitForUnregistered
            settings.pushAlways = try pending.bool("push_always") ?? settings.pushAlways
            try pending.finish()
        }
        if let node = section.take("keepalive") {
            var keepAlive = try MappingReader(node, path: "mobile.keepalive")
            settings.keepAliveInterval = try keepAlive.int("interval", in: 0...86_400) ?? settings.keepAliveInterval
            settings.keepAliveFailures = try keepAlive.int("failures", in: 1...100) ?? settings.keepAliveFailures
            try keepAlive.finish()
        }
        try section.finish()
        mobile = settings
    }

    private static func tuningRule(_ node: Node, path: String) throws(ConfigurationError) -> MessageTuningRule {
        var reader = try MappingReader(node, path: path)
        var rule = MessageTuningRule(tuning: MessageTuning())
        if let matchNode = reader.take("match") {
            var match = try MappingReader(matchNode, path: path + ".match")
            for text in try match.strings("networks") ?? [] {
                guard let network = IPNetwork(text) else { throw match.error("networks", matchNode, "\(text): expected ADDRESS/BITS") }
                rule.networks.append(network)
            }
            rule.hosts = try match.strings("hosts") ?? []
            rule.userAgents = try match.strings("user_agents") ?? []
            rule.methods = Set((try match.strings("methods") ?? []).map { SIPMethod($0.uppercased()) })
            try match.finish()
        }
        if let headers = try reader.strings("keep_headers") { rule.tuning.keepHeaders = Set(headers.map(SIPHeaderName.init)) }
        rule.tuning.sdpKeepCodecs = try reader.strings("sdp_keep_codecs")
        rule.tuning.sdpRemoveMedia = Set((try reader.strings("sdp_remove_media") ?? []).map { $0.lowercased() })
        rule.tuning.compactHeaders = try reader.bool("compact_headers") ?? false
        if let gzip = try reader.string("gzip") {
            guard let parsed = MessageTuning.Gzip(rawValue: gzip) else {
                throw reader.error("gzip", node, "\(gzip): expected never, auto or always")
            }
            rule.tuning.gzip = parsed
        }
        rule.tuning.gzipMinimumBytes = try reader.int("gzip_min_bytes", in: 0...1_000_000) ?? rule.tuning.gzipMinimumBytes
        try reader.finish()
        return rule
    }

    /// The effective `mobile:` section for `--check-config` and `config.dump`.
    func mobileYAMLLines(redactingSecrets: Bool) -> [String] {
        var lines = [
            "mobile:",
            "  drop_unregistered_media: \(mobile.dropUnregisteredMedia)",
        ]
        if mobile.tunings.isEmpty {
            lines.append("  tunings: []")
        } else {
            lines.append("  tunings:")
            lines += mobile.tunings.map { "    - " + Self.describe($0) }
        }
        let push = mobile.push ?? MobileSettings.PushSettings()
        lines += [
            "  push:",
            "    enabled: \(mobile.push != nil)",
            "    providers: [\(push.providers.joined(separator: ", "))]",
            "    gateway_url: \"\(push.gatewayURL)\"",
            "    authorization: \"\(redactingSecrets && !push.authorization.isEmpty ? "(set)" : push.authorization)\"",
            "    template: '\(push.template.replacingOccurrences(of: "'", with: "''"))'",
            "    timeout_ms: \(push.timeoutMilliseconds)",
            "    retries: \(push.retries)",
            "    retry_delay_ms: \(push.retryDelayMilliseconds)",
            "    max_in_flight: \(push.maxInFlight)",
            "    registration_margin: \(push.registrationMargin)",
            "  pending:",
            "    wait_ms: \(mobile.pendingWaitMilliseconds)",
            "    methods: [\(mobile.pendingMethods.map(\.rawValue).joined(separator: ", "))]",
            "    wait_for_unregistered: \(mobile.waitForUnregistered)",
            "    push_always: \(mobile.pushAlways)",
            "  keepalive:",
            "    interval: \(mobile.keepAliveInterval)",
            "    failures: \(mobile.keepAliveFailures)",
        ]
        return lines
    }

    /// One rule in YAML flow style, as it would be written.
    private static func describe(_ rule: MessageTuningRule) -> String {
        func list(_ items: [String]) -> String { "[" + items.map { "\"" + $0 + "\"" }.joined(separator: ", ") + "]" }
        var match: [String] = []
        if !rule.networks.isEmpty { match.append("networks: " + list(rule.networks.map(\.description))) }
        if !rule.hosts.isEmpty { match.append("hosts: " + list(rule.hosts)) }
        if !rule.userAgents.isEmpty { match.append("user_agents: " + list(rule.userAgents)) }
        if !rule.methods.isEmpty { match.append("methods: " + list(rule.methods.map(\.rawValue).sorted())) }
        var parts = ["match: { " + match.joined(separator: ", ") + " }"]
        let tuning = rule.tuning
        if let keep = tuning.keepHeaders { parts.append("keep_headers: " + list(keep.map(\.canonical).sorted())) }
        if let codecs = tuning.sdpKeepCodecs { parts.append("sdp_keep_codecs: " + list(codecs)) }
        if !tuning.sdpRemoveMedia.isEmpty { parts.append("sdp_remove_media: " + list(tuning.sdpRemoveMedia.sorted())) }
        parts.append("compact_headers: \(tuning.compactHeaders)")
        parts.append("gzip: " + tuning.gzip.rawValue)
        parts.append("gzip_min_bytes: \(tuning.gzipMinimumBytes)")
        return "{ " + parts.joined(separator: ", ") + " }"
    }
}
