public import SIP

/// What the proxy saw of a call (an INVITE dialog it routes), for the event bus: Tern never takes
/// part in calls, so this is what passed through, not what the phones did with it.
public struct CallEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// An initial INVITE was routed.
        case started
        /// The first 2xx to it went back to the caller.
        case answered
        /// It ended without an answer: the final status that went back (486, 487 after CANCEL, 480, ...).
        case failed
        /// A BYE was routed.
        case ended
    }

    public var kind: Kind
    public var callID: String
    /// From and To URIs (the caller's and callee's addresses as the request named them).
    public var from: String
    public var to: String
    /// The INVITE's Request-URI (started), or nil.
    public var requestURI: String?
    /// The final status (answered, failed), or nil.
    public var status: Int?
    /// The IMS charging identifier (P-Charging-Vector icid-value, RFC 7315 §4.6), when the call has one.
    public var icid: String?

    public init(kind: Kind, callID: String, from: String, to: String, requestURI: String? = nil, status: Int? = nil, icid: String? = nil) {
        self.icid = icid
        self.kind = kind
        self.callID = callID
        self.from = from
        self.to = to
        self.requestURI = requestURI
        self.status = status
    }

    /// An INVITE outside a dialog (no To tag): a call starting.
    static func isInitialInvite(_ request: SIPMessage) -> Bool {
        request.method == .invite && ((try? request.to())??.tag == nil)
    }

    /// The event for `request` (an INVITE or BYE).
    init(_ kind: Kind, request: SIPMessage, status: Int? = nil) {
        self.init(kind: kind, callID: request.callID ?? "",
                  from: ((try? request.from())??.uri.description) ?? "", to: ((try? request.to())??.uri.description) ?? "",
                  requestURI: kind == .started ? (try? request.requestURI())?.description : nil, status: status,
                  icid: request.chargingIdentifier)
    }

    /// The icid-value parameter of a P-Charging-Vector value.
    public static func icid(_ value: String) -> String? {
        for part in value.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace }
            if pair.count == 2, pair[0].lowercased() == "icid-value" { return pair[1].trimmingCharacters(in: "\"") }
        }
        return nil
    }
}

/// Receives the calls the proxy routes (the event bus subscribes).
public protocol CallObserver: Sendable {
    func callEvent(_ event: CallEvent)
}

extension SIPMessage {
    /// The IMS charging identifier this request carries (P-Charging-Vector icid-value, RFC 7315
    /// §4.6), which every event about it repeats for correlation.
    public var chargingIdentifier: String? { firstValue(.pChargingVector).flatMap(CallEvent.icid) }
}
