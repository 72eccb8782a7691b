import EventBus
import Presence

/// Presence: a presentity's state and watchers, decisions about watchers, state published on a
/// user's behalf, and a dump of every presentity.
enum PresenceMethods {
    static func methods(_ service: PresenceService?) -> [ManagementMethod] {
        let reason = "presence is not enabled on this node (presence.enabled)"
        return [
            ManagementMethod("presence.state", "The PIDF document a presentity's watchers see now (null when it has none).",
                             parameters: ["presentity"]) { params in
                let presence = try ManagementError.available(service, reason)
                let presentity = try ManagementAddress.aor(params, "presentity")
                return .object([("presentity", .string(presentity)), ("document", presence.state(of: presentity).map { .string($0) } ?? .null)])
            },
            ManagementMethod("presence.watchers", "A presentity's watchers (one per subscription) and their status.",
                             parameters: ["presentity"]) { params in
                let presence = try ManagementError.available(service, reason)
                let presentity = try ManagementAddress.aor(params, "presentity")
                let watchers = presence.watchers(of: presentity).map { info -> JSONValue in
                    .object([("id", .string(info.id)), ("watcher", .string(info.watcher)), ("status", .string(info.status.rawValue)),
                             ("event", .string(info.event))])
                }
                return .object([("presentity", .string(presentity)), ("watchers", .array(watchers))])
            },
            ManagementMethod("presence.authorize",
                             "Allows or blocks a watcher of a presentity: decision is allowed, blocked or polite_block.",
                             parameters: ["presentity", "watcher", "decision"], changesState: true) { params in
                let presence = try ManagementError.available(service, reason)
                let presentity = try ManagementAddress.aor(params, "presentity")
                let watcher = try ManagementAddress.aor(params, "watcher")
                let text = try params.string("decision")
                guard let decision = PresenceService.WatcherDecision(rawValue: text) else {
                    throw ManagementError.invalidParams("parameter 'decision' must be allowed, blocked or polite_block, not \(text)")
                }
                presence.authorize(presentity: presentity, watcher: watcher, decision)
                return .object([("presentity", .string(presentity)), ("watcher", .string(watcher)), ("decision", .string(text))])
            },
            ManagementMethod("presence.publish",
                             "Publishes state for a user: a whole PIDF document, or a basic status (open or closed) with a note.",
                             parameters: ["presentity", "document", "status", "note", "expires"], changesState: true) { params in
                let presence = try ManagementError.available(service, reason)
                let presentity = try ManagementAddress.aor(params, "presentity")
                let expires = try params.int("expires", default: Int(presence.configuration.defaultExpires),
                                             in: 1...Int(presence.configuration.maxExpires))
                let document = try pidf(params, presentity: presentity)
                let etag = presence.publish(presentity: presentity, document: document, expires: UInt32(expires))
                return .object([("presentity", .string(presentity)), ("etag", .string(etag)), ("expires", .int(Int64(expires)))])
            },
            ManagementMethod("presence.dump", "Every presentity with publications, subscriptions and whether it is open.",
                             parameters: ManagementPaging.parameters) { params in
                let presence = try ManagementError.available(service, reason)
                return try ManagementPaging.page(presence.presentitySummaries(), params, key: "presentities") { summary in
                    .object([("presentity", .string(summary.presentity)), ("publications", .int(Int64(summary.publications))),
                             ("subscriptions", .int(Int64(summary.subscriptions))), ("open", summary.open.map { .bool($0) } ?? .null)])
                }
            },
        ]
    }

    private static func pidf(_ params: ManagementParameters, presentity: String) throws -> PIDFDocument {
        if let document = try params.optionalString("document") {
            do {
                return try PIDFDocument(parsing: Array(document.utf8))
            } catch {
                throw ManagementError.invalidParams("parameter 'document': \(error)")
            }
        }
        guard let status = try params.optionalString("status") else {
            throw ManagementError.invalidParams("give either 'document' (PIDF) or 'status' (open or closed)")
        }
        guard status == "open" || status == "closed" else {
            throw ManagementError.invalidParams("parameter 'status' must be open or closed, not \(status)")
        }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\""
            + PIDFDocument.escaped(presentity) + "\"><tuple id=\"tern-management\"><status><basic>" + status + "</basic></status>"
        if let note = try params.optionalString("note") { xml += "<note>" + PIDFDocument.escaped(note) + "</note>" }
        xml += "</tuple></presence>"
        return try PIDFDocument(parsing: Array(xml.utf8))
    }
}
