import EventBus
public import Hummingbird
public import Logging
public import NIOCore
public import Prometheus

/// The management API over HTTP (Hummingbird): JSON-RPC 2.0 at `POST /jsonrpc`, XML-RPC at
/// `POST /xmlrpc` (and `/RPC2`, its customary path), Prometheus text at `GET /metrics`, liveness
/// at `GET /health` and readiness (SIP listeners up) at `GET /ready`.
///
/// Methods that change state need `Authorization: Bearer <token>`; with no token configured they
/// are refused altogether. A token that is given but wrong is refused outright (401), so a
/// mistyped one is noticed instead of silently falling back to read-only.
public struct ManagementHTTPServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var token: String?
        /// Request bodies larger than this get 413.
        public var maxBodyBytes: Int

        public init(host: String = "127.0.0.1", port: Int = 8070, token: String? = nil, maxBodyBytes: Int = 1 << 20) {
            self.host = host
            self.port = port
            self.token = token
            self.maxBodyBytes = maxBodyBytes
        }
    }

    public let configuration: Configuration
    private let jsonRPC: JSONRPCEndpoint
    private let xmlRPC: XMLRPCEndpoint
    private let gauges: ScrapeGauges
    private let registry: PrometheusCollectorRegistry
    private let isReady: @Sendable () -> Bool

    public init(configuration: Configuration, api: ManagementAPI, context: ManagementContext,
                registry: PrometheusCollectorRegistry = TernMetrics.registry, isReady: @escaping @Sendable () -> Bool) {
        self.configuration = configuration
        jsonRPC = JSONRPCEndpoint(api: api)
        xmlRPC = XMLRPCEndpoint(api: api)
        gauges = ScrapeGauges(context: context, registry: registry)
        self.registry = registry
        self.isReady = isReady
    }

    /// The Hummingbird application, a ServiceLifecycle service; `onListening` gets the bound port.
    public func application(group: any EventLoopGroup, logger: Logger,
                            onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        router.post("/jsonrpc") { request, _ in try await rpc(request, json: true) }
        router.post("/xmlrpc") { request, _ in try await rpc(request, json: false) }
        router.post("/RPC2") { request, _ in try await rpc(request, json: false) }
        router.get("/metrics") { _, _ in
            gauges.refresh()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.get("/health") { _, _ in Self.json(.ok, #"{"status":"ok"}"#) }
        router.get("/ready") { _, _ in
            isReady() ? Self.json(.ok, #"{"status":"ready"}"#) : Self.json(.serviceUnavailable, #"{"status":"starting"}"#)
        }
        return Application(router: router,
                           configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port),
                                                                   serverName: "Tern"),
                           onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
                           eventLoopGroupProvider: .shared(group), logger: logger)
    }

    private func rpc(_ request: Request, json: Bool) async throws -> Response {
        var request = request
        let authorized: Bool
        switch authorization(request) {
        case .granted: authorized = true
        case .absent: authorized = false
        case .wrong:
            let error = ManagementError(code: -32001, message: "Unauthorized: wrong management token")
            return json ? Self.json(.unauthorized, JSONRPCEndpoint.response(id: .null, .failure(error)).json)
                : Self.xml(.unauthorized, XMLRPCEndpoint.fault(error))
        }
        let body = try await request.collectBody(upTo: configuration.maxBodyBytes)
        let bytes = body.readableBytesView
        if json {
            guard let answer = await jsonRPC.handle(bytes, authorized: authorized) else { return Response(status: .noContent) }
            return Self.json(.ok, answer)
        }
        return Self.xml(.ok, await xmlRPC.handle(bytes, authorized: authorized))
    }

    private enum Authorization { case granted, absent, wrong }

    private func authorization(_ request: Request) -> Authorization {
        guard let header = request.headers[.authorization] else { return .absent }
        guard let token = configuration.token, !token.isEmpty, header.hasPrefix("Bearer ") else { return .wrong }
        return Self.constantTimeEqual(Array(header.utf8.dropFirst(7)), Array(token.utf8)) ? .granted : .wrong
    }

    /// Compares without stopping at the first difference, so timing does not reveal the token.
    static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }

    private static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    private static func xml(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/xml"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
