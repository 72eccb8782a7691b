import NIOConcurrencyHelpers
import Foundation

/// Named tables of values with a per-entry expiry (Kamailio's htable): routing rules read them,
/// the management API reads and writes them, and the authenticator remembers trusted connections
/// in one.
public final class SharedCache: Sendable {
    public struct Entry: Sendable, Hashable {
        public var value: String
        /// Unix milliseconds; nil never expires.
        public var expiresAt: Int64?
    }

    /// Each table: its entries and the lifetime new entries get when none is given.
    private struct Table {
        var entries: [String: Entry] = [:]
        var defaultLifetime: Int64?
        var writes = 0
    }

    private let tables = NIOLockedValueBox<[String: Table]>([:])

    public init() {}

    /// Creates (or keeps) a table; `defaultLifetimeSeconds` applies to entries set without one.
    public func declare(_ name: String, defaultLifetimeSeconds: Int64? = nil) {
        tables.withLockedValue { tables in
            var table = tables[name] ?? Table()
            table.defaultLifetime = defaultLifetimeSeconds
            tables[name] = table
        }
    }

    public var tableNames: [String] { tables.withLockedValue { $0.keys.sorted() } }

    public func get(_ table: String, _ key: String, now: Int64 = SharedCache.now()) -> String? {
        tables.withLockedValue { tables -> String? in
            guard let entry = tables[table]?.entries[key] else { return nil }
            if let expiry = entry.expiresAt, expiry <= now {
                tables[table]?.entries[key] = nil
                return nil
            }
            return entry.value
        }
    }

    /// Sets a value; false when the table was never declared.
    @discardableResult
    public func set(_ table: String, _ key: String, _ value: String, lifetimeSeconds: Int64? = nil, now: Int64 = SharedCache.now()) -> Bool {
        tables.withLockedValue { tables -> Bool in
            guard var entries = tables[table] else { return false }
            let lifetime = lifetimeSeconds ?? entries.defaultLifetime
            entries.entries[key] = Entry(value: value, expiresAt: lifetime.map { now + $0 * 1000 })
            entries.writes += 1
            // Now and then, what lapsed goes, so an unread table does not grow without bound.
            if entries.writes % 1024 == 0 { entries.entries = entries.entries.filter { $0.value.expiresAt.map { $0 > now } ?? true } }
            tables[table] = entries
            return true
        }
    }

    @discardableResult
    public func delete(_ table: String, _ key: String) -> Bool {
        tables.withLockedValue { $0[table]?.entries.removeValue(forKey: key) != nil }
    }

    /// Removes every key that starts with `prefix`.
    public func delete(_ table: String, keysWithPrefix prefix: String) {
        tables.withLockedValue { tables in
            guard var entries = tables[table] else { return }
            entries.entries = entries.entries.filter { !$0.key.hasPrefix(prefix) }
            tables[table] = entries
        }
    }

    /// The live entries of a table, sorted by key; nil when the table was never declared.
    public func dump(_ table: String, now: Int64 = SharedCache.now()) -> [(key: String, entry: Entry)]? {
        tables.withLockedValue { tables in
            tables[table].map { $0.entries.filter { $0.value.expiresAt.map { $0 > now } ?? true }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
        }
    }

    public static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
