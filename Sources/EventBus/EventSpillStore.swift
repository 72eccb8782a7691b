public import Logging
public import NIOCore
import SQLiteSupport

/// Where events go when the outbox is full and its policy is `spill`: a table in an SQLite file of
/// their own, oldest first. Writes are write-behind on the database's thread (SIP event loops never
/// wait); the publisher thread reads the oldest back as the outbox empties and deletes what it
/// read. Events left in it when Tern stops are published after the next start.
public final class EventSpillStore: Sendable {
    private let writer: SQLiteWriter
    private let loop: any EventLoop
    private let logger: Logger
    /// Events already in the file when it was opened.
    public let initialCount: Int

    private static let schema = [
        "CREATE TABLE IF NOT EXISTS event_spill (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, type TEXT NOT NULL, "
            + "time INTEGER NOT NULL, payload TEXT NOT NULL)",
    ]

    private init(writer: SQLiteWriter, loop: any EventLoop, logger: Logger, initialCount: Int) {
        self.writer = writer
        self.loop = loop
        self.logger = logger
        self.initialCount = initialCount
    }

    /// - Parameter maxPending: spilled events waiting to be written at most; beyond, they are dropped (and counted).
    public static func open(path: String, maxPending: Int = 100_000, logger: Logger, group: any EventLoopGroup) async throws -> EventSpillStore {
        let writer = try await SQLiteWriter(path: path, schema: schema, maxPending: maxPending, logger: logger, group: group)
        let count = try await writer.perform { db in try db.query("SELECT COUNT(*) FROM event_spill").first?.first?.integer ?? 0 }
        if count > 0 { logger.notice("events from an earlier run wait to be published", metadata: ["count": "\(count)"]) }
        return EventSpillStore(writer: writer, loop: group.next(), logger: logger, initialCount: Int(count))
    }

    /// Queues the event for writing; false when the write queue is full.
    func append(_ event: TernEvent) -> Bool {
        let payload = event.payloadJSON
        return writer.enqueue(key: event.id) { db throws(SQLiteDatabase.Error) in
            try db.query("INSERT INTO event_spill (id, type, time, payload) VALUES (?, ?, ?, ?)",
                         [.text(event.id), .text(event.type), .integer(event.time), .text(payload)])
        }
    }

    /// The oldest `max` events, deleted from the file (blocks: the publisher thread only).
    func takeOldest(max: Int) -> [TernEvent] {
        let rows: [[SQLiteDatabase.Value]]
        do {
            rows = try writer.perform(on: loop) { db in
                try db.transaction { () throws(SQLiteDatabase.Error) -> [[SQLiteDatabase.Value]] in
                    let rows = try db.query("SELECT seq, id, type, time, payload FROM event_spill ORDER BY seq LIMIT ?", [.integer(Int64(max))])
                    if let last = rows.last?.first?.integer {
                        try db.query("DELETE FROM event_spill WHERE seq <= ?", [.integer(last)])
                    }
                    return rows
                }
            }.wait()
        } catch {
            logger.error("spilled events not read", metadata: ["error": "\(error)"])
            return []
        }
        return rows.compactMap { row -> TernEvent? in
            guard row.count == 5, let id = row[1].text, let type = row[2].text, let time = row[3].integer, let text = row[4].text,
                  case .object(let payload)? = try? JSONValue.parse(Array(text.utf8)) else { return nil }
            return TernEvent(type: type, payload: payload, id: id, time: time)
        }
    }

    public func close() async {
        await writer.shutdown()
    }
}
