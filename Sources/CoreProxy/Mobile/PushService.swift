public import NIOCore
import NIOConcurrencyHelpers
public import Logging
import Metrics

/// Why a device is being woken.
public enum PushReason: String, Sendable {
    /// A call (INVITE) waits for it.
    case call
    /// A MESSAGE or other request waits for it.
    case message
    /// A message was stored for it (offline messaging).
    case storedMessage = "stored_message"
}

/// One push notification to one device.
public struct PushRequest: Sendable {
    public var id: String
    public var aor: String
    public var contact: PushContact
    public var reason: PushReason
    /// Of the request that waits (empty for a stored message).
    public var callID: String
    public var from: String

    public init(id: String, aor: String, contact: PushContact, reason: PushReason, callID: String, from: String) {
        self.id = id
        self.aor = aor
        self.contact = contact
        self.reason = reason
        self.callID = callID
        self.from = from
    }
}

/// Delivers a push to the service that wakes the device (an HTTP push gateway).
public protocol PushGateway: Sendable {
    /// Returns when the gateway accepted the push; throws when it refused or could not be reached.
    func send(_ push: PushRequest) async throws
}

/// What happened to a push, for the event bus.
public struct PushEvent: Sendable {
    public enum Kind: String, Sendable {
        case requested, sent, failed
    }

    public var kind: Kind
    public var push: PushRequest
    /// Attempts made so far.
    public var attempts: Int
    /// Why the last attempt failed.
    public var error: String?
}

public protocol PushObserver: AnyObject, Sendable {
    func pushEvent(_ event: PushEvent)
}

/// Sends push notifications without ever blocking a caller: each runs in its own task, retried with
/// back-off; how many run at once is bounded, and every failure and refusal is counted.
public final class PushService: Sendable {
    public struct Configuration: Sendable {
        /// Values of pn-provider this server wakes devices through (RFC 8599 §5.6.1); others get 555.
        public var providers: Set<String>
        /// Attempts after the first (default 3).
        public var retries: Int
        /// Delay before the first retry; doubles each time (default 500 ms).
        public var retryDelay: TimeAmount
        /// Pushes in flight at once; beyond, new ones fail at once (default 1,000).
        public var maxInFlight: Int
        /// `+sip.pnsreg` offered to devices that ask (RFC 8599 §8.4): re-register this many seconds before expiry.
        public var registrationMargin: Int

        public init(providers: Set<String> = ["apns", "fcm", "webpush"], retries: Int = 3, retryDelay: TimeAmount = .milliseconds(500),
                    maxInFlight: Int = 1_000, registrationMargin: Int = 130) {
            self.providers = providers
            self.retries = retries
            self.retryDelay = retryDelay
            self.maxInFlight = maxInFlight
            self.registrationMargin = registrationMargin
        }
    }

    public let configuration: Configuration
    private let gateway: (any PushGateway)?
    private let logger: Logger
    private let inFlight = NIOLockedValueBox(0)
    private let observers = NIOLockedValueBox<[any PushObserver]>([])
    private let counter = NIOLockedValueBox<UInt64>(0)
    private let requestedCount = Counter(label: "tern.push.requested")
    private let sentCount = Counter(label: "tern.push.sent")
    private let failedCount = Counter(label: "tern.push.failed")
    private let retriedCount = Counter(label: "tern.push.retried")
    private let refusedCount = Counter(label: "tern.push.refused_in_flight_limit")

    /// - Parameter gateway: nil sends nothing over HTTP: the `push.requested` event is the push.
    public init(configuration: Configuration, gateway: (any PushGateway)?, logger: Logger) {
        self.configuration = configuration
        self.gateway = gateway
        self.logger = logger
    }

    public func addObserver(_ observer: any PushObserver) {
        observers.withLockedValue { $0.append(observer) }
    }

    public func supports(provider: String) -> Bool {
        configuration.providers.contains(provider.lowercased())
    }

    /// Wakes the device; `completion(true)` once the push is out (or handed to the event bus when
    /// there is no gateway), `false` when it failed for good. Never blocks.
    public func wake(aor: String, contact: PushContact, reason: PushReason, callID: String = "", from: String = "",
                     completion: (@Sendable (Bool) -> Void)? = nil) {
        let number = counter.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        let push = PushRequest(id: "push-" + String(number), aor: aor, contact: contact, reason: reason, callID: callID, from: from)
        requestedCount.increment()
        report(PushEvent(kind: .requested, push: push, attempts: 0))
        guard let gateway else {
            completion?(true)
            return
        }
        let admitted = inFlight.withLockedValue { count -> Bool in
            guard count < configuration.maxInFlight else { return false }
            count += 1
            return true
        }
        guard admitted else {
            refusedCount.increment()
            failedCount.increment()
            logger.warning("push refused: too many in flight", metadata: ["aor": "\(aor)"])
            report(PushEvent(kind: .failed, push: push, attempts: 0, error: "too many pushes in flight"))
            completion?(false)
            return
        }
        Task { [self] in
            let delivered = await deliver(push, through: gateway)
            inFlight.withLockedValue { $0 -= 1 }
            completion?(delivered)
        }
    }

    private func deliver(_ push: PushRequest, through gateway: any PushGateway) async -> Bool {
        var delay = configuration.retryDelay
        var lastError = ""
        for attempt in 1...(configuration.retries + 1) {
            do {
                try await gateway.send(push)
                sentCount.increment()
                report(PushEvent(kind: .sent, push: push, attempts: attempt))
                return true
            } catch {
                lastError = String(describing: error)
                guard attempt <= configuration.retries else { break }
                retriedCount.increment()
                try? await Task.sleep(nanoseconds: UInt64(max(0, delay.nanoseconds)))
                delay = delay * 2
            }
        }
        failedCount.increment()
        logger.warning("push failed", metadata: ["aor": "\(push.aor)", "provider": "\(push.contact.provider)", "error": "\(lastError)"])
        report(PushEvent(kind: .failed, push: push, attempts: configuration.retries + 1, error: lastError))
        return false
    }

    private func report(_ event: PushEvent) {
        for observer in observers.withLockedValue({ $0 }) { observer.pushEvent(event) }
    }
}
