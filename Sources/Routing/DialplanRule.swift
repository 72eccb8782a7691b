public import Foundation
public import SIP

/// One rule of the dialplan (Kamailio's dialplan module): a match on the Request-URI user, an
/// optional rewrite, optional marks, and what happens next.
public struct DialplanRule: Sendable {
    public enum Match: Sendable {
        /// The user starts with this text.
        case prefix(String)
        /// The user matches this regular expression (ICU syntax); groups feed the rewrite.
        case regex(NSRegularExpressionBox)
    }

    public enum Action: Sendable, Hashable {
        /// Rewrite and go on with the next rule.
        case `continue`
        /// To the local user the (rewritten) URI names.
        case local
        case lcr
        case dispatcher(String)
        case uri(SIPURI)
        case reject(Int, String)
    }

    /// A condition on the shared cache: the rule applies only when the key is (or is not) in the table.
    public struct TableCondition: Sendable, Hashable {
        public enum Key: String, Sendable, CaseIterable {
            case fromUser = "from_user"
            case toUser = "to_user"
            case requestUser = "request_user"
            case source = "source_ip"
        }

        public var table: String
        public var key: Key
        public var present: Bool

        public init(table: String, key: Key, present: Bool) {
            self.table = table
            self.key = key
            self.present = present
        }
    }

    /// A write to the shared cache when the rule applies: `value` with `$user` standing for the
    /// rewritten user (e.g. remember the number a caller dialled last).
    public struct TableWrite: Sendable, Hashable {
        public var table: String
        public var key: TableCondition.Key
        public var value: String

        public init(table: String, key: TableCondition.Key, value: String) {
            self.table = table
            self.key = key
            self.value = value
        }
    }

    /// A condition on the ISUP the request carries (SIP-I): the `$sipt` field (Kamailio's names,
    /// `ISUPMessage.fields`) must be present and its whole value match the expression.
    public struct ISUPCondition: Sendable {
        public var field: String
        public var pattern: NSRegularExpressionBox

        public init(field: String, pattern: NSRegularExpressionBox) {
            self.field = field
            self.pattern = pattern
        }

        public func holds(_ fields: [(name: String, value: String)]) -> Bool {
            guard let value = fields.first(where: { $0.name == field })?.value else { return false }
            let range = NSRange(value.startIndex..., in: value)
            return pattern.expression.firstMatch(in: value, range: range)?.range == range
        }
    }

    /// A change to the request's ISUP IAM (Kamailio's sipt_destination, sipt_set_calling,
    /// sipt_forwarding). In a number, `$user` stands for the rewritten Request-URI user's digits.
    public enum ISUPEdit: Sendable, Hashable {
        case destination(number: String, nature: UInt8, hops: Int)
        case calling(number: String, nature: UInt8, presentation: UInt8, screening: UInt8)
        case forwarding(number: String, nature: UInt8)

        /// Applies the edit; false when the message is not an IAM.
        @discardableResult
        public func apply(to isup: inout ISUPMessage, user: String) -> Bool {
            let digits = String(user.split(separator: ";").first ?? "").filter(\.isNumber)
            func number(_ text: String) -> String { text.replacingOccurrences(of: "$user", with: digits) }
            switch self {
            case .destination(let text, let nature, let hops):
                return isup.setDestination(number(text), hops: hops, nature: nature)
            case .calling(let text, let nature, let presentation, let screening):
                return isup.setCalling(number(text), nature: nature, presentation: presentation, screening: screening)
            case .forwarding(let text, let nature):
                return isup.setForwarding(number(text), nature: nature)
            }
        }

        public var description: String {
            switch self {
            case .destination(let number, let nature, let hops): "destination \(number) (nature \(nature), hops \(hops))"
            case .calling(let number, let nature, let presentation, let screening):
                "calling number \(number) (nature \(nature), presentation \(presentation), screening \(screening))"
            case .forwarding(let number, let nature): "redirecting number \(number) (nature \(nature))"
            }
        }
    }

    public var name: String
    public var match: Match
    /// For a regex: the new user with `$1`… for groups; for a prefix: text put in place of the prefix.
    public var rewrite: String?
    public var condition: TableCondition?
    public var addHeaders: [(SIPHeaderName, String)]
    public var store: TableWrite?
    public var action: Action
    public var isupConditions: [ISUPCondition]
    public var isupEdits: [ISUPEdit]

    public init(name: String, match: Match, rewrite: String? = nil, condition: TableCondition? = nil,
                isupConditions: [ISUPCondition] = [], isupEdits: [ISUPEdit] = [],
                addHeaders: [(SIPHeaderName, String)] = [], store: TableWrite? = nil, action: Action) {
        self.isupConditions = isupConditions
        self.isupEdits = isupEdits
        self.store = store
        self.name = name
        self.match = match
        self.rewrite = rewrite
        self.condition = condition
        self.addHeaders = addHeaders
        self.action = action
    }

    /// The user after this rule, or nil when it does not match.
    public func apply(to user: String) -> String? {
        switch match {
        case .prefix(let prefix):
            guard user.hasPrefix(prefix) else { return nil }
            guard let rewrite else { return user }
            return rewrite + user.dropFirst(prefix.count)
        case .regex(let box):
            let range = NSRange(user.startIndex..., in: user)
            guard let found = box.expression.firstMatch(in: user, range: range), found.range == range else { return nil }
            guard let rewrite else { return user }
            return box.expression.replacementString(for: found, in: user, offset: 0, template: rewrite)
        }
    }
}

/// A compiled expression shared between threads: NSRegularExpression is immutable and documented
/// as safe to use from several threads at once.
public final class NSRegularExpressionBox: @unchecked Sendable {
    public let expression: NSRegularExpression
    public let pattern: String

    public init(_ pattern: String) throws {
        self.pattern = pattern
        self.expression = try NSRegularExpression(pattern: pattern)
    }
}
