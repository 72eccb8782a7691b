public import NIOCore
public import SIP
public import Logging
import Metrics

/// The first stages of every message, in order (DESIGN: "a request's way through"):
/// parse → sanity checks → NAT fix-ups → the transaction layer.
///
/// Bad input gets a precise stateless error response when Via, Call-ID and CSeq can be read;
/// otherwise it is dropped and counted. Responses are never answered.
public final class InboundStage: TransportReceiver {
    public let parser: SIPMessageParser
    private let transactions: TransactionLayer
    private let sender: any SIPMessageSender
    private let logger: Logger
    private let metrics = InboundMetrics()

    public init(parser: SIPMessageParser, transactions: TransactionLayer, sender: any SIPMessageSender, logger: Logger) {
        self.parser = parser
        self.transactions = transactions
        self.sender = sender
        self.logger = logger
    }

    public func received(_ bytes: ByteBuffer, from meta: InboundMeta) {
        let framing: SIPMessageParser.Framing = meta.transport.isStream ? .exact : .datagram
        var message: SIPMessage
        do {
            message = try parser.parse(bytes, framing: framing)
        } catch {
            rejectUnparsable(bytes, error: error, meta: meta)
            return
        }
        if message.isRequest {
            SIPTrafficMetrics.shared.requestReceived(message.method)
            do {
                try message.validateRequestKeepingParsed()
            } catch {
                reject(message, error: error, meta: meta)
                return
            }
            NATFixups.stampReceived(&message, source: meta.source)
        } else {
            SIPTrafficMetrics.shared.responseReceived(message.statusCode)
            do {
                try message.validateResponseKeepingParsed()
            } catch {
                drop("bad response", error: error, meta: meta)
                return
            }
        }
        let inbound = InboundMessage(message: message, transport: meta.transport, source: meta.source,
                                     local: meta.local, flow: meta.flow, listener: meta.listener)
        transactions.receive(inbound, on: meta.eventLoop)
    }

    private func rejectUnparsable(_ bytes: ByteBuffer, error: SIPParseError, meta: InboundMeta) {
        guard let salvaged = parser.salvage(bytes) else {
            drop("unparsable", error: error, meta: meta)
            return
        }
        reject(salvaged, error: error, meta: meta)
    }

    /// Answers a request that cannot be processed, statelessly, or drops it when no answer can be addressed.
    private func reject(_ request: SIPMessage, error: SIPParseError, meta: InboundMeta) {
        guard request.canBeAnswered else {
            drop("unanswerable request", error: error, meta: meta)
            return
        }
        metrics.rejected.increment()
        SIPTrafficMetrics.shared.responseSent(SIPStatus(error).code)
        var response = SIPMessage.response(to: request, status: SIPStatus(error), toTag: SIPIdentifiers.tag())
        if case .unsupportedVersion = error {
            response.appendHeader(SIPHeaderName("Supported-Versions"), "SIP/2.0")
        }
        logger.debug("rejected request", metadata: [
            "sip.call_id": "\(request.callID ?? "")", "status": "\(SIPStatus(error))", "source": "\(meta.source)",
        ])
        let inbound = InboundMessage(message: request, transport: meta.transport, source: meta.source,
                                     local: meta.local, flow: meta.flow, listener: meta.listener)
        _ = sender.sendUnconfirmed(response.serialized(), over: ResponseRouting.flow(for: inbound))
    }

    private func drop(_ what: String, error: SIPParseError, meta: InboundMeta) {
        metrics.dropped.increment()
        logger.debug("dropped \(what)", metadata: ["error": "\(error)", "source": "\(meta.source)"])
    }
}

struct InboundMetrics: Sendable {
    let rejected = Counter(label: "tern.sip.requests_rejected")
    let dropped = Counter(label: "tern.sip.messages_dropped")
}
