import CoreProxy
import EventBus
import Routing
import SIP
import NIOCore

/// The router's tables and the shared cache: explain a decision, reload the routing file, see the
/// dispatcher's destinations, read and write cache tables.
enum RoutingMethods {
    static func methods(_ router: Router?, reload: (@Sendable () async throws -> JSONValue)?, cache: SharedCache) -> [ManagementMethod] {
        [
            ManagementMethod("routing.explain", "Where a request would go and which rules decided, without sending it. "
                             + "request: its start line and headers as text.", parameters: ["request", "source"]) { params in
                let router = try ManagementError.available(router, "routing is off (routing.file)")
                let text = try params.string("request")
                let request = try parse(text)
                return encode(router.explain(request, source: try params.optionalString("source")))
            },
            ManagementMethod("routing.reload", "Reads the routing file again; when it is not valid, the tables in use stay and the "
                             + "error says why.", changesState: true) { _ in
                let reload = try ManagementError.available(reload, "routing is off (routing.file)")
                do {
                    return try await reload()
                } catch {
                    throw ManagementError.invalidParams("routing file not reloaded, the tables in use stay: \(error)")
                }
            },
            ManagementMethod("routing.destinations", "Every dispatcher set's destinations: up or down, requests in flight.") { _ in
                let router = try ManagementError.available(router, "routing is off (routing.file)")
                let sets = router.tables.dispatcherSets.sorted { $0.key < $1.key }
                return .object(sets.map { name, set in
                    (name, .object([
                        ("algorithm", .string(set.algorithm.rawValue)),
                        ("destinations", .array(set.destinations.map { destination in
                            .object([
                                ("uri", .string(destination.uri.description)), ("weight", .int(Int64(destination.weight))),
                                ("priority", .int(Int64(destination.priority))), ("up", .bool(!router.isDown(destination.uri))),
                                ("active", .int(Int64(router.activeRequests(destination.uri)))),
                            ])
                        })),
                    ]))
                })
            },
            ManagementMethod("htable.get", "One value of a shared cache table.", parameters: ["table", "key"]) { params in
                let table = try params.string("table"), key = try params.string("key")
                guard let value = cache.get(table, key) else { throw ManagementError.notFound("\(table) has no \(key)") }
                return .object([("table", .string(table)), ("key", .string(key)), ("value", .string(value))])
            },
            ManagementMethod("htable.set", "Sets a value in a shared cache table; lifetime in seconds (the table's default without one).",
                             parameters: ["table", "key", "value", "lifetime"], changesState: true) { params in
                let table = try params.string("table"), key = try params.string("key"), value = try params.string("value")
                let lifetime = try params.int("lifetime", default: 0, in: 0...31_536_000)
                guard cache.set(table, key, value, lifetimeSeconds: lifetime > 0 ? Int64(lifetime) : nil) else {
                    throw ManagementError.notFound("no table \(table) (declare it under tables: in the routing file)")
                }
                return .object([("table", .string(table)), ("key", .string(key)), ("value", .string(value))])
            },
            ManagementMethod("htable.delete", "Removes a key from a shared cache table.", parameters: ["table", "key"],
                             changesState: true) { params in
                let table = try params.string("table"), key = try params.string("key")
                guard cache.delete(table, key) else { throw ManagementError.notFound("\(table) has no \(key)") }
                return .object([("table", .string(table)), ("key", .string(key)), ("deleted", .bool(true))])
            },
            ManagementMethod("htable.dump", "Every live entry of a shared cache table, or the table names without one.",
                             parameters: ["table"]) { params in
                guard let table = try params.optionalString("table") else {
                    return .object([("tables", .array(cache.tableNames.map { .string($0) }))])
                }
                guard let entries = cache.dump(table) else { throw ManagementError.notFound("no table \(table)") }
                return .object([("table", .string(table)), ("entries", .array(entries.map { key, entry in
                    .object([("key", .string(key)), ("value", .string(entry.value)),
                             ("expires_at", entry.expiresAt.map { .string(TernEvent.rfc3339String($0)) } ?? .null)])
                }))])
            },
        ]
    }

    /// A request from its text: lines may end in LF alone; Content-Length is added when missing.
    static func parse(_ text: String) throws(ManagementError) -> SIPMessage {
        var lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
        while lines.last?.isEmpty == true { lines.removeLast() }
        if !lines.contains(where: { $0.lowercased().hasPrefix("content-length:") || $0.lowercased().hasPrefix("l:") }) {
            lines.append("Content-Length: 0")
        }
        do {
            let message = try SIPMessageParser().parse(lines.joined(separator: "\r\n") + "\r\n\r\n")
            guard message.isRequest else { throw ManagementError.invalidParams("request: a response, not a request") }
            return message
        } catch let error as ManagementError {
            throw error
        } catch {
            throw ManagementError.invalidParams("request: \(error)")
        }
    }

    static func encode(_ explanation: RoutingExplanation) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("decision", .string(explanation.decision)),
            ("matched_rules", .array(explanation.matchedRules.map { .string($0) })),
            ("steps", .array(explanation.steps.map { .string($0) })),
            ("request_uri", explanation.requestURI.map { .string($0) } ?? .null),
            ("destinations", .array(explanation.destinations.map { .string($0) })),
            ("failover", .array(explanation.failover.map { .int(Int64($0)) })),
            ("added_headers", .array(explanation.addedHeaders.map { .string($0) })),
        ]
        if let status = explanation.status { fields.append(("status", .int(Int64(status)))) }
        if let reason = explanation.reason { fields.append(("reason", .string(reason))) }
        return .object(fields)
    }
}
