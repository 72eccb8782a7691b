public import CoreProxy
public import EventBus
public import Messaging
public import Presence
import Foundation
import NIOCore
import SIP

/// Turns what the modules report into bus events (docs/events.md): registrations from the location
/// service, calls the proxy routes, offline-message events, presence and subscription events. It only enqueues: the SIP
/// event loops never wait on the broker.
public final class EventBridge: LocationObserver, MessagingObserver, PresenceObserver, CallObserver, PushObserver, Sendable {
    private let outbox: EventOutbox

    public init(outbox: EventOutbox) {
        self.outbox = outbox
    }

    public func locationChanged(_ event: BindingEvent) {
        // The most frequent event: it keeps the binding (one reference, and a binding never changes
        // once shared), and the publisher writes the JSON. No tree of values, no buffer made here.
        outbox.enqueue(TernEvent(type: Self.registrationType(event.kind), deferred: RegistrationPayload(binding: event.binding)))
    }

    /// A registration event's payload (docs/events.md).
    struct RegistrationPayload: DeferredEventPayload {
        let binding: Binding

        func write(into payload: inout JSONObjectWriter) {
            payload.add("aor", binding.aor)
            payload.add("contact", binding.contactText)
            payload.add("expires_at", timestamp: binding.expiresAt)
            payload.add("transport", binding.transport.rawValue)
            payload.add("instance", binding.instanceID)
            payload.add("source", hostPort: binding.source)
            payload.add("user_agent", binding.userAgent)
        }
    }

    public func callEvent(_ event: CallEvent) {
        var payload: [(String, JSONValue)] = [("call_id", .string(event.callID)), ("from", .string(event.from)), ("to", .string(event.to))]
        if let uri = event.requestURI { payload.append(("request_uri", .string(uri))) }
        if let status = event.status { payload.append(("status", .int(Int64(status)))) }
        if let icid = event.icid { payload.append(("icid", .string(icid))) }
        outbox.enqueue(TernEvent(type: "call." + event.kind.rawValue, payload: payload))
    }

    /// Literals: no heap string to retain here and release on the publisher's thread, and no
    /// dictionary lookup (an enum with a String raw value hashes and compares that string).
    private static func registrationType(_ kind: BindingEvent.Kind) -> String {
        switch kind {
        case .added: "registration.added"
        case .refreshed: "registration.refreshed"
        case .removed: "registration.removed"
        case .expired: "registration.expired"
        }
    }

    public func pushEvent(_ event: PushEvent) {
        let push = event.push
        var payload: [(String, JSONValue)] = [
            ("push_id", .string(push.id)), ("aor", .string(push.aor)), ("provider", .string(push.contact.provider)),
            ("param", push.contact.param.map { .string($0) } ?? .null), ("prid", .string(push.contact.prid)),
            ("reason", .string(push.reason.rawValue)), ("call_id", .string(push.callID)), ("from", .string(push.from)),
            ("attempts", .int(Int64(event.attempts))),
        ]
        if let error = event.error { payload.append(("error", .string(error))) }
        outbox.enqueue(TernEvent(type: "push." + event.kind.rawValue, payload: payload))
    }

    public func messagingEvent(_ event: MessagingEvent) {
        var payload: [(String, JSONValue)] = [
            ("message_id", .string(event.messageID)), ("sender", .string(event.sender)), ("recipient", .string(event.recipient)),
            ("stored_at", .timestamp(event.storedAt)), ("attempts", .int(Int64(event.attempts))),
        ]
        if let icid = event.icid { payload.append(("icid", .string(icid))) }
        outbox.enqueue(TernEvent(type: "message." + event.kind.rawValue, payload: payload))
    }

    public func presenceEvent(_ event: PresenceEvent) {
        var payload: [(String, JSONValue)] = [("presentity", .string(event.presentity))]
        if let watcher = event.watcher { payload.append(("watcher", .string(watcher))) }
        if let package = event.package { payload.append(("package", .string(package))) }
        if let reason = event.reason { payload.append(("reason", .string(reason))) }
        if let open = event.open { payload.append(("open", .bool(open))) }
        outbox.enqueue(TernEvent(type: event.kind.rawValue, payload: payload))
    }
}

/// Starts the publisher and the command consumer with the server and stops them (after a short
/// drain) once SIP has drained.
final class EventBusFeature: ServerFeature {
    let publisher: AMQPPublisher
    let commands: AMQPCommandConsumer?

    init(publisher: AMQPPublisher, commands: AMQPCommandConsumer?) {
        self.publisher = publisher
        self.commands = commands
    }

    func start() {
        publisher.start()
        commands?.start()
    }

    func stop() async {
        // stop() blocks while it drains: not on a concurrency thread.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread { [publisher, commands] in
                commands?.stop()
                publisher.stop()
                continuation.resume()
            }
            thread.start()
        }
    }
}
