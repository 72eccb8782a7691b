import Foundation
public import Logging
public import NIOCore
public import SQLiteSupport

/// Presence state in the embedded SQLite file, one row per publication, subscription and decision,
/// each a JSON document (presence changes far less often than it is read: NOTIFYs write nothing).
public final class SQLitePresenceStore: PresenceStore {
    private let writer: SQLiteWriter

    public static let schema = [
        "CREATE TABLE IF NOT EXISTS presence_publications (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS presence_subscriptions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS presence_decisions (id TEXT PRIMARY KEY, data BLOB NOT NULL)",
    ]

    public init(writer: SQLiteWriter) {
        self.writer = writer
    }

    public static func open(path: String, logger: Logger, group: any EventLoopGroup) async throws -> SQLitePresenceStore {
        SQLitePresenceStore(writer: try await SQLiteWriter(path: path, schema: schema, logger: logger, group: group))
    }

    private static func encoded(_ value: some Encodable) -> [UInt8] {
        (try? JSONEncoder().encode(value)).map { Array($0) } ?? []
    }

    public func save(_ publication: StoredPublication) {
        let key = publication.presentity + "\n" + publication.id
        let data = Self.encoded(publication)
        writer.enqueue(key: "pub:" + key) { db throws(SQLiteDatabase.Error) in
            try db.query("INSERT OR REPLACE INTO presence_publications (id, expires_at, data) VALUES (?, ?, ?)",
                         [.text(key), .integer(publication.expiresAt), .blob(data)])
        }
    }

    public func deletePublication(presentity: String, id: String) {
        let key = presentity + "\n" + id
        writer.enqueue(key: "pub:" + key) { db throws(SQLiteDatabase.Error) in
            try db.query("DELETE FROM presence_publications WHERE id = ?", [.text(key)])
        }
    }

    public func save(_ subscription: StoredSubscription) {
        let data = Self.encoded(subscription)
        writer.enqueue(key: "sub:" + subscription.id) { db throws(SQLiteDatabase.Error) in
            try db.query("INSERT OR REPLACE INTO presence_subscriptions (id, expires_at, data) VALUES (?, ?, ?)",
                         [.text(subscription.id), .integer(subscription.expiresAt), .blob(data)])
        }
    }

    public func deleteSubscription(id: String) {
        writer.enqueue(key: "sub:" + id) { db throws(SQLiteDatabase.Error) in
            try db.query("DELETE FROM presence_subscriptions WHERE id = ?", [.text(id)])
        }
    }

    public func saveDecision(presentity: String, watcher: String, decision: String?) {
        let key = presentity + "\n" + watcher
        let data = decision.map { Self.encoded(StoredDecision(presentity: presentity, watcher: watcher, decision: $0)) }
        writer.enqueue(key: "dec:" + key) { db throws(SQLiteDatabase.Error) in
            if let data {
                try db.query("INSERT OR REPLACE INTO presence_decisions (id, data) VALUES (?, ?)", [.text(key), .blob(data)])
            } else {
                try db.query("DELETE FROM presence_decisions WHERE id = ?", [.text(key)])
            }
        }
    }

    public func load(now: Int64) async throws -> PresenceSnapshot {
        try await writer.perform { db in
            try db.query("DELETE FROM presence_publications WHERE expires_at <= ?", [.integer(now)])
            try db.query("DELETE FROM presence_subscriptions WHERE expires_at <= ?", [.integer(now)])
            var snapshot = PresenceSnapshot()
            let decoder = JSONDecoder()
            func rows<T: Decodable>(_ sql: String, _ type: T.Type) throws -> [T] {
                try db.query(sql).compactMap { row in
                    guard case .blob(let bytes) = row.first ?? .null else { return nil }
                    return try? decoder.decode(type, from: Data(bytes))
                }
            }
            snapshot.publications = try rows("SELECT data FROM presence_publications", StoredPublication.self)
            snapshot.subscriptions = try rows("SELECT data FROM presence_subscriptions", StoredSubscription.self)
            snapshot.decisions = try rows("SELECT data FROM presence_decisions", StoredDecision.self)
            return snapshot
        }
    }

    public func flush() async throws {
        try await writer.flush()
    }

    public func close() async {
        await writer.shutdown()
    }
}
