public import CoreProxy
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import SIP

/// Pager-mode instant messages (RFC 3428) for users who are away: what the proxy cannot deliver
/// now is stored (202 Accepted once it is durable), and delivered — oldest first, throttled, to
/// every device of the user — as soon as the user registers again.
///
/// Online users get their MESSAGEs from the proxy like any request (forked to their devices,
/// best answer back); this service takes over only when there is no binding, or when every branch
/// failed with 408, 480 or 503 (``UndeliverableRequestHandler``).
///
/// At least once: a message is deleted after a device's 2xx. If Tern stops between that 2xx and
/// the delete's commit (one store round trip, milliseconds), the message is delivered again on
/// the next registration; a message whose delete committed is never delivered again.
public final class MessagingService: UndeliverableRequestHandler, LocationObserver, ServerFeature, Sendable {
    public struct Configuration: Sendable {
        /// How long a message waits before it lapses (default 7 days).
        public var maxAgeSeconds: Int64
        /// Messages kept per user (default 1000); over it the sender gets ``overLimitStatus``.
        public var maxPerUser: Int
        public var overLimitStatus: SIPStatus
        /// Largest body stored (default 64 KiB); larger ones get 413.
        public var maxBodyBytes: Int
        /// Messages per second to each device (default 10) and in total (default 200).
        public var perDeviceRate: Double
        public var totalRate: Double
        /// After a failed delivery, the user's queue is tried again this long later while they stay
        /// registered (default 30 s); a new registration tries at once.
        public var retryAfterFailure: TimeAmount
        /// How often lapsed messages are swept (default 5 s).
        public var expirySweepInterval: TimeAmount
        /// Tell the sender (a user of a domain Tern serves) with a MESSAGE from
        /// `postmaster@<recipient's domain>` when their message lapsed undelivered (default false).
        public var reportExpired: Bool

        public init(maxAgeSeconds: Int64 = 7 * 86_400, maxPerUser: Int = 1000,
                    overLimitStatus: SIPStatus = SIPStatus(486, "Mailbox Full"), maxBodyBytes: Int = 65_536,
                    perDeviceRate: Double = 10, totalRate: Double = 200, retryAfterFailure: TimeAmount = .seconds(30),
                    expirySweepInterval: TimeAmount = .seconds(5), reportExpired: Bool = false) {
            self.maxAgeSeconds = maxAgeSeconds
            self.maxPerUser = maxPerUser
            self.overLimitStatus = overLimitStatus
            self.maxBodyBytes = maxBodyBytes
            self.perDeviceRate = perDeviceRate
            self.totalRate = totalRate
            self.retryAfterFailure = retryAfterFailure
            self.expirySweepInterval = expirySweepInterval
            self.reportExpired = reportExpired
        }
    }

    /// One user's delivery run. Only one runs per user at a time, so messages leave in order.
    private struct Drain {
        var again = false
        let throttle: DeliveryThrottle
    }

    public let configuration: Configuration
    public let store: any MessageStore
    private let proxy: StatefulProxy
    private let location: LocationService
    private let identity: LocalIdentity?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let totalThrottle: DeliveryThrottle
    private let drains = NIOLockedValueBox<[String: Drain]>([:])
    private let observers = NIOLockedValueBox<[any MessagingObserver]>([])
    private let sweepTask = NIOLockedValueBox<RepeatedTask?>(nil)
    private let stopped = NIOLockedValueBox(false)
    /// Recipients known to have messages waiting: a registration of anyone else costs no store read.
    /// Complete for a store of this node's own; for a shared one, see ``sharedRecheck``.
    private let waiting = NIOLockedValueBox<Set<String>>([])
    /// Shared store: when each registered user was last looked up (a refresh looks again after this).
    private let lastChecked = NIOLockedValueBox<[String: Int64]>([:])
    private static let sharedRecheckMilliseconds: Int64 = 300_000
    private let counters: [MessagingEvent.Kind: Counter]
    private let storeFailures = Counter(label: "tern.messaging.store_failures")
    private let refusedOverLimit = Counter(label: "tern.messaging.over_limit")

    /// Batch read from the store per round of a drain.
    private static let batch = 50

    /// - Parameter identity: the domains Tern serves (expiry reports go only to their users).
    public init(configuration: Configuration, store: any MessageStore, proxy: StatefulProxy, location: LocationService,
                identity: LocalIdentity? = nil, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.proxy = proxy
        self.location = location
        self.identity = identity
        self.group = group
        self.logger = logger
        self.totalThrottle = DeliveryThrottle(rate: configuration.totalRate)
        var counters: [MessagingEvent.Kind: Counter] = [:]
        for kind in MessagingEvent.Kind.allCases {
            counters[kind] = Counter(label: "tern.messaging.messages", dimensions: [("event", kind.rawValue)])
        }
        self.counters = counters
    }

    /// Takes over undeliverable MESSAGEs, watches registrations, and starts the expiry sweep.
    public func start() {
        proxy.setUndeliverableHandler(self, for: .message)
        location.addObserver(self)
        let loop = group.next()
        let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: configuration.expirySweepInterval) { [self] _ in
            sweepExpired(on: loop)
        }
        sweepTask.withLockedValue { $0 = task }
        // Users registered before a restart with messages waiting get them without re-registering.
        store.recipients(on: loop).whenSuccess { [self] recipients in
            waiting.withLockedValue { $0.formUnion(recipients) }
            for recipient in recipients where !location.bindings(for: recipient).isEmpty { deliver(to: recipient) }
        }
    }

    public func stop() async {
        stopped.withLockedValue { $0 = true }
        sweepTask.withLockedValue { $0 }?.cancel()
    }

    public func addObserver(_ observer: any MessagingObserver) {
        observers.withLockedValue { $0.append(observer) }
    }

    private func publish(_ kind: MessagingEvent.Kind, _ message: StoredMessage, icid: String? = nil) {
        counters[kind]?.increment()
        let event = MessagingEvent(kind: kind, messageID: message.id, sender: message.from, recipient: message.recipient,
                                   time: Self.nowMilliseconds(), storedAt: message.storedAt, attempts: message.attempts, icid: icid)
        for observer in observers.withLockedValue({ $0 }) { observer.messagingEvent(event) }
    }

    static func nowMilliseconds() -> Int64 { SystemLocationClock().nowMilliseconds() }

    // MARK: - Storing (UndeliverableRequestHandler)

    public func undeliverable(_ transaction: ServerTransaction, request: SIPMessage, aor: String, status: Int?,
                              devicesWoken: Bool) -> Bool {
        guard request.method == .message else { return false }
        guard request.body.readableBytes <= configuration.maxBodyBytes else {
            transaction.respond(SIPStatus(413, "Message Too Large To Store"))
            return true
        }
        let now = Self.nowMilliseconds()
        let message = StoredMessage(
            recipient: aor, from: request.firstValue(.from) ?? "", to: request.firstValue(.to) ?? "",
            callID: request.callID ?? "", date: request.firstValue(.date) ?? HTTPDate.now(),
            contentType: request.firstValue(.contentType) ?? "text/plain", contentEncoding: request.firstValue(.contentEncoding),
            body: Array(request.body.readableBytesView), storedAt: now, expiresAt: now + configuration.maxAgeSeconds * 1000)
        store.store(message, limit: configuration.maxPerUser, on: transaction.eventLoop).whenComplete { [self] result in
            switch result {
            case .success(true):
                // The 202 leaves only now that the store holds the message.
                transaction.respond(SIPStatus(202))
                waiting.withLockedValue { _ = $0.insert(aor) }
                publish(.stored, message, icid: request.chargingIdentifier)
                if !devicesWoken { wakeDevices(of: aor, for: message) }
                if status != nil {
                    // The user is registered but no device answered: try again later.
                    scheduleRetry(aor)
                }
            case .success(false):
                refusedOverLimit.increment()
                transaction.respond(configuration.overLimitStatus)
            case .failure(let error):
                storeFailures.increment()
                logger.error("message store write failed", metadata: ["recipient": "\(aor)", "error": "\(error)"])
                transaction.respond(SIPStatus(500, "Message Store Unavailable"), headers: [(.retryAfter, "10")])
            }
        }
        return true
    }

    /// A stored message is a reason to wake the user's sleeping devices (RFC 8599): when one
    /// registers, the message is delivered.
    private func wakeDevices(of aor: String, for message: StoredMessage) {
        guard let push = proxy.pushService else { return }
        for binding in location.bindings(for: aor) {
            guard let contact = binding.push else { continue }
            push.wake(aor: aor, contact: contact, reason: .storedMessage, callID: message.callID, from: message.from)
        }
    }

    // MARK: - Delivering

    public func locationChanged(_ event: BindingEvent) {
        let aor = event.binding.aor
        switch event.kind {
        case .added, .refreshed:
            guard shouldLookUp(aor, newDevice: event.kind == .added) else { return }
            // After this returns, the registrar writes its 200 OK, which goes out when the loop
            // has read its burst: the drain starts on this loop's next tick, so after it (another
            // loop could send a stored message first).
            (group.makeIterator().first { $0.inEventLoop } ?? group.next()).execute { [self] in deliver(to: aor) }
        case .removed, .expired:
            if store.isShared, location.bindings(for: aor).isEmpty {
                lastChecked.withLockedValue { $0[aor] = nil }
            }
        }
    }

    /// Whether a registration should look for stored messages: always when the store is this
    /// node's own and the user has some; with a shared store also for a new device, and for a
    /// refresh when the last look is old (another node may have stored something).
    private func shouldLookUp(_ aor: String, newDevice: Bool) -> Bool {
        if waiting.withLockedValue({ $0.contains(aor) }) { return true }
        guard store.isShared else { return false }
        let now = Self.nowMilliseconds()
        return lastChecked.withLockedValue { table in
            if !newDevice, let last = table[aor], now - last < Self.sharedRecheckMilliseconds { return false }
            table[aor] = now
            return true
        }
    }

    /// Starts delivering the user's stored messages unless a run is already going (then it goes
    /// round once more when done, so nothing stored meanwhile waits for the next registration).
    public func deliver(to aor: String) {
        guard !stopped.withLockedValue({ $0 }) else { return }
        let start = drains.withLockedValue { table -> Bool in
            if table[aor] != nil {
                table[aor]?.again = true
                return false
            }
            table[aor] = Drain(throttle: DeliveryThrottle(rate: configuration.perDeviceRate))
            return true
        }
        guard start else { return }
        nextBatch(aor, on: group.next())
    }

    private func nextBatch(_ aor: String, on loop: any EventLoop) {
        drains.withLockedValue { $0[aor]?.again = false }
        store.pending(for: aor, now: Self.nowMilliseconds(), limit: Self.batch, on: loop).whenComplete { [self] result in
            switch result {
            case .success(let messages):
                if messages.isEmpty { waiting.withLockedValue { _ = $0.remove(aor) } }
                deliverNext(aor, messages[...], fullBatch: messages.count == Self.batch, on: loop)
            case .failure(let error):
                logger.error("message store read failed", metadata: ["recipient": "\(aor)", "error": "\(error)"])
                finishDrain(aor, retry: true, on: loop)
            }
        }
    }

    private func deliverNext(_ aor: String, _ remaining: ArraySlice<StoredMessage>, fullBatch: Bool, on loop: any EventLoop) {
        guard let message = remaining.first else {
            let again = drains.withLockedValue { $0[aor]?.again ?? false }
            if fullBatch || again {
                nextBatch(aor, on: loop)
            } else {
                finishDrain(aor, retry: false, on: loop)
            }
            return
        }
        let bindings = location.bindings(for: aor)
        guard !bindings.isEmpty else {
            // The user went away again: the rest waits for the next registration.
            finishDrain(aor, retry: false, on: loop)
            return
        }
        let perUser = drains.withLockedValue { $0[aor]?.throttle }?.reserve() ?? .zero
        let total = totalThrottle.reserve()
        loop.scheduleTask(in: max(perUser, total)) { [self] in
            send(message, to: bindings, on: loop) { [self] delivered in
                if delivered {
                    store.delete(id: message.id, on: loop).whenComplete { [self] result in
                        if case .failure(let error) = result {
                            // Delivered but still stored: it will be delivered again (at least once).
                            logger.error("delivered message not deleted", metadata: ["id": "\(message.id)", "error": "\(error)"])
                            finishDrain(aor, retry: true, on: loop)
                            return
                        }
                        publish(.delivered, message)
                        deliverNext(aor, remaining.dropFirst(), fullBatch: fullBatch, on: loop)
                    }
                } else {
                    var failed = message
                    failed.attempts += 1
                    publish(.failed, failed)
                    store.recordAttempt(id: message.id, on: loop).whenComplete { [self] _ in
                        finishDrain(aor, retry: true, on: loop)
                    }
                }
            }
        }
    }

    private func finishDrain(_ aor: String, retry: Bool, on loop: any EventLoop) {
        let again = drains.withLockedValue { table -> Bool in
            let again = table[aor]?.again ?? false
            table[aor] = nil
            return again
        }
        if retry {
            scheduleRetry(aor)
        } else if again {
            deliver(to: aor)
        }
    }

    private func scheduleRetry(_ aor: String) {
        group.next().scheduleTask(in: configuration.retryAfterFailure) { [self] in
            if !location.bindings(for: aor).isEmpty { deliver(to: aor) }
        }
    }

    /// Sends one stored message to every device of the user at once; `completion(true)` on the
    /// first 2xx, `false` when every device answered otherwise or could not be reached.
    private func send(_ message: StoredMessage, to bindings: [Binding], on loop: any EventLoop,
                      completion: @escaping @Sendable (Bool) -> Void) {
        let outcome = NIOLockedValueBox((pending: bindings.count, done: false))
        let finish: @Sendable (Bool) -> Void = { success in
            let report = outcome.withLockedValue { state -> Bool? in
                guard !state.done else { return nil }
                state.pending -= 1
                if success || state.pending == 0 {
                    state.done = true
                    return success
                }
                return nil
            }
            if let report { completion(report) }
        }
        for binding in bindings {
            do {
                try proxy.originate(request(for: message), to: binding, on: loop) { event in
                    switch event {
                    case .response(let response):
                        guard let code = response.statusCode, code >= 200 else { return }
                        finish(code < 300)
                    case .timeout, .transportError:
                        finish(false)
                    }
                }
            } catch {
                finish(false)
            }
        }
    }

    /// The MESSAGE a device receives: the original sender, date and content, a new Call-ID.
    func request(for message: StoredMessage) -> SIPMessage {
        var headers: [(SIPHeaderName, String)] = [
            (.maxForwards, "70"), (.from, message.from), (.to, message.to), (.callID, SIPIdentifiers.callID()),
            (.cseq, "1 MESSAGE"), (.date, message.date), (.contentType, message.contentType),
        ]
        if let encoding = message.contentEncoding { headers.append((.contentEncoding, encoding)) }
        var body = ByteBuffer()
        body.writeBytes(message.body)
        let uri = (try? SIPURI(parsing: message.recipient)) ?? SIPURI(scheme: .sip, host: "invalid")
        return SIPMessage.request(method: .message, uri: uri, headers: headers, body: body)
    }

    // MARK: - Expiry

    private func sweepExpired(on loop: any EventLoop) {
        store.removeExpired(now: Self.nowMilliseconds(), limit: 1000, on: loop).whenComplete { [self] result in
            switch result {
            case .success(let lapsed):
                for message in lapsed {
                    publish(.expired, message)
                    if configuration.reportExpired { reportExpiry(message) }
                }
            case .failure(let error):
                logger.warning("expiry sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// A short text to the sender of a message that lapsed (RFC 3428 has no delivery report of
    /// its own; IMDN-capable clients get theirs from the recipient's device).
    private func reportExpiry(_ message: StoredMessage) {
        guard let identity, let sender = try? SIPAddress(parsing: message.from), let senderAOR = AddressOfRecord.canonical(sender.uri),
              identity.servesDomain(sender.uri.host), let recipient = try? SIPURI(parsing: message.recipient) else { return }
        let text = "Your message to \(message.recipient) of \(message.date) was not delivered: it expired undelivered."
        Task { [self] in
            _ = try? await sendMessage(from: "sip:postmaster@" + recipient.host, to: senderAOR, body: Array(text.utf8))
        }
    }

    // MARK: - Management

    /// The messages waiting for a user, oldest first.
    public func storedMessages(for aor: String, limit: Int = 1000) async throws -> [StoredMessage] {
        try await store.pending(for: aor, now: Self.nowMilliseconds(), limit: limit, on: group.next()).get()
    }

    /// Deletes one stored message; true when it existed.
    public func deleteStoredMessage(id: String) async throws -> Bool {
        try await store.delete(id: id, on: group.next()).get()
    }

    /// Sends a MESSAGE from the server to a user (like Kamailio's uac_req_send): delivered now to
    /// every device when the user is registered, stored otherwise. Returns the final status.
    public func sendMessage(from sender: String, to aor: String, contentType: String = "text/plain",
                            body: [UInt8]) async throws -> Int {
        let now = Self.nowMilliseconds()
        let message = StoredMessage(recipient: aor, from: "<" + sender + ">;tag=" + SIPIdentifiers.tag(), to: "<" + aor + ">",
                                    callID: SIPIdentifiers.callID(), date: HTTPDate.now(), contentType: contentType, body: body,
                                    storedAt: now, expiresAt: now + configuration.maxAgeSeconds * 1000)
        let loop = group.next()
        let bindings = location.bindings(for: aor)
        if !bindings.isEmpty {
            let promise = loop.makePromise(of: Bool.self)
            send(message, to: bindings, on: loop) { promise.succeed($0) }
            if try await promise.futureResult.get() { return 200 }
        }
        guard try await store.store(message, limit: configuration.maxPerUser, on: loop).get() else {
            return configuration.overLimitStatus.code
        }
        waiting.withLockedValue { _ = $0.insert(aor) }
        publish(.stored, message)
        return 202
    }
}
