public import NIOCore

/// Where offline messages wait (MongoDB, or the embedded SQLite file). Every call runs on the
/// store's own threads and completes on the event loop given.
public protocol MessageStore: Sendable {
    /// Whether other nodes store into it too (then this node cannot know every recipient with
    /// messages waiting, and asks the store when a user registers).
    var isShared: Bool { get }
    /// Creates tables, collections and indexes.
    func prepare() async throws
    /// Stores `message` unless its recipient already has `limit` waiting. Completes only once the
    /// write is durable (the caller answers 202 after it): true when stored, false when over the limit.
    func store(_ message: StoredMessage, limit: Int, on loop: any EventLoop) -> EventLoopFuture<Bool>
    /// The recipient's unexpired messages, oldest first, at most `limit`.
    func pending(for recipient: String, now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]>
    /// Removes a message (it was delivered, or an operator deleted it); true when it existed.
    func delete(id: String, on loop: any EventLoop) -> EventLoopFuture<Bool>
    /// Counts a failed delivery attempt.
    func recordAttempt(id: String, on loop: any EventLoop) -> EventLoopFuture<Void>
    /// Removes messages lapsed at `now` and returns them (for events and reports to senders).
    func removeExpired(now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]>
    /// Recipients with at least one message waiting (to know whom a registration should wake).
    func recipients(on loop: any EventLoop) -> EventLoopFuture<[String]>
}
