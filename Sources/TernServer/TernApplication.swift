public import CoreProxy
public import Logging
import NIOCore
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
        do {
            let store = try await openBindingStore(group: group)
            var credentials: any CredentialStore = FileCredentialStore(entries: [])
            if let path = configuration.credentialsFile, configuration.authentication != nil {
                let text = try String(contentsOfFile: path, encoding: .utf8)
                let file = try FileCredentialStore(text: text)
                logger.notice("loaded credentials", metadata: ["file": "\(path)", "users": "\(file.count)"])
                credentials = file
            }
            let server = try SIPServer(configuration: configuration.serverConfiguration, group: group,
                                       logger: logger, bindingStore: store, credentials: credentials,
                                       onListening: onListening)
            let serviceGroup = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: gracefulShutdownSignals,
                    logger: logger
                )
            )
            try await serviceGroup.run()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// The embedded SQLite store, its directory created when missing; nil when the path is empty.
    private func openBindingStore(group: any EventLoopGroup) async throws -> (any BindingStore)? {
        let path = configuration.sqlitePath
        guard !path.isEmpty else { return nil }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        return try await SQLiteBindingStore.open(path: path, logger: logger, group: group)
    }
}
