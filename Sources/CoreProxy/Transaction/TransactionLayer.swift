public import NIOCore
import NIOConcurrencyHelpers
public import SIP
import Metrics

/// Sends bytes over flows or to destinations; ``TransportLayer`` in production.
public protocol SIPMessageSender: Sendable {
    func send(_ bytes: ByteBuffer, over flow: SIPFlow) -> EventLoopFuture<Void>
    func send(_ bytes: ByteBuffer, to destination: SIPDestination) -> EventLoopFuture<SIPFlow>
    /// The flow a send to `destination` would use when it is known at once, so a transaction can
    /// send over it directly instead of waiting on a future for it.
    func flowAtHand(for destination: SIPDestination) -> SIPFlow?
    /// Sends when nothing waits on the write (answers): returns why the send could not start,
    /// and nothing of the write itself.
    func sendUnconfirmed(_ bytes: ByteBuffer, over flow: SIPFlow) -> TransportError?
}

extension SIPMessageSender {
    public func flowAtHand(for destination: SIPDestination) -> SIPFlow? { nil }

    public func sendUnconfirmed(_ bytes: ByteBuffer, over flow: SIPFlow) -> TransportError? {
        _ = send(bytes, over: flow)
        return nil
    }
}

extension TransportLayer: SIPMessageSender {}

/// The layer above the transaction layer (RFC 3261 §17): the core that routes requests.
public protocol TransactionUser: AnyObject, Sendable {
    /// A new request (not a retransmission, not an ACK, not a CANCEL).
    func handleRequest(_ transaction: ServerTransaction)
    /// A CANCEL, in its own transaction, with the INVITE transaction it cancels if one matches.
    func handleCancel(_ transaction: ServerTransaction, invite: ServerTransaction?)
    /// An ACK that no transaction absorbs: for a 2xx, or for nothing we know (RFC 3261 §17.2.3).
    func handleACK(_ ack: InboundMessage, transaction: ServerTransaction?)
    /// A response that matches no client transaction (a 2xx retransmission, for instance).
    func handleStrayResponse(_ response: InboundMessage)
    /// Timer H fired: the ACK for our final response never came.
    func serverTransactionTimedOut(_ transaction: ServerTransaction)
    /// A response could not be sent.
    func serverTransactionTransportFailed(_ transaction: ServerTransaction)
}

/// Holds the live transactions, matches every message to one, and creates new ones.
///
/// The tables are sharded, each shard behind its own lock, so two event loops rarely contend.
public final class TransactionLayer: Sendable {
    public let timers: TransactionTimers
    let sender: any SIPMessageSender
    let metrics = TransactionMetrics()
    let wheels = TimerWheels()
    /// Trims what leaves for peers on costly links (nil: everything leaves as built).
    public let tuner: MessageTuner?
    /// Methods whose server transactions end with their final response, whatever the transport:
    /// no Timer J keeps them (and their request and response) for 32 s over UDP to answer
    /// retransmissions, which reach the transaction user again instead (Kamailio's stateless
    /// replies to REGISTER; see ``Registrar/Configuration/statelessReplies``).
    public let statelessMethods: Set<SIPMethod>
    private let userBox = NIOLockedValueBox<(any TransactionUser)?>(nil)
    private let serverShards: [NIOLockedValueBox<[TransactionKey: ServerEntry]>]
    private let clientShards: [NIOLockedValueBox<[TransactionKey: ClientEntry]>]

    /// A server table entry: a transaction, or what an answered non-INVITE one leaves for Timer J.
    ///
    /// A completed non-INVITE transaction only answers retransmissions with its last response for
    /// 32 s over UDP. Kept whole, it held its request, timers and lock all that time (3.7 KB per
    /// MESSAGE, over 200 MB at 2,000 requests/s); the answer alone is a few hundred bytes. Whoever
    /// still holds the transaction (a callback finishing its work) keeps it alive, not the table.
    enum ServerEntry {
        case live(ServerTransaction)
        case answered(AnsweredRequest)

        var transaction: ServerTransaction? {
            if case .live(let transaction) = self { return transaction }
            return nil
        }
    }

    /// The final response of an answered non-INVITE request and the flow it went over.
    final class AnsweredRequest: Sendable {
        let response: ByteBuffer
        let flow: SIPFlow

        init(response: ByteBuffer, flow: SIPFlow) {
            self.response = response
            self.flow = flow
        }
    }

    /// A client table entry: a transaction, or a completed non-INVITE one absorbing retransmitted
    /// final responses until Timer K (5 s over UDP) with nothing else kept.
    enum ClientEntry {
        case live(ClientTransaction)
        case completed

        var transaction: ClientTransaction? {
            if case .live(let transaction) = self { return transaction }
            return nil
        }
    }

    public init(sender: any SIPMessageSender, timers: TransactionTimers = TransactionTimers(), shardCount: Int = 16,
                tuner: MessageTuner? = nil, statelessMethods: Set<SIPMethod> = []) {
        self.sender = sender
        self.tuner = tuner
        self.statelessMethods = statelessMethods
        self.timers = timers
        self.serverShards = (0..<max(1, shardCount)).map { _ in NIOLockedValueBox([:]) }
        self.clientShards = (0..<max(1, shardCount)).map { _ in NIOLockedValueBox([:]) }
    }

    public func setUser(_ user: any TransactionUser) {
        userBox.withLockedValue { $0 = user }
    }

    var user: (any TransactionUser)? { userBox.withLockedValue { $0 } }

    public var serverTransactionCount: Int { serverShards.reduce(0) { $0 + $1.withLockedValue(\.count) } }
    public var clientTransactionCount: Int { clientShards.reduce(0) { $0 + $1.withLockedValue(\.count) } }

    /// Transactions still waiting for a final response: what graceful shutdown lets finish.
    public var pendingTransactionCount: Int {
        let server = serverShards.reduce(0) { total, shard in
            total + shard.withLockedValue { $0.values.filter { !($0.transaction?.isAnsweredFinally ?? true) }.count }
        }
        let client = clientShards.reduce(0) { total, shard in
            total + shard.withLockedValue { table in
                table.values.filter { entry in
                    entry.transaction.map { [.calling, .trying, .proceeding].contains($0.machineState) } ?? false
                }.count
            }
        }
        return server + client
    }

    private func serverShard(_ key: TransactionKey) -> NIOLockedValueBox<[TransactionKey: ServerEntry]> {
        serverShards[Int(UInt(bitPattern: key.hashValue) % UInt(serverShards.count))]
    }

    private func clientShard(_ key: TransactionKey) -> NIOLockedValueBox<[TransactionKey: ClientEntry]> {
        clientShards[Int(UInt(bitPattern: key.hashValue) % UInt(clientShards.count))]
    }

    // MARK: - Inbound

    /// Matches a validated message to its transaction, or starts one (RFC 3261 §17.2.3, §17.1.3).
    public func receive(_ inbound: InboundMessage, on eventLoop: any EventLoop) {
        if inbound.message.isRequest {
            receiveRequest(inbound, on: eventLoop)
        } else {
            receiveResponse(inbound)
        }
    }

    private func receiveRequest(_ inbound: InboundMessage, on eventLoop: any EventLoop) {
        let message = inbound.message
        guard let key = try? TransactionKey.server(for: message) else {
            metrics.unmatchable.increment()
            return
        }
        if message.method == .ack {
            let invite = serverShard(key).withLockedValue { $0[key]?.transaction }
            if let invite {
                if invite.machineState == .completed || invite.machineState == .confirmed {
                    // The ACK for our non-2xx final response: absorbed here (RFC 3261 §17.2.1).
                    invite.handle(.ack)
                    metrics.acksAbsorbed.increment()
                    return
                }
                invite.handle(.ack)
            }
            user?.handleACK(inbound, transaction: invite)
            return
        }
        // Insert-if-absent: a retransmission finds the live transaction and never reaches the user.
        let (entry, isNew) = serverShard(key).withLockedValue { table -> (ServerEntry, Bool) in
            if let existing = table[key] { return (existing, false) }
            let created = ServerEntry.live(ServerTransaction(key: key, inbound: inbound, layer: self, eventLoop: eventLoop))
            table[key] = created
            return (created, true)
        }
        if !isNew {
            switch entry {
            case .live(let transaction): transaction.handle(.requestRetransmission)
            case .answered(let answer): resend(answer, key: key)
            }
            return
        }
        guard let transaction = entry.transaction else { return }
        metrics.serverTransactionsCreated.increment()
        if message.method == .cancel {
            let inviteKey = try? TransactionKey.inviteCancelled(by: message)
            let invite = inviteKey.flatMap { key in serverShard(key).withLockedValue { $0[key]?.transaction } }
            user?.handleCancel(transaction, invite: invite)
            return
        }
        if message.method == .invite {
            // RFC 3261 §17.2.1 / §16.2: stop INVITE retransmissions at once.
            transaction.respond(SIPStatus(100))
        }
        user?.handleRequest(transaction)
    }

    /// A retransmitted request whose transaction was answered gets the same answer again; a flow
    /// that fails takes the answer off the table, as it ended the transaction before.
    private func resend(_ answer: AnsweredRequest, key: TransactionKey) {
        metrics.retransmissionsAbsorbed.increment()
        guard sender.sendUnconfirmed(answer.response, over: answer.flow) != nil else { return }
        serverShard(key).withLockedValue { table in
            if case .answered(let kept) = table[key], kept === answer { table[key] = nil }
        }
    }

    private func receiveResponse(_ inbound: InboundMessage) {
        guard let key = try? TransactionKey.client(for: inbound.message),
              let entry = clientShard(key).withLockedValue({ $0[key] }),
              let code = inbound.message.statusCode
        else {
            user?.handleStrayResponse(inbound)
            return
        }
        switch entry {
        case .live(let transaction):
            transaction.handle(.response(statusCode: code), response: inbound.message)
        case .completed:
            // A retransmitted final response, absorbed (RFC 3261 §17.1.2.2, Completed).
            metrics.retransmissionsAbsorbed.increment()
        }
    }

    /// The live server transaction with this key, if any (an answered non-INVITE one is no longer).
    public func serverTransaction(_ key: TransactionKey) -> ServerTransaction? {
        serverShard(key).withLockedValue { $0[key]?.transaction }
    }

    // MARK: - Outbound

    /// Starts a client transaction for `request`, whose top Via must carry a fresh branch.
    ///
    /// - Parameters:
    ///   - destination: where to send it when there is no flow yet.
    ///   - handler: receives responses, a timeout, or a transport error; called on any event loop.
    @discardableResult
    public func sendRequest(_ request: SIPMessage, to destination: SIPDestination, on eventLoop: any EventLoop,
                            options: SIPMessage.SerializationOptions = SIPMessage.SerializationOptions(),
                            handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) -> ClientTransaction {
        try start(request, target: .destination(destination), reliable: destination.transport.isReliable,
                  on: eventLoop, options: options, handler: handler)
    }

    /// Starts a client transaction over an existing flow (a registered device's connection, RFC 5626).
    @discardableResult
    public func sendRequest(_ request: SIPMessage, over flow: SIPFlow, reliable: Bool, on eventLoop: any EventLoop,
                            options: SIPMessage.SerializationOptions = SIPMessage.SerializationOptions(),
                            handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) -> ClientTransaction {
        try start(request, target: .flow(flow), reliable: reliable, on: eventLoop, options: options, handler: handler)
    }

    private func start(_ request: SIPMessage, target: ClientTransaction.Target, reliable: Bool, on eventLoop: any EventLoop,
                       options: SIPMessage.SerializationOptions, handler: @escaping @Sendable (ClientTransactionEvent) -> Void) throws(SIPParseError) -> ClientTransaction {
        guard let method = request.method else { throw .malformedStartLine("not a request") }
        guard let branch = try request.topVia()?.branch else { throw .missingHeader(.via) }
        let key = TransactionKey.client(branch: branch, method: method)
        let transaction = ClientTransaction(key: key, request: request, target: target, reliable: reliable,
                                            layer: self, eventLoop: eventLoop, options: options, handler: handler)
        clientShard(key).withLockedValue { $0[key] = .live(transaction) }
        metrics.clientTransactionsCreated.increment()
        transaction.handle(.start)
        return transaction
    }

    // MARK: - Removal

    /// Takes the transaction, or the answer it left (a send of its final response failed), off the table.
    func remove(_ transaction: ServerTransaction) {
        serverShard(transaction.key).withLockedValue { table in
            switch table[transaction.key] {
            case .live(let live) where live === transaction: table[transaction.key] = nil
            case .answered: table[transaction.key] = nil
            default: break
            }
        }
    }

    func remove(_ transaction: ClientTransaction) {
        clientShard(transaction.key).withLockedValue { table in
            if case .live(let live) = table[transaction.key], live === transaction { table[transaction.key] = nil }
        }
    }

    /// An answered non-INVITE server transaction leaves only its answer on the table, for `delay` (Timer J).
    func keepAnswer(of transaction: ServerTransaction, response: ByteBuffer, flow: SIPFlow, for delay: TimeAmount) {
        let key = transaction.key
        let kept = serverShard(key).withLockedValue { table -> AnsweredRequest? in
            guard case .live(let live) = table[key], live === transaction else { return nil }
            let answer = AnsweredRequest(response: response, flow: flow)
            table[key] = .answered(answer)
            return answer
        }
        guard let kept else { return }
        wheels.wheel(for: transaction.eventLoop).schedule(after: delay) { [self] in
            serverShard(key).withLockedValue { table in
                if case .answered(let answer) = table[key], answer === kept { table[key] = nil }
            }
        }
    }

    /// A completed non-INVITE client transaction leaves only its key on the table, for `delay` (Timer K).
    func keepCompleted(_ transaction: ClientTransaction, for delay: TimeAmount) {
        let key = transaction.key
        let kept = clientShard(key).withLockedValue { table -> Bool in
            guard case .live(let live) = table[key], live === transaction else { return false }
            table[key] = .completed
            return true
        }
        guard kept else { return }
        wheels.wheel(for: transaction.eventLoop).schedule(after: delay) { [self] in
            clientShard(key).withLockedValue { table in
                if case .completed = table[key] { table[key] = nil }
            }
        }
    }
}

struct TransactionMetrics: Sendable {
    let serverTransactionsCreated = Counter(label: "tern.sip.server_transactions")
    let clientTransactionsCreated = Counter(label: "tern.sip.client_transactions")
    let retransmissionsAbsorbed = Counter(label: "tern.sip.retransmissions_absorbed")
    let acksAbsorbed = Counter(label: "tern.sip.acks_absorbed")
    let unmatchable = Counter(label: "tern.sip.unmatchable")
}
