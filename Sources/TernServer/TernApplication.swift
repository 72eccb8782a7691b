public import CoreProxy
import MongoSupport
import Messaging
import Presence
import EventBus
import Management
import PushGateway
import Routing
import IMS
import NIOConcurrencyHelpers
public import Logging
import NIOCore
import SIP
import Foundation
import NIOPosix
import ServiceLifecycle
public import UnixSignals

/// Wires Tern from its configuration and runs it until SIGTERM or SIGINT.
///
/// Service order encodes dependencies (STYLE (c)): today the SIP core alone; stores, the event-bus
/// outbox and the management API join it before and after as later features land.
public struct TernApplication: Sendable {
    public var configuration: TernConfiguration
    public var logger: Logger

    public init(configuration: TernConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until a shutdown signal (or the group's graceful shutdown) and returns once everything
    /// has stopped.
    ///
    /// - Parameter onListening: called with the bound listeners once all are up.
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
                    onListening: @escaping @Sendable ([BoundListener]) -> Void = { _ in }) async throws {
        let threads = configuration.threads > 0 ? configuration.threads : System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        // Metrics go to the Prometheus registry only if it exists before anything creates them.
        _ = TernMetrics.registry
        let listeners = NIOLockedValueBox<[BoundListener]>([])
        var mongo: MongoDatabase?
        var messageStoreToClose: SQLiteMessageStore?
        var presenceStoreToClose: SQLitePresenceStore?
        var spillStoreToClose: EventSpillStore?
        do {
            mongo = try openMongoDB()
            let store = try await openBindingStore(group: group, mongo: mongo)
            let credentials = try await openCredentialStore(mongo: mongo)
            let server = try SIPServer(configuration: configuration.serverConfiguration, group: group,
                                       logger: logger, bindingStore: store, credentials: credentials,
                                       onListening: { bound in
                                           listeners.withLockedValue { $0 = bound }
                                           onListening(bound)
                                       })
            var bridge: EventBridge?
            var publisher: AMQPPublisher?
            var commandSettings: AMQPCommandConsumer.Configuration?
            if let settings = configuration.events {
                let policy = EventOutbox.OverflowPolicy(rawValue: settings.overflow) ?? .dropOldest
                var spill: EventSpillStore?
                if policy == .spill {
                    try Self.createDirectory(holding: configuration.eventSpillPath)
                    spill = try await EventSpillStore.open(path: configuration.eventSpillPath, logger: logger, group: group)
                    spillStoreToClose = spill
                }
                let outbox = EventOutbox(capacity: settings.outboxSize, policy: policy, spill: spill)
                let eventPublisher = AMQPPublisher(
                    configuration: AMQPPublisher.Configuration(brokers: settings.brokers.compactMap(AMQPPublisher.Broker.init(uri:)),
                                                               exchange: settings.exchange, heartbeat: settings.heartbeat,
                                                               window: settings.window, node: configuration.nodeName,
                                                               linger: Double(settings.lingerMilliseconds) / 1000),
                    outbox: outbox, logger: logger)
                let events = EventBridge(outbox: outbox)
                server.location.addObserver(events)
                server.proxy.addCallObserver(events)
                bridge = events
                publisher = eventPublisher
                if settings.commandsEnabled {
                    commandSettings = AMQPCommandConsumer.Configuration(
                        brokers: eventPublisher.configuration.brokers, exchange: settings.exchange, queue: settings.commandQueue,
                        bindingKey: settings.commandBindingKey, prefetch: settings.commandPrefetch, heartbeat: settings.heartbeat)
                }
            }
            if let hops = configuration.sipIInitialHops {
                server.proxy.addTrustPolicy(SIPIInterworking(configuration: .init(initialHops: hops)))
            }
            var imsProfiles: IMSProfiles?
            var imsControl: IMSServiceControl?
            var regEvents: RegEventService?
            if let settings = configuration.ims {
                var subscriptions: [IMSSubscription] = []
                if !settings.profilesFile.isEmpty { subscriptions += try IMSProfileLoader.load(file: settings.profilesFile) }
                if !settings.profilesCollection.isEmpty, let mongo {
                    subscriptions += try await IMSProfileLoader.load(collection: settings.profilesCollection, from: mongo)
                }
                let profiles = IMSProfiles(subscriptions)
                let policy = IMSPolicy(configuration: try settings.policyConfiguration(), profiles: profiles, location: server.location)
                // The Service-Route names this host: requests routed by it are ours.
                server.identity.addAlias(policy.configuration.serverURI.host)
                server.setRegistrationPolicy(policy)
                server.proxy.addTrustPolicy(policy)
                let control = IMSServiceControl(profiles: profiles, policy: policy, location: server.location, proxy: server.proxy,
                                                identity: server.identity, loops: group, logger: logger)
                policy.setServiceControl(control)
                server.proxy.setApplicationServerRouting(control)
                imsProfiles = profiles
                let reg = RegEventService(configuration: .init(applicationServers: settings.applicationServers), profiles: profiles,
                                          location: server.location, proxy: server.proxy, identity: server.identity, logger: logger)
                server.location.addObserver(reg)
                // Registration state from a registrar in front of Tern (Tern as a presence and IM server).
                server.pipeline.register(RegInfoNotifyHandler(policy: policy, location: server.location, logger: logger))
                control.setRegEvents(reg)
                imsControl = control
                regEvents = reg
                logger.notice("ims: subscriber profiles loaded", metadata: ["subscribers": "\(profiles.count)"])
            }
            if let push = configuration.mobile.push {
                let service = makePushService(push)
                server.proxy.setPushService(service)
                if let bridge { service.addObserver(bridge) }
            }
            if configuration.mobile.keepAliveInterval > 0 {
                server.addFeature(KeepAliveProber(
                    configuration: KeepAliveProber.Configuration(interval: .seconds(Int64(configuration.mobile.keepAliveInterval)),
                                                                 failures: configuration.mobile.keepAliveFailures),
                    proxy: server.proxy, location: server.location, loop: group.next(), logger: logger))
            }
            var messagingService: MessagingService?
            var presenceService: PresenceService?
            if let settings = configuration.messaging {
                let store = try await openMessageStore(group: group, mongo: mongo)
                messageStoreToClose = store as? SQLiteMessageStore
                let messaging = MessagingService(configuration: settings, store: store, proxy: server.proxy,
                                                 location: server.location, identity: server.identity, group: group,
                                                 logger: logger)
                if let bridge { messaging.addObserver(bridge) }
                server.addFeature(messaging)
                messagingService = messaging
            }
            if let settings = configuration.presence {
                let store = try await openPresenceStore(group: group, mongo: mongo)
                presenceStoreToClose = store as? SQLitePresenceStore
                let presence = PresenceService(configuration: settings, proxy: server.proxy, location: server.location,
                                               identity: server.identity, group: group, store: store, logger: logger)
                if let bridge { presence.addObserver(bridge) }
                try await presence.restore()
                server.pipeline.register(presence)
                server.addFeature(presence)
                presenceService = presence
            }
            if let regEvents {
                // SUBSCRIBE belongs to presence when it runs: it hands `reg` on.
                if let presenceService { presenceService.delegate(package: "reg", to: regEvents) } else { server.pipeline.register(regEvents) }
            }
            var context = ManagementContext(server: server, messaging: messagingService, presence: presenceService,
                                            publisher: publisher, configuration: ConfigurationDump.json(configuration),
                                            node: configuration.nodeName, listeners: { listeners.withLockedValue { $0 } })
            if let imsProfiles {
                context.imsProfiles = imsProfiles
                context.imsServiceControl = imsControl
                if let collection = configuration.ims?.profilesCollection, !collection.isEmpty, let mongo {
                    // Edits through the API go to the collection too, so every node and the next start see them.
                    context.storeIMSProfile = { privateID, document in
                        try await mongo.perform { session in
                            _ = try session.delete(collection, filter: ["private_id": .string(privateID)])
                            if let document { try session.insert(collection, try IMSProfileLoader.bson(document), journaled: true) }
                        }
                    }
                }
            }
            if let path = configuration.routingFile {
                let contents = try await loadRouting(path: path, mongo: mongo)
                for table in contents.cacheTables { server.cache.declare(table.name, defaultLifetimeSeconds: table.lifetime) }
                let router = Router(tables: contents.tables, cache: server.cache)
                server.proxy.setRouter(router)
                server.addFeature(DestinationProber(router: router, proxy: server.proxy, loop: group.next(), logger: logger))
                context.router = router
                context.reloadRouting = { [self, logger, mongo, cache = server.cache] in
                    let contents = try await loadRouting(path: path, mongo: mongo)
                    for table in contents.cacheTables { cache.declare(table.name, defaultLifetimeSeconds: table.lifetime) }
                    router.replace(contents.tables)
                    logger.notice("routing file reloaded", metadata: ["file": "\(path)"])
                    return Self.summary(contents.tables)
                }
                logger.notice("routing file loaded", metadata: ["file": "\(path)", "rules": "\(contents.tables.dialplan.count)"])
            }
            let api = ManagementAPI(context: context, logger: logger)
            if let publisher {
                let endpoint = JSONRPCEndpoint(api: api)
                // The broker's own users and permissions guard the command queue: commands are trusted as a whole.
                let commands = commandSettings.map { settings in
                    AMQPCommandConsumer(configuration: settings, handler: { body in await endpoint.handle(body, authorized: true) },
                                        logger: logger)
                }
                server.addFeature(EventBusFeature(publisher: publisher, commands: commands))
            }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup),
            ]
            if let settings = configuration.management {
                let http = ManagementHTTPServer(
                    configuration: ManagementHTTPServer.Configuration(host: settings.host, port: settings.port, token: settings.token),
                    api: api, context: context, isReady: { !listeners.withLockedValue { $0 }.isEmpty })
                let application = http.application(group: group, logger: logger, onListening: { [logger] port in
                    logger.notice("management API listening", metadata: ["address": "http://\(settings.host):\(port)"])
                })
                services.append(.init(service: ManagementService(application: application, address: "\(settings.host):\(settings.port)"),
                                      successTerminationBehavior: .gracefullyShutdownGroup))
            }
            let serviceGroup = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: services,
                    gracefulShutdownSignals: gracefulShutdownSignals,
                    logger: logger
                )
            )
            try await serviceGroup.run()
        } catch {
            await messageStoreToClose?.close()
            await presenceStoreToClose?.close()
            await spillStoreToClose?.close()
            await mongo?.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        await messageStoreToClose?.close()
        await presenceStoreToClose?.close()
        await spillStoreToClose?.close()
        await mongo?.shutdown()
        try await group.shutdownGracefully()
    }

    /// The MongoDB client when a store uses it.
    /// The routing file, with its ported numbers from MongoDB when it names a collection.
    private func loadRouting(path: String, mongo: MongoDatabase?) async throws -> RoutingFile.Contents {
        var contents = try RoutingFile.load(path: path)
        if let collection = contents.portabilityCollection {
            guard let mongo else {
                throw ConfigurationError(key: "portability.mongodb_collection", line: nil, message: "needs storage.mongodb.uri")
            }
            let documents = try await mongo.perform { session in
                try session.find(collection, projection: ["number": .int64(1), "rn": .int64(1), "_id": .int64(0)])
            }
            var portability = NumberPortability()
            for document in documents {
                guard let number = document["number"]?.string, let rn = document["rn"]?.string,
                      portability.add(number: number, routingNumber: rn)
                else {
                    throw ConfigurationError(key: "portability.mongodb_collection", line: nil,
                                             message: "\(collection): a document without string number and rn: \(document)")
                }
            }
            contents.tables.portability = portability
            logger.notice("ported numbers loaded from MongoDB", metadata: ["collection": "\(collection)", "numbers": "\(portability.count)"])
        }
        return contents
    }

    /// What a routing file holds, counted (the answer to `routing.reload`).
    static func summary(_ tables: RoutingTables) -> JSONValue {
        .object([
            ("dialplan_rules", .int(Int64(tables.dialplan.count))),
            ("dispatcher_sets", .int(Int64(tables.dispatcherSets.count))),
            ("lcr_prefixes", .int(Int64(tables.lcr?.routes.count ?? 0))),
            ("lcr_gateways", .int(Int64(tables.lcr?.gateways.count ?? 0))),
            ("ported_numbers", .int(Int64(tables.portability?.count ?? 0))),
        ])
    }

    private func makePushService(_ settings: MobileSettings.PushSettings) -> PushService {
        var gateway: HTTPPushGateway?
        if !settings.gatewayURL.isEmpty {
            var gatewayConfiguration = HTTPPushGateway.Configuration(url: settings.gatewayURL,
                                                                     timeout: .milliseconds(Int64(settings.timeoutMilliseconds)))
            if !settings.authorization.isEmpty { gatewayConfiguration.authorization = settings.authorization }
            if !settings.template.isEmpty { gatewayConfiguration.template = settings.template }
            gateway = HTTPPushGateway(configuration: gatewayConfiguration)
        }
        let serviceConfiguration = PushService.Configuration(
            providers: Set(settings.providers), retries: settings.retries,
            retryDelay: .milliseconds(Int64(settings.retryDelayMilliseconds)), maxInFlight: settings.maxInFlight,
            registrationMargin: settings.registrationMargin)
        return PushService(configuration: serviceConfiguration, gateway: gateway, logger: logger)
    }

    private func openMongoDB() throws -> MongoDatabase? {
        guard let settings = configuration.mongoDB else { return nil }
        let usesMongo = configuration.locationStore == .mongodb
            || (configuration.authentication != nil && configuration.credentialsSource == .mongodb)
            || (configuration.messaging != nil && configuration.messageStore == .mongodb)
            || (configuration.presence != nil && configuration.presenceStore == .mongodb)
            || configuration.routingFile != nil
            || configuration.ims?.profilesCollection.isEmpty == false
        guard usesMongo else { return nil }
        return try MongoDatabase(uri: settings.uri, database: settings.database, threads: settings.threads, logger: logger)
    }

    /// Offline messages in MongoDB, or in the embedded file (in memory when `storage.sqlite_path` is empty).
    private func openMessageStore(group: any EventLoopGroup, mongo: MongoDatabase?) async throws -> any MessageStore {
        if configuration.messageStore == .mongodb, let mongo {
            let store = MongoMessageStore(database: mongo, collection: configuration.messageCollection)
            try await store.prepare()
            logger.notice("offline messages in MongoDB", metadata: ["collection": "\(configuration.messageCollection)"])
            return store
        }
        let path = configuration.sqlitePath.isEmpty ? ":memory:" : configuration.sqlitePath
        if path != ":memory:" { try Self.createDirectory(holding: path) }
        return try await SQLiteMessageStore.open(path: path, logger: logger, group: group)
    }

    /// Presence state in MongoDB, the embedded file, or nowhere (memory, or an empty SQLite path).
    private func openPresenceStore(group: any EventLoopGroup, mongo: MongoDatabase?) async throws -> (any PresenceStore)? {
        switch configuration.presenceStore {
        case .memory:
            return nil
        case .mongodb:
            guard let mongo else { return nil }
            let store = MongoPresenceStore(database: mongo, loop: group.next(), logger: logger)
            try await store.prepare()
            return store
        case .sqlite:
            guard !configuration.sqlitePath.isEmpty else { return nil }
            try Self.createDirectory(holding: configuration.sqlitePath)
            return try await SQLitePresenceStore.open(path: configuration.sqlitePath, logger: logger, group: group)
        }
    }

    /// HA1 hashes from the configured file or MongoDB (empty when authentication is off).
    private func openCredentialStore(mongo: MongoDatabase?) async throws -> any CredentialStore {
        guard configuration.authentication != nil else { return FileCredentialStore(entries: []) }
        if configuration.credentialsSource == .mongodb, let mongo {
            let store = MongoCredentialStore(database: mongo, cacheSeconds: Int64(configuration.credentialsCacheSeconds),
                                             logger: logger)
            do {
                try await store.prepare()
            } catch {
                // Lookups retry on every request; a database that comes up later is used then.
                logger.error("MongoDB credential index not created", metadata: ["error": "\(error)"])
            }
            logger.notice("credentials from MongoDB", metadata: ["collection": "\(MongoCredentialStore.collection)"])
            return store
        }
        guard let path = configuration.credentialsFile else { return FileCredentialStore(entries: []) }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let file = try FileCredentialStore(text: text)
        logger.notice("loaded credentials", metadata: ["file": "\(path)", "users": "\(file.count)"])
        return file
    }

    /// Where bindings survive a restart: MongoDB (shared by nodes), the embedded SQLite file (its
    /// directory created when missing), or nowhere (memory, or an empty SQLite path).
    private func openBindingStore(group: any EventLoopGroup, mongo: MongoDatabase?) async throws -> (any BindingStore)? {
        if configuration.locationStore == .memory { return nil }
        if configuration.locationStore == .mongodb, let mongo {
            let store = MongoBindingStore(database: mongo, node: configuration.nodeName, loop: group.next(), logger: logger)
            // Bindings must come back before serving: a MongoDB that is down at start stops the start.
            try await store.prepare()
            logger.notice("location in MongoDB", metadata: ["collection": "\(MongoBindingStore.collection)",
                                                            "node": "\(configuration.nodeName)"])
            return store
        }
        let path = configuration.sqlitePath
        guard !path.isEmpty else { return nil }
        try Self.createDirectory(holding: path)
        return try await SQLiteBindingStore.open(path: path, logger: logger, group: group)
    }

    /// The embedded file's directory, created when missing.
    private static func createDirectory(holding path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }
}

/// The management API's HTTP server, whose failure (a port in use, say) names it.
struct ManagementService: Service {
    let application: any Service
    let address: String

    func run() async throws {
        do {
            try await application.run()
        } catch {
            throw ManagementServiceError(address: address, underlying: "\(error)")
        }
    }
}

public struct ManagementServiceError: Error, CustomStringConvertible {
    public var address: String
    public var underlying: String
    public var description: String { "management API on \(address): \(underlying)" }
}
