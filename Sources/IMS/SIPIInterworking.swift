public import CoreProxy
public import NIOCore
public import SIP
import Metrics

/// SIP-I/SIP-T carried through the proxy (RFC 3372, Q.1912.5 profile C): the ISUP IAM in an INVITE
/// is read and kept consistent with the SIP around it. A request whose Hop Counter is spent is
/// refused (483) as a loop; a calling number whose presentation is restricted asks for privacy, and
/// one the network did not screen is not asserted; when routing gives the call a new number (a
/// dialplan rewrite, a least-cost gateway's prefix), the Called Party Number follows, with the Hop
/// Counter down by one (Kamailio's sipt_destination).
public final class SIPIInterworking: TrustPolicy, Sendable {
    public struct Configuration: Sendable {
        /// The Hop Counter an IAM gets when it has none (Q.763 §3.80; at most 31).
        public var initialHops: Int

        public init(initialHops: Int = 31) {
            self.initialHops = initialHops
        }
    }

    public let configuration: Configuration
    private let rewritten = Counter(label: "tern.sipi.called_numbers_rewritten")
    private let loops = Counter(label: "tern.sipi.hop_counter_spent")

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    public func arriving(_ request: inout SIPMessage, from source: SocketAddress, initial: Bool) -> SIPStatus? {
        if request.method == .bye {
            // A release from the PSTN says why in SIP too (RFC 3398 §8.2.3, RFC 3326).
            if !request.contains(.reason), let release = request.isupMessage, release.type == ISUPMessage.MessageType.release.rawValue,
               let cause = release.variable.first.flatMap(ISUPCause.value(ofIndicators:)) {
                request.appendHeader(.reason, ISUPCause.reasonHeader(cause))
            }
            return nil
        }
        guard initial, request.method == .invite, let isup = request.isupMessage, isup.type == ISUPMessage.MessageType.initialAddress.rawValue
        else { return nil }
        if isup.hopCounter == 0 { loops.increment(); return SIPStatus(483, "ISUP Hop Counter Exhausted") }
        // The PSTN's hop budget bounds the SIP one too (the sipt README's example): a loop through
        // both networks ends as soon as either says so.
        if let hops = isup.hopCounter, let maxForwards = (try? request.maxForwards()) ?? nil, hops < maxForwards {
            request.setHeader(.maxForwards, String(hops))
        }
        if let calling = isup.callingPartyNumber {
            // Presentation restricted (Q.763 §3.10 c): the caller's identity is private (RFC 3323).
            if calling.presentation == 1, !request.values(.privacy).contains(where: { $0.lowercased().contains("id") }) {
                request.appendHeader(.privacy, "id")
            }
            // Only a number the network provided or verified may stand as an asserted identity.
            if calling.screening != 1, calling.screening != 3 { request.removeHeaders(.pAssertedIdentity) }
        }
        return nil
    }

    /// A SIP-I call that fails says why in PSTN terms too (RFC 3398, RFC 3326): the cause of the
    /// gateway's REL when the response carries one, else the cause RFC 3398 maps the status to.
    public func answering(_ response: inout SIPMessage, to request: SIPMessage) {
        guard let status = response.statusCode, status >= 300, request.method == .invite, !response.contains(.reason),
              request.isupMessage != nil else { return }
        let released = response.isupMessage.flatMap { $0.type == ISUPMessage.MessageType.release.rawValue ? $0.variable.first : nil }
        let cause = released.flatMap(ISUPCause.value(ofIndicators:)) ?? ISUPCause.cause(forStatus: status)
        response.appendHeader(.reason, ISUPCause.reasonHeader(cause))
    }

    public func leaving(_ request: inout SIPMessage, to peer: TuningPeer) {
        guard request.method == .invite, var isup = request.isupMessage, let called = isup.calledPartyNumber,
              let user = (try? request.requestURI())?.unescapedUser else { return }
        let number = String(user.split(separator: ";").first ?? "")
        let digits = String(number.drop { $0 == "+" }.filter(\.isNumber))
        guard !digits.isEmpty, digits.count == number.drop(while: { $0 == "+" }).count else { return }
        let current = called.digits.uppercased().filter { $0 != "F" }
        guard current != digits else { return }
        isup.setDestination(digits, hops: configuration.initialHops, nature: number.hasPrefix("+") ? 4 : 3,
                            terminator: called.digits.uppercased().hasSuffix("F"))
        if request.setISUPMessage(isup) { rewritten.increment() }
    }
}
