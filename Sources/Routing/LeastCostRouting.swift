public import SIP

/// Least-cost routing (Kamailio's lcr): gateways grouped under number prefixes with a priority
/// and a weight; the longest prefix of the (normalised) number wins.
public struct LeastCostRouting: Sendable {
    public struct Gateway: Sendable, Hashable {
        public var name: String
        /// Where requests go: the host, port and transport of the Request-URI.
        public var uri: SIPURI
        /// Digits removed from the front of the number, then `prefix` put before it.
        public var strip: Int
        public var prefix: String

        public init(name: String, uri: SIPURI, strip: Int = 0, prefix: String = "") {
            self.name = name
            self.uri = uri
            self.strip = max(0, strip)
            self.prefix = prefix
        }

        /// The Request-URI a number gets at this gateway.
        public func requestURI(for number: String, parameters: String) -> SIPURI {
            var target = uri
            target.user = prefix + String(number.dropFirst(strip)) + parameters
            return target
        }
    }

    public struct Choice: Sendable, Hashable {
        public var gateway: String
        public var priority: Int
        public var weight: Int

        public init(gateway: String, priority: Int = 0, weight: Int = 1) {
            self.gateway = gateway
            self.priority = priority
            self.weight = max(0, weight)
        }
    }

    public var gateways: [String: Gateway]
    /// Prefix → the gateways that carry it.
    public var routes: [String: [Choice]]
    public var failoverCodes: Set<Int>
    private let longestPrefix: Int

    public init(gateways: [Gateway], routes: [String: [Choice]], failoverCodes: Set<Int> = [408, 480, 500, 502, 503, 504]) {
        self.gateways = Dictionary(gateways.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.routes = routes
        self.failoverCodes = failoverCodes
        self.longestPrefix = routes.keys.map(\.count).max() ?? 0
    }

    /// The longest prefix of `number` that has a route, and its choices; nil when none matches.
    public func match(_ number: String) -> (prefix: String, choices: [Choice])? {
        var length = min(number.count, longestPrefix)
        while length >= 0 {
            let prefix = String(number.prefix(length))
            if let choices = routes[prefix] { return (prefix, choices) }
            length -= 1
        }
        return nil
    }

    /// A number as routes are written: visual separators gone, a leading `+` kept.
    public static func normalised(_ user: String) -> String {
        var out = ""
        for character in user {
            if character.isNumber || (character == "+" && out.isEmpty) || character == "*" || character == "#" { out.append(character) }
            else if character == ";" { break }
        }
        return out
    }
}
