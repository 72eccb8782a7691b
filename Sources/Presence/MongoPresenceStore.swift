import Foundation
public import Logging
public import MongoSupport
public import NIOCore

/// Presence state in MongoDB (collections `presence_publications`, `presence_subscriptions`,
/// `presence_decisions`), write-behind. Each document keeps its fields as JSON next to the keys a
/// query needs; TTL indexes on `expires_at` remove what lapsed.
public final class MongoPresenceStore: PresenceStore {
    static let publications = "presence_publications"
    static let subscriptions = "presence_subscriptions"
    static let decisions = "presence_decisions"

    private let database: MongoDatabase
    private let writer: MongoWriteBehind

    public init(database: MongoDatabase, loop: any EventLoop, logger: Logger) {
        self.database = database
        self.writer = MongoWriteBehind(database: database, loop: loop, logger: logger)
    }

    public func prepare() async throws {
        try await database.perform { session in
            for collection in [Self.publications, Self.subscriptions] {
                try session.createIndexes(collection, [
                    ["key": .document(["expires_at": .int32(1)]), "name": .string("expires_at_ttl"), "expireAfterSeconds": .int32(0)],
                ])
            }
        }
    }

    private static func encoded(_ value: some Encodable) -> BSONValue {
        .binary((try? JSONEncoder().encode(value)).map { Array($0) } ?? [])
    }

    public func save(_ publication: StoredPublication) {
        let id = publication.presentity + "\n" + publication.id
        writer.enqueue(Self.publications, id: id, .replace([
            "_id": .string(id), "presentity": .string(publication.presentity), "expires_at": .date(publication.expiresAt),
            "data": Self.encoded(publication),
        ]))
    }

    public func deletePublication(presentity: String, id: String) {
        let key = presentity + "\n" + id
        writer.enqueue(Self.publications, id: key, .delete(["_id": .string(key)]))
    }

    public func save(_ subscription: StoredSubscription) {
        writer.enqueue(Self.subscriptions, id: subscription.id, .replace([
            "_id": .string(subscription.id), "presentity": .string(subscription.presentity),
            "expires_at": .date(subscription.expiresAt), "data": Self.encoded(subscription),
        ]))
    }

    public func deleteSubscription(id: String) {
        writer.enqueue(Self.subscriptions, id: id, .delete(["_id": .string(id)]))
    }

    public func saveDecision(presentity: String, watcher: String, decision: String?) {
        let key = presentity + "\n" + watcher
        if let decision {
            writer.enqueue(Self.decisions, id: key, .replace([
                "_id": .string(key), "presentity": .string(presentity),
                "data": Self.encoded(StoredDecision(presentity: presentity, watcher: watcher, decision: decision)),
            ]))
        } else {
            writer.enqueue(Self.decisions, id: key, .delete(["_id": .string(key)]))
        }
    }

    public func load(now: Int64) async throws -> PresenceSnapshot {
        try await flush()
        return try await database.perform { session in
            let decoder = JSONDecoder()
            func documents<T: Decodable>(_ collection: String, _ filter: BSONDocument, _ type: T.Type) throws -> [T] {
                try session.find(collection, filter: filter).compactMap { document in
                    guard let bytes = document["data"]?.binary else { return nil }
                    return try? decoder.decode(type, from: Data(bytes))
                }
            }
            let valid: BSONDocument = ["expires_at": .document(["$gt": .date(now)])]
            var snapshot = PresenceSnapshot()
            snapshot.publications = try documents(Self.publications, valid, StoredPublication.self)
            snapshot.subscriptions = try documents(Self.subscriptions, valid, StoredSubscription.self)
            snapshot.decisions = try documents(Self.decisions, [:], StoredDecision.self)
            return snapshot
        }
    }

    public func flush() async throws {
        try await writer.flush()
    }
}
