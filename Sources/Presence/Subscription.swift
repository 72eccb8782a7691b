import CoreProxy
import NIOConcurrencyHelpers
import NIOCore
import SIP

/// One subscription (RFC 6665): the dialog Tern holds as notifier, and the NOTIFY queue that keeps
/// each watcher's NOTIFYs in CSeq order, one in flight at a time, coalesced while throttled.
final class Subscription: Sendable {
    enum Package: String, Sendable {
        case presence
        case watcherInfo = "presence.winfo"
    }

    enum Authorization: Sendable, Equatable {
        case active
        case pending
        /// Accepted, but shown a closed presentity (RFC 3856 §5.1.1 "polite blocking").
        case politelyBlocked
    }

    /// The dialog (RFC 3261 §12.1.1, from the notifier's side).
    struct Dialog: Sendable {
        var callID: String
        var localTag: String
        var remoteTag: String
        /// The To of the SUBSCRIBE: our From in NOTIFYs (the tag is added when sending).
        var localURI: String
        /// The From of the SUBSCRIBE, tag included: our To in NOTIFYs.
        var remoteURI: String
        var remoteTarget: SIPURI
        var routeSet: [String]
        var flow: (flow: SIPFlow, transport: SIPTransportProtocol)?
        /// The Event header value, `id` parameter included (RFC 6665 §8.2.1).
        var event: String
        var contact: String
    }

    struct State: Sendable {
        var dialog: Dialog
        var localCSeq: UInt32 = 0
        var remoteCSeq: UInt32
        var expiresAt: Int64
        var authorization: Authorization
        var acceptsGzip: Bool
        /// RFC 5263: the subscriber takes `application/pidf-diff+xml`; the document it has and the
        /// version of the last partial-state NOTIFY.
        var acceptsDiff = false
        var sentDocument: PIDFDocument?
        var diffVersion = 0
        var minInterval: TimeAmount
        /// RFC 5839: the entity tag last sent, and the one a refresh said the subscriber has.
        var lastETag: String?
        var suppressIfMatch: String?
        var inFlight = false
        var dirty = false
        var critical = false
        var scheduled = false
        var nextAllowed = NIODeadline.uptimeNanoseconds(0)
        var failures = 0
        /// Set when the subscription ends: the reason goes into the last NOTIFY.
        var terminationReason: String?
        var finalSent = false
        var watcherInfoVersion = 0
        var watcherInfoNeedsFull = true
        var watcherInfoChanges: [WatcherInfo] = []
        var createdAt: Int64
    }

    let id: String
    let package: Package
    let presentity: String
    let watcher: String
    let loop: any EventLoop
    let state: NIOLockedValueBox<State>

    init(id: String, package: Package, presentity: String, watcher: String, loop: any EventLoop, state: State) {
        self.id = id
        self.package = package
        self.presentity = presentity
        self.watcher = watcher
        self.loop = loop
        self.state = NIOLockedValueBox(state)
    }

    /// Whether the subscription lapsed before `now` (Unix milliseconds) and has not ended already.
    func hasLapsed(at now: Int64) -> Bool {
        state.withLockedValue { $0.terminationReason == nil && $0.expiresAt <= now }
    }

    /// The key of a dialog: Call-ID and both tags.
    static func key(callID: String, localTag: String, remoteTag: String) -> String {
        callID + "\u{0}" + localTag + "\u{0}" + remoteTag
    }

    /// RFC 6446: the subscriber's `throttle` (seconds between NOTIFYs) or `max-rate` (NOTIFYs per
    /// second), whichever asks for more spacing, and never less than the server's own interval.
    static func interval(event: SIPEvent, serverMinimum: TimeAmount) -> TimeAmount {
        var interval = serverMinimum
        if let throttle = event.parameters.unquoted("throttle").flatMap(Double.init), throttle > 0 {
            interval = max(interval, .nanoseconds(Int64(min(throttle, 86_400) * 1_000_000_000)))
        }
        if let rate = event.parameters.unquoted("max-rate").flatMap(Double.init), rate > 0 {
            interval = max(interval, .nanoseconds(Int64(1_000_000_000 / rate)))
        }
        return interval
    }
}
