import CoreProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SIP

/// Paths of the test certificate (see Fixtures/README.md).
enum TestCertificates {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static var certificate: String { directory.appendingPathComponent("test-cert.pem").path }
    static var privateKey: String { directory.appendingPathComponent("test-key.pem").path }
    /// TLS settings with the test certificate, which also serves as the only trusted client CA.
    static func tls(_ clientCertificates: TransportLayer.TLSSettings.ClientCertificates) -> TransportLayer.TLSSettings {
        TransportLayer.TLSSettings(certificateChainPath: certificate, privateKeyPath: privateKey,
                                   trustRootsPath: clientCertificates == .none ? nil : certificate,
                                   clientCertificates: clientCertificates)
    }
}

/// A running in-process SIP server on ephemeral loopback ports.
struct RunningServer: Sendable {
    let server: SIPServer
    let listeners: [BoundListener]

    func listener(_ transport: SIPTransportProtocol, ipv6: Bool = false) -> BoundListener? {
        listeners.first { $0.spec.transport == transport && ($0.address.protocol == .inet6) == ipv6 }
    }

    func port(_ transport: SIPTransportProtocol, ipv6: Bool = false) -> Int {
        listener(transport, ipv6: ipv6)?.port ?? 0
    }
}

/// Runs a ``SIPServer`` for the duration of `body`, then shuts it down gracefully.
func withTestServer<T: Sendable>(
    listeners: [ListenerSpec] = [ListenerSpec(transport: .udp, host: "127.0.0.1", port: 0),
                                 ListenerSpec(transport: .tcp, host: "127.0.0.1", port: 0)],
    tls: Bool = false,
    clientCertificates: TransportLayer.TLSSettings.ClientCertificates = .none,
    maxMessageSize: Int = 65_535,
    idleTimeout: TimeAmount = .minutes(10),
    drainTimeout: TimeAmount = .milliseconds(200),
    timers: TransactionTimers = TransactionTimers(),
    maxConnections: Int = 10_000,
    pipeline: RequestPipeline.Configuration = RequestPipeline.Configuration(),
    registrar: Registrar.Configuration = Registrar.Configuration(),
    proxy: StatefulProxy.Configuration = StatefulProxy.Configuration(),
    removeBindingsOnFlowClose: Bool = true,
    authentication: DigestAuthenticator.Configuration? = nil,
    credentials: any CredentialStore = FileCredentialStore(entries: []),
    bindingStore: (any BindingStore)? = nil,
    tunings: [MessageTuningRule] = [],
    configure: @Sendable (SIPServer) -> Void = { _ in },
    _ body: @Sendable (RunningServer) async throws -> T
) async throws -> T {
    var logger = Logger(label: "tern.test")
    logger.logLevel = .warning
    let group = MultiThreadedEventLoopGroup.singleton
    let (listening, continuation) = AsyncStream.makeStream(of: [BoundListener].self)
    var configuration = SIPServer.Configuration(
        transport: TransportLayer.Configuration(listeners: listeners, tls: tls ? TestCertificates.tls(clientCertificates) : nil,
                                                maxMessageSize: maxMessageSize, maxConnections: maxConnections,
                                                idleTimeout: idleTimeout),
        timers: timers,
        pipeline: pipeline,
        registrar: registrar,
        proxy: proxy,
        authentication: authentication,
        removeBindingsOnFlowClose: removeBindingsOnFlowClose,
        drainTimeout: drainTimeout
    )
    configuration.tunings = tunings
    let server = try SIPServer(configuration: configuration, group: group, logger: logger, bindingStore: bindingStore,
                               credentials: credentials) { bound in
        continuation.yield(bound)
        continuation.finish()
    }
    configure(server)
    let serviceGroup = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)],
        logger: logger
    ))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await serviceGroup.run() }
        var iterator = listening.makeAsyncIterator()
        guard let bound = await iterator.next() else { throw TestFailure("server did not start") }
        do {
            let result = try await body(RunningServer(server: server, listeners: bound))
            await serviceGroup.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await serviceGroup.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Builds a request text with CRLF line ends and a correct Content-Length.
func sipRequest(_ method: String = "OPTIONS", uri: String = "sip:tern.test", transport: String = "UDP",
                branch: String = SIPIdentifiers.branch(), callID: String = SIPIdentifiers.callID(),
                cseq: Int = 1, extraHeaders: [String] = [], body: String = "") -> String {
    var lines = [
        "\(method) \(uri) SIP/2.0",
        "Via: SIP/2.0/\(transport) client.test:5060;branch=\(branch);rport",
        "Max-Forwards: 70",
        "From: <sip:alice@tern.test>;tag=\(SIPIdentifiers.tag())",
        "To: <sip:bob@tern.test>",
        "Call-ID: \(callID)",
        "CSeq: \(cseq) \(method)",
    ]
    lines += extraHeaders
    lines.append("Content-Length: \(body.utf8.count)")
    return lines.joined(separator: "\r\n") + "\r\n\r\n" + body
}
