public import Logging
public import NIOCore
public import SQLiteSupport

/// Offline messages in the embedded SQLite file: the default, so `tern` needs no MongoDB. Writes
/// are synchronous (not write-behind): a message is committed, with `synchronous=FULL`, before
/// the caller answers 202.
public final class SQLiteMessageStore: MessageStore {
    private let writer: SQLiteWriter

    public static let schema = [
        // A stored message is a promise: commit it to the disk, not only to the WAL in memory.
        "PRAGMA synchronous=FULL",
        """
        CREATE TABLE IF NOT EXISTS messages (
            id TEXT PRIMARY KEY,
            recipient TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient_header TEXT NOT NULL,
            call_id TEXT NOT NULL,
            date TEXT NOT NULL,
            content_type TEXT NOT NULL,
            content_encoding TEXT,
            body BLOB NOT NULL,
            stored_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX IF NOT EXISTS messages_recipient ON messages (recipient, id)",
        "CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires_at)",
    ]

    static let columns = "id, recipient, sender, recipient_header, call_id, date, content_type, content_encoding, body, "
        + "stored_at, expires_at, attempts"

    public init(writer: SQLiteWriter) {
        self.writer = writer
    }

    /// Opens (or creates) the file at `path` with its own connection and thread.
    public static func open(path: String, logger: Logger, group: any EventLoopGroup) async throws -> SQLiteMessageStore {
        SQLiteMessageStore(writer: try await SQLiteWriter(path: path, schema: schema, logger: logger, group: group))
    }

    public var isShared: Bool { false }

    public func prepare() async throws {}

    public func store(_ message: StoredMessage, limit: Int, on loop: any EventLoop) -> EventLoopFuture<Bool> {
        writer.perform(on: loop) { db in
            try db.transaction { () throws(SQLiteDatabase.Error) -> Bool in
                let count = try db.query("SELECT count(*) FROM messages WHERE recipient = ?", [.text(message.recipient)])
                    .first?.first?.integer ?? 0
                guard count < Int64(limit) else { return false }
                try db.query("INSERT INTO messages (" + Self.columns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    .text(message.id), .text(message.recipient), .text(message.from), .text(message.to), .text(message.callID),
                    .text(message.date), .text(message.contentType), message.contentEncoding.map { .text($0) } ?? .null,
                    .blob(message.body), .integer(message.storedAt), .integer(message.expiresAt), .integer(Int64(message.attempts)),
                ])
                return true
            }
        }
    }

    public func pending(for recipient: String, now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]> {
        writer.perform(on: loop) { db in
            try db.query("SELECT " + Self.columns + " FROM messages WHERE recipient = ? AND expires_at > ? ORDER BY id LIMIT ?",
                         [.text(recipient), .integer(now), .integer(Int64(limit))]).compactMap(Self.message(from:))
        }
    }

    public func delete(id: String, on loop: any EventLoop) -> EventLoopFuture<Bool> {
        writer.perform(on: loop) { db in
            try db.query("DELETE FROM messages WHERE id = ?", [.text(id)])
            return db.changes > 0
        }
    }

    public func recordAttempt(id: String, on loop: any EventLoop) -> EventLoopFuture<Void> {
        writer.perform(on: loop) { db in
            try db.query("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", [.text(id)])
        }
    }

    public func removeExpired(now: Int64, limit: Int, on loop: any EventLoop) -> EventLoopFuture<[StoredMessage]> {
        writer.perform(on: loop) { db in
            try db.transaction { () throws(SQLiteDatabase.Error) -> [StoredMessage] in
                let lapsed = try db.query("SELECT " + Self.columns + " FROM messages WHERE expires_at <= ? ORDER BY id LIMIT ?",
                                          [.integer(now), .integer(Int64(limit))]).compactMap(Self.message(from:))
                for message in lapsed { try db.query("DELETE FROM messages WHERE id = ?", [.text(message.id)]) }
                return lapsed
            }
        }
    }

    public func recipients(on loop: any EventLoop) -> EventLoopFuture<[String]> {
        writer.perform(on: loop) { db in
            try db.query("SELECT DISTINCT recipient FROM messages").compactMap { $0.first?.text }
        }
    }

    public func close() async {
        await writer.shutdown()
    }

    static func message(from row: [SQLiteDatabase.Value]) -> StoredMessage? {
        guard row.count == 12, let id = row[0].text, let recipient = row[1].text, let from = row[2].text, let to = row[3].text,
              let callID = row[4].text, let date = row[5].text, let contentType = row[6].text,
              let storedAt = row[9].integer, let expiresAt = row[10].integer
        else { return nil }
        let body: [UInt8]
        switch row[8] {
        case .blob(let bytes): body = bytes
        case .text(let text): body = Array(text.utf8)
        default: body = []
        }
        return StoredMessage(id: id, recipient: recipient, from: from, to: to, callID: callID, date: date, contentType: contentType,
                             contentEncoding: row[7].text, body: body, storedAt: storedAt, expiresAt: expiresAt,
                             attempts: Int(row[11].integer ?? 0))
    }
}
