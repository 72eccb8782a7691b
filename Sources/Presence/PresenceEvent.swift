/// What changes in presence, for the event bus and operators.
public struct PresenceEvent: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// The composed state of a presentity changed (`presence.updated`).
        case updated = "presence.updated"
        case subscriptionCreated = "subscription.created"
        case subscriptionUpdated = "subscription.updated"
        case subscriptionTerminated = "subscription.terminated"
        /// A watcher waits for the presentity's (or an operator's) decision (`watcher.pending`).
        case watcherPending = "watcher.pending"
    }

    public var kind: Kind
    public var presentity: String
    /// The watcher's AOR for subscription events.
    public var watcher: String?
    /// `presence` or `presence.winfo`.
    public var package: String?
    /// For terminations: timeout, rejected, deactivated, noresource, giveup.
    public var reason: String?
    /// Whether any tuple is open (for `presence.updated`).
    public var open: Bool?
}

/// Receives presence events, on whatever thread made them. Must not block.
public protocol PresenceObserver: AnyObject, Sendable {
    func presenceEvent(_ event: PresenceEvent)
}
