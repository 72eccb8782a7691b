import SIP
import Metrics

/// Requests by method and responses by status class, for `/metrics`. The method label takes only
/// the methods Tern knows, and `other` for the rest: a peer's invented methods must not create
/// one series each.
public struct SIPTrafficMetrics: Sendable {
    public static let shared = SIPTrafficMetrics()

    static let knownMethods: [SIPMethod] = [
        .invite, .ack, .bye, .cancel, .options, .register, .prack, .subscribe, .notify, .publish, .info, .refer, .message, .update,
    ]

    private let requestsByMethod: [String: Counter]
    private let otherRequests: Counter
    private let responsesReceived: [Counter]
    private let responsesSent: [Counter]

    private init() {
        var table: [String: Counter] = [:]
        for method in Self.knownMethods {
            table[method.rawValue] = Counter(label: "tern.sip.requests_received", dimensions: [("method", method.rawValue)])
        }
        requestsByMethod = table
        otherRequests = Counter(label: "tern.sip.requests_received", dimensions: [("method", "other")])
        responsesReceived = (1...6).map { Counter(label: "tern.sip.responses_received", dimensions: [("class", "\($0)xx")]) }
        responsesSent = (1...6).map { Counter(label: "tern.sip.responses_sent", dimensions: [("class", "\($0)xx")]) }
    }

    func requestReceived(_ method: SIPMethod?) {
        guard let method, let counter = requestsByMethod[method.rawValue] else {
            otherRequests.increment()
            return
        }
        counter.increment()
    }

    func responseReceived(_ code: Int?) {
        Self.counter(in: responsesReceived, for: code)?.increment()
    }

    func responseSent(_ code: Int?) {
        Self.counter(in: responsesSent, for: code)?.increment()
    }

    private static func counter(in table: [Counter], for code: Int?) -> Counter? {
        guard let code, (100...699).contains(code) else { return nil }
        return table[code / 100 - 1]
    }
}
