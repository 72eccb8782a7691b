import EventBus
import Messaging

/// Instant messages: send one to a user (delivered now or stored), list and delete stored ones.
enum MessagingMethods {
    static func methods(_ service: MessagingService?) -> [ManagementMethod] {
        let reason = "messaging is not enabled on this node (messaging.enabled)"
        return [
            ManagementMethod("message.send",
                             "Sends a MESSAGE to a user: delivered now to every registered device, stored otherwise. Returns the final status.",
                             parameters: ["to", "body", "from", "content_type"], changesState: true) { params in
                let messaging = try ManagementError.available(service, reason)
                let recipient = try ManagementAddress.aor(params, "to")
                let body = try params.string("body")
                let domain = recipient.split(separator: "@").last.map(String.init) ?? "localhost"
                let sender = try params.optionalString("from") == nil ? "sip:tern@" + domain : try ManagementAddress.aor(params, "from")
                let contentType = try params.optionalString("content_type") ?? "text/plain"
                let status = try await messaging.sendMessage(from: sender, to: recipient, contentType: contentType, body: Array(body.utf8))
                let outcome = status == 202 ? "stored" : (200..<300).contains(status) ? "delivered" : "refused"
                return .object([("to", .string(recipient)), ("status", .int(Int64(status))), ("outcome", .string(outcome))])
            },
            ManagementMethod("messages.stored", "The messages waiting for a user, oldest first (bodies as text).",
                             parameters: ["user", "limit"]) { params in
                let messaging = try ManagementError.available(service, reason)
                let user = try ManagementAddress.aor(params, "user")
                let limit = try params.int("limit", default: 100, in: 1...10_000)
                let messages = try await messaging.storedMessages(for: user, limit: limit)
                return .object([("user", .string(user)), ("messages", .array(messages.map(encode)))])
            },
            ManagementMethod("messages.delete", "Deletes one stored message by id.", parameters: ["id"], changesState: true) { params in
                let messaging = try ManagementError.available(service, reason)
                let id = try params.string("id")
                guard try await messaging.deleteStoredMessage(id: id) else { throw ManagementError.notFound("no stored message \(id)") }
                return .object([("id", .string(id)), ("deleted", .bool(true))])
            },
        ]
    }

    static func encode(_ message: StoredMessage) -> JSONValue {
        .object([
            ("id", .string(message.id)), ("recipient", .string(message.recipient)), ("from", .string(message.from)),
            ("content_type", .string(message.contentType)),
            ("body", .string(String(decoding: message.body, as: UTF8.self))),
            ("stored_at", .string(TernEvent.rfc3339String(message.storedAt))),
            ("expires_at", .string(TernEvent.rfc3339String(message.expiresAt))), ("attempts", .int(Int64(message.attempts))),
        ])
    }
}
