public import CoreProxy
public import EventBus
public import Messaging
public import Presence
public import Routing
public import IMS
import Foundation
public import Logging

/// What the management methods act on. Modules a node runs without are nil, and their methods
/// answer that they are not enabled rather than vanishing from the list.
public struct ManagementContext: Sendable {
    public var server: SIPServer
    public var messaging: MessagingService?
    public var presence: PresenceService?
    public var publisher: AMQPPublisher?
    /// `config.dump`'s answer: built by whoever owns the configuration, secrets already left out.
    public var configuration: JSONValue
    public var node: String
    public var listeners: @Sendable () -> [BoundListener]
    public var startedAt: Int64
    /// The router, when a routing file is configured, and what reloads that file.
    public var router: Router?
    public var reloadRouting: (@Sendable () async throws -> JSONValue)?
    /// IMS subscriber profiles, and what stores an edit of one (nil document: removed).
    public var imsProfiles: IMSProfiles?
    public var storeIMSProfile: (@Sendable (String, IMSProfileDocument?) async throws -> Void)?
    public var imsServiceControl: IMSServiceControl?

    public init(server: SIPServer, messaging: MessagingService?, presence: PresenceService?, publisher: AMQPPublisher?,
                configuration: JSONValue, node: String, listeners: @escaping @Sendable () -> [BoundListener]) {
        self.server = server
        self.messaging = messaging
        self.presence = presence
        self.publisher = publisher
        self.configuration = configuration
        self.node = node
        self.listeners = listeners
        startedAt = Int64(Date().timeIntervalSince1970)
    }
}

extension ManagementAPI {
    /// Every method Tern offers, over this node's modules.
    public convenience init(context: ManagementContext, logger: Logger) {
        self.init(methods: ServerMethods.methods(context) + LocationMethods.methods(context.server.location)
                      + PresenceMethods.methods(context.presence) + MessagingMethods.methods(context.messaging)
                      + RoutingMethods.methods(context.router, reload: context.reloadRouting, cache: context.server.cache)
                      + IMSMethods.methods(context.imsProfiles, store: context.storeIMSProfile, control: context.imsServiceControl),
                  logger: logger)
    }
}

extension ManagementError {
    /// The module a method needs, or why it cannot run here.
    static func available<Service>(_ service: Service?, _ reason: String) throws(ManagementError) -> Service {
        guard let service else { throw .unavailable(reason) }
        return service
    }
}
