import Foundation
import NIOCore
public import SIP

/// One initial filter criterion (TS 29.228 §B.2.2, TS 24.229 5.4.3): when its trigger point
/// matches, the request goes to its application server.
public struct InitialFilterCriteria: Sendable, Hashable {
    public enum SessionCase: Int, Sendable, Hashable {
        case originating = 0, terminatingRegistered = 1, terminatingUnregistered = 2, originatingUnregistered = 3
    }

    public enum DefaultHandling: String, Sendable, Hashable {
        /// SESSION_CONTINUED: an application server that fails is skipped.
        case `continue`
        /// SESSION_TERMINATED: the request fails; for REGISTER, the user is de-registered by the network.
        case terminate
    }

    public struct ApplicationServer: Sendable, Hashable {
        public var serverName: SIPURI
        public var defaultHandling: DefaultHandling
        /// `<service-info>` content for a third-party REGISTER.
        public var serviceInfo: String?
        public var includeRegisterRequest: Bool
        public var includeRegisterResponse: Bool

        public init(serverName: SIPURI, defaultHandling: DefaultHandling = .continue, serviceInfo: String? = nil,
                    includeRegisterRequest: Bool = false, includeRegisterResponse: Bool = false) {
            self.serverName = serverName
            self.defaultHandling = defaultHandling
            self.serviceInfo = serviceInfo
            self.includeRegisterRequest = includeRegisterRequest
            self.includeRegisterResponse = includeRegisterResponse
        }
    }

    /// A service point trigger.
    public struct ServicePointTrigger: Sendable, Hashable {
        public enum Kind: Sendable, Hashable {
            case method(String)
            /// A regular expression over the whole Request-URI.
            case requestURI(String)
            /// A header present (content nil) or one of its values matching the expression.
            case header(String, content: String?)
            case sessionCase(SessionCase)
            /// An SDP line of this type (`m`, `a`, …) whose value matches the expression.
            case sessionDescription(line: String, content: String?)
            /// REGISTER only: 0 initial, 1 re-registration, 2 de-registration.
            case registrationType(Set<Int>)
        }

        public var group: Int
        public var negated: Bool
        public var kind: Kind

        public init(group: Int = 0, negated: Bool = false, _ kind: Kind) {
            self.group = group
            self.negated = negated
            self.kind = kind
        }
    }

    public struct TriggerPoint: Sendable, Hashable {
        /// ConditionTypeCNF 1: the groups are ANDed, the triggers within one ORed; 0 (DNF): the reverse.
        public var conjunctive: Bool
        public var triggers: [ServicePointTrigger]

        public init(conjunctive: Bool, triggers: [ServicePointTrigger]) {
            self.conjunctive = conjunctive
            self.triggers = triggers
        }
    }

    public var priority: Int
    /// Nil: every request matches.
    public var trigger: TriggerPoint?
    public var applicationServer: ApplicationServer

    public init(priority: Int, trigger: TriggerPoint?, applicationServer: ApplicationServer) {
        self.priority = priority
        self.trigger = trigger
        self.applicationServer = applicationServer
    }

    /// What a trigger point is checked against.
    public struct Context {
        public var request: SIPMessage
        public var sessionCase: SessionCase
        /// For REGISTER: 0 initial, 1 re-, 2 de-registration.
        public var registrationType: Int?

        public init(request: SIPMessage, sessionCase: SessionCase, registrationType: Int? = nil) {
            self.request = request
            self.sessionCase = sessionCase
            self.registrationType = registrationType
        }
    }

    public func matches(_ context: Context) -> Bool {
        guard let trigger else { return true }
        let groups = Dictionary(grouping: trigger.triggers, by: \.group).values
        if trigger.conjunctive {
            return groups.allSatisfy { group in group.contains { Self.holds($0, context) } }
        }
        return groups.contains { group in group.allSatisfy { Self.holds($0, context) } }
    }

    static func holds(_ spt: ServicePointTrigger, _ context: Context) -> Bool {
        let request = context.request
        let result: Bool
        switch spt.kind {
        case .method(let method):
            result = request.method?.rawValue.caseInsensitiveEquals(method) ?? false
        case .requestURI(let pattern):
            result = matches(pattern, request.requestURIString ?? "")
        case .header(let name, let content):
            let values = request.values(SIPHeaderName(name))
            result = content.map { pattern in values.contains { matches(pattern, $0) } } ?? !values.isEmpty
        case .sessionCase(let sessionCase):
            result = context.sessionCase == sessionCase
        case .sessionDescription(let line, let content):
            let lines = String(buffer: request.body).split(whereSeparator: \.isNewline)
                .filter { $0.hasPrefix(line + "=") }.map { String($0.dropFirst(line.count + 1)) }
            result = content.map { pattern in lines.contains { matches(pattern, $0) } } ?? !lines.isEmpty
        case .registrationType(let types):
            result = context.registrationType.map(types.contains) ?? false
        }
        return result != spt.negated
    }

    /// Whether the expression matches anywhere in the text (TS 29.228 uses regular expressions).
    static func matches(_ pattern: String, _ text: String) -> Bool {
        guard let expression = try? NSRegularExpression(pattern: pattern) else { return false }
        return expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}
