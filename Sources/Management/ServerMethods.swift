import CoreProxy
import NIOCore
import Presence
import EventBus
import Foundation

/// The node itself: statistics, the effective configuration, listeners, transactions.
enum ServerMethods {
    static func methods(_ context: ManagementContext) -> [ManagementMethod] {
        [
            ManagementMethod("stats", "Live counts: transactions, bindings, presentities and subscriptions, the event bus.") { _ in
                statistics(context)
            },
            ManagementMethod("config.dump", "The effective configuration, secrets left out.") { _ in context.configuration },
            ManagementMethod("listeners", "The SIP listeners this node has bound.") { _ in
                .array(context.listeners().map { listener in
                    .object([("transport", .string(listener.spec.transport.rawValue)), ("address", .string(listener.address.ipAddress ?? "")),
                             ("port", .int(Int64(listener.port))), ("uri", .string(listener.description))])
                })
            },
            ManagementMethod("transactions.count", "SIP transactions in progress.") { _ in
                let layer = context.server.transactionLayer
                return .object([("server", .int(Int64(layer.serverTransactionCount))), ("client", .int(Int64(layer.clientTransactionCount)))])
            },
        ]
    }

    static func statistics(_ context: ManagementContext) -> JSONValue {
        let layer = context.server.transactionLayer
        var fields: [(String, JSONValue)] = [
            ("node", .string(context.node)),
            ("uptime_seconds", .int(Int64(Date().timeIntervalSince1970) - context.startedAt)),
            ("transactions", .object([("server", .int(Int64(layer.serverTransactionCount))),
                                      ("client", .int(Int64(layer.clientTransactionCount)))])),
            ("bindings", .int(Int64(context.server.location.bindingCount))),
        ]
        if let presence = context.presence {
            fields.append(("presence", .object([("presentities", .int(Int64(presence.presentityCount))),
                                                ("subscriptions", .int(Int64(presence.subscriptionCount)))])))
        }
        if let publisher = context.publisher {
            let totals = publisher.statistics
            fields.append(("events", .object([
                ("outbox_depth", .int(Int64(publisher.outbox.depth))), ("published", .int(Int64(totals.published))),
                ("confirmed", .int(Int64(totals.confirmed))), ("nacked", .int(Int64(totals.nacked))),
                ("dropped", .int(Int64(publisher.outbox.droppedTotal))), ("reconnects", .int(Int64(totals.reconnects))),
            ])))
        }
        return .object(fields)
    }
}
