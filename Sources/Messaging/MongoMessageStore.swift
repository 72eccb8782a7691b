public import MongoSupport
public import NIOCore

/// Offline messages in a MongoDB collection (msilo-style), shared by every node that uses it.
/// Inserts are journaled before they are acknowledged. A TTL index on `expires_at` removes what
/// lapses even when no node sweeps; nodes also sweep, so that each expiry becomes an event.
public final class MongoMessageStore: MessageStore {
    private let database: MongoDatabase
    public let collection: String

    public init(database: MongoDatabase, collection: String = "messages") {
        self.database = database
        self.collection = collection
    }

    public var isShared: Bool { true }

    public func prepare() async throws {
        try await database.perform { [collection] session in
            try session.createIndexes(collection, [
                ["key": .document(["recipient": .int32(1), "_id": .int32(1)]), "name": .string("recipient_order")],
                ["key": .document(["expires_at": .int32(1)]), "name": .string("expires_at_ttl"), "expireAfterSeconds": .int32(0)],
            ])
        }
    }

    public func store(_ message: StoredMessage, limit: Int, on loop: any EventLoop) -> EventLoopFuture<Bool> {
        // Count then insert is not atomic across nodes: concurrent messages may pass the limit by
        // as many as are in flight at once. Nothing already stored is ever dropped for the limit.
        database.perform(on: loop) { [collection] session in
            guard try session.count(collection, filter: ["recipient": .string(message.recipient)]) < Int64(limit) else { return false }
            try session.insert(collection, Self.document(message), journaled: true)
            return true
        }
    }

    public func pending(for recipient: String, now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]> {
        database.perform(on: loop) { [collection] session in
            try session.find(collection, filter: ["recipient": .string(recipient), "expires_at": .document(["$gt": .date(now)])],
                             sort: ["_id": .int32(1)], limit: limit).compactMap(Self.message(from:))
        }
    }

    public func delete(id: String, on loop: any EventLoop) -> EventLoopFuture<Bool> {
        database.perform(on: loop) { [collection] session in
            try session.delete(collection, filter: ["_id": .string(id)], many: false) > 0
        }
    }

    public func recordAttempt(id: String, on loop: any EventLoop) -> EventLoopFuture<Void> {
        database.perform(on: loop) { [collection] session in
            try session.bulkWrite(collection, [.updateOne(filter: ["_id": .string(id)],
                                                         update: ["$inc": .document(["attempts": .int32(1)])], upsert: false)])
        }
    }

    public func removeExpired(now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]> {
        database.perform(on: loop) { [collection] session in
            let lapsed = try session.find(collection, filter: ["expires_at": .document(["$lte": .date(now)])],
                                          sort: ["_id": .int32(1)], limit: limit).compactMap(Self.message(from:))
            // Only what this call deleted is reported: another node (or the TTL monitor) may race it.
            var removed: [StoredMessage] = []
            for message in lapsed where try session.delete(collection, filter: ["_id": .string(message.id)], many: false) > 0 {
                removed.append(message)
            }
            return removed
        }
    }

    public func recipients(on loop: any EventLoop) -> EventLoopFuture<[String]> {
        database.perform(on: loop) { [collection] session in
            let reply = try session.command(["distinct": .string(collection), "key": .string("recipient")])
            return reply["values"]?.array?.compactMap(\.string) ?? []
        }
    }

    static func document(_ message: StoredMessage) -> BSONDocument {
        var document: BSONDocument = [
            "_id": .string(message.id), "recipient": .string(message.recipient), "from": .string(message.from),
            "to": .string(message.to), "call_id": .string(message.callID), "date": .string(message.date),
            "content_type": .string(message.contentType), "body": .binary(message.body),
            "stored_at": .date(message.storedAt), "expires_at": .date(message.expiresAt), "attempts": .int32(Int32(clamping: message.attempts)),
        ]
        if let encoding = message.contentEncoding { document["content_encoding"] = .string(encoding) }
        return document
    }

    static func message(from document: BSONDocument) -> StoredMessage? {
        guard let id = document["_id"]?.string, let recipient = document["recipient"]?.string,
              let from = document["from"]?.string, let to = document["to"]?.string, let callID = document["call_id"]?.string,
              let date = document["date"]?.string, let contentType = document["content_type"]?.string,
              let storedAt = document["stored_at"]?.int64, let expiresAt = document["expires_at"]?.int64
        else { return nil }
        return StoredMessage(id: id, recipient: recipient, from: from, to: to, callID: callID, date: date, contentType: contentType,
                             contentEncoding: document["content_encoding"]?.string, body: document["body"]?.binary ?? [],
                             storedAt: storedAt, expiresAt: expiresAt, attempts: Int(document["attempts"]?.int64 ?? 0))
    }
}
