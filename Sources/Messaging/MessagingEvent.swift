/// What happens to offline messages, for the event bus and for operators. Bodies stay out.
public struct MessagingEvent: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Kept for an offline user; the sender got 202.
        case stored
        /// A device answered 2xx; the message is gone from the store.
        case delivered
        /// Lapsed before delivery.
        case expired
        /// A delivery attempt did not end in a 2xx; the message stays.
        case failed
    }

    public var kind: Kind
    public var messageID: String
    public var sender: String
    public var recipient: String
    /// Unix milliseconds of the event, and of the storage.
    public var time: Int64
    public var storedAt: Int64
    public var attempts: Int
    /// The IMS charging identifier of the MESSAGE that was stored (on `stored` only).
    public var icid: String? = nil
}

/// Receives messaging events, on whatever thread made them. Must not block.
public protocol MessagingObserver: AnyObject, Sendable {
    func messagingEvent(_ event: MessagingEvent)
}
