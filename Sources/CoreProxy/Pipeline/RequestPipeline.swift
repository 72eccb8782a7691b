import NIOCore
public import SIP
public import Logging
import NIOConcurrencyHelpers

/// A feature that owns some methods (the registrar owns REGISTER, presence owns PUBLISH and
/// SUBSCRIBE, ...). The core never switches on a feature; it looks the method up here.
public protocol SIPRequestHandler: Sendable {
    /// The methods this handler answers.
    var methods: [SIPMethod] { get }
    /// Handles a new request; it must answer through the transaction.
    func handle(_ transaction: ServerTransaction)
    /// SIP extensions (option tags) this handler implements; they join the server's Supported.
    var optionTags: [String] { get }
    /// Body types this handler reads, as a user agent; a request with a required body part of any
    /// other type (SIP-I's ISUP, say) gets 415. Nil: the handler relays bodies unread (no check).
    var acceptedBodyTypes: [String]? { get }
    /// Whether this handler answers `request` of one of its methods; false leaves it to the proxy
    /// (a NOTIFY handler for one event package lets every other NOTIFY be routed).
    func claims(_ request: SIPMessage) -> Bool
}

extension SIPRequestHandler {
    public var optionTags: [String] { [] }
    public var acceptedBodyTypes: [String]? { nil }
    public func claims(_ request: SIPMessage) -> Bool { true }
}

/// The transaction user: the named stages every new request passes, in order, before the handler
/// that owns its method (RFC 3261 §8.2 for requests to the server, §16.3 for those it routes).
///
/// 1. Max-Forwards: 0 gets 483 (RFC 3261 §16.3 step 3).
/// 2. Extensions: Proxy-Require and Require with unknown option tags get 420 with Unsupported
///    (§16.3 step 5, §8.2.2.3).
/// 3. Dispatch: the handler registered for the method; OPTIONS is answered by the server itself;
///    a known method nobody handles gets 405 with Allow, an unknown one 501 (§8.2.1, §21.5.2).
public final class RequestPipeline: TransactionUser {
    public struct Configuration: Sendable {
        /// Option tags this server supports (Supported header; anything else in Require gets 420).
        public var supportedExtensions: [String]
        /// The Server header value, or nil to send none.
        public var serverHeader: String?
        /// Body types this server accepts (Accept in OPTIONS answers).
        public var acceptedBodyTypes: [String]

        public init(supportedExtensions: [String] = [], serverHeader: String? = "Tern",
                    acceptedBodyTypes: [String] = ["application/sdp"]) {
            self.supportedExtensions = supportedExtensions
            self.serverHeader = serverHeader
            self.acceptedBodyTypes = acceptedBodyTypes
        }
    }

    /// Methods RFC 3261 and its extensions define; anything else is "not recognised" (501).
    private static let knownMethods: Set<SIPMethod> = [
        .invite, .ack, .bye, .cancel, .options, .register, .prack, .subscribe, .notify, .publish,
        .info, .refer, .message, .update,
    ]

    public let configuration: Configuration
    private let logger: Logger
    private let proxyBox = NIOLockedValueBox<(proxy: StatefulProxy, identity: LocalIdentity)?>(nil)
    private let authenticatorBox = NIOLockedValueBox<DigestAuthenticator?>(nil)
    private let handlers = NIOLockedValueBox<[SIPMethod: any SIPRequestHandler]>([:])
    private let handlerOptionTags = NIOLockedValueBox<[String]>([])
    /// Allow and Supported as they change only when a feature registers; read on every request.
    private let capabilities: NIOLockedValueBox<Capabilities>

    private struct Capabilities {
        var allowValue: String
        var supportedLowercased: Set<String>
    }

    public init(configuration: Configuration = Configuration(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.capabilities = NIOLockedValueBox(Capabilities(allowValue: "", supportedLowercased: []))
        refreshCapabilities()
    }

    private func refreshCapabilities() {
        let allow = allowedMethods.map(\.rawValue).joined(separator: ", ")
        let supported = Set(supportedExtensions.map { $0.lowercased() })
        capabilities.withLockedValue { $0 = Capabilities(allowValue: allow, supportedLowercased: supported) }
    }

    /// Registers a feature for its methods; a later registration for the same method replaces it.
    public func register(_ handler: any SIPRequestHandler) {
        handlers.withLockedValue { table in
            for method in handler.methods { table[method] = handler }
        }
        handlerOptionTags.withLockedValue { tags in
            for tag in handler.optionTags where !tags.contains(tag) { tags.append(tag) }
        }
        refreshCapabilities()
    }

    /// Option tags this server supports: configured ones plus those of the registered handlers.
    public var supportedExtensions: [String] {
        let extra = handlerOptionTags.withLockedValue { $0 }
        var all = configuration.supportedExtensions
        for tag in extra where !all.contains(tag) { all.append(tag) }
        return all
    }

    /// Routes what no feature answers through the proxy (RFC 3261 §16).
    public func setProxy(_ proxy: StatefulProxy, identity: LocalIdentity) {
        proxyBox.withLockedValue { $0 = (proxy, identity) }
    }

    /// Requires digest authentication (RFC 3261 §22) before requests reach features or the proxy.
    public func setAuthenticator(_ authenticator: DigestAuthenticator) {
        authenticatorBox.withLockedValue { $0 = authenticator }
    }

    /// The methods this server answers, for Allow (RFC 3261 §20.5).
    public var allowedMethods: [SIPMethod] {
        let registered = handlers.withLockedValue { Array($0.keys) }
        let all = Set(registered).union([.options, .ack, .cancel])
        return all.sorted { $0.rawValue < $1.rawValue }
    }

    private var allowValue: String { capabilities.withLockedValue { $0.allowValue } }

    // MARK: - Stages

    public func handleRequest(_ transaction: ServerTransaction) {
        let request = transaction.request
        if let maxForwards = try? request.maxForwards(), maxForwards == 0 {
            transaction.respond(SIPStatus(483))
            return
        }
        let unsupported = unsupportedExtensions(request)
        if !unsupported.isEmpty {
            transaction.respond(SIPStatus(420), headers: [(.unsupported, unsupported.joined(separator: ", "))])
            return
        }
        guard let method = request.method else { return }
        let proxy = proxyBox.withLockedValue { $0 }
        var routed = request
        var routedToUs = false
        var ownRoutes: [SIPURI] = []
        if let proxy {
            routedToUs = Self.processRoutes(&routed, identity: proxy.identity, removed: &ownRoutes)
        }
        // Decide who answers: a Route that remains names the next hop (§16.4); a feature that owns
        // the method; the server itself for OPTIONS without a user; otherwise the proxy.
        let uri = try? routed.requestURI()
        let forServer = uri.map { $0.user == nil } ?? true
        // A request that came by our Route for another host's userless URI (a gateway's contact,
        // sip:10.0.0.1:5060) is the next hop's, not the server's.
        let elsewhere = routedToUs && forServer && uri.map { uri in
            proxy.map { !$0.identity.isSelf(uri) && (uri.port != nil || !$0.identity.servesDomain(uri.host)) } ?? false
        } ?? false
        let destination: Destination
        if proxy != nil, routed.contains(.route) || elsewhere {
            destination = .nextHop
        } else if let handler = handlers.withLockedValue({ $0[method] }), forServer || method != .options, handler.claims(routed) {
            destination = .handler(handler)
        } else if let proxy, !forServer || (uri.map { !proxy.identity.servesDomain($0.host) } ?? false) {
            destination = .proxy
        } else {
            destination = .server
        }

        // Authentication (RFC 3261 §22): requests answered here get 401, forwarded ones from our own
        // users 407. In-dialog requests that came by our Record-Route are not challenged again.
        if let authenticator = authenticatorBox.withLockedValue({ $0 }) {
            let inDialog = routedToUs && ((try? routed.to())??.tag != nil)
            var proxying = false
            var check = !inDialog
            switch destination {
            case .handler: break
            case .server: check = false
            case .nextHop, .proxy:
                proxying = true
                let fromHost = ((try? routed.from()) ?? nil)?.uri.host ?? ""
                check = check && (proxy?.identity.servesDomain(fromHost) ?? false)
            }
            if check {
                switch authenticator.authenticate(transaction, request: routed, proxying: proxying) {
                case .accepted: break
                case .answered: return
                case .pending(let outcome):
                    outcome.whenSuccess { [self, routed, routedToUs, ownRoutes] outcome in
                        if case .accepted = outcome {
                            dispatch(transaction, request: routed, to: destination, routedToUs: routedToUs, ownRoutes: ownRoutes,
                                     method: method)
                        }
                    }
                    return
                }
            }
        }
        dispatch(transaction, request: routed, to: destination, routedToUs: routedToUs, ownRoutes: ownRoutes, method: method)
    }

    private enum Destination { case nextHop, handler(any SIPRequestHandler), server, proxy }

    /// The last stage: the proxy, the feature that owns the method, or the server's own answer.
    private func dispatch(_ transaction: ServerTransaction, request routed: SIPMessage, to destination: Destination,
                          routedToUs: Bool, ownRoutes: [SIPURI], method: SIPMethod) {
        let proxy = proxyBox.withLockedValue { $0 }
        switch destination {
        case .nextHop:
            proxy?.proxy.route(transaction, request: routed, routedToUs: true, ownRoutes: ownRoutes)
        case .handler(let handler):
            if let accepted = handler.acceptedBodyTypes, refusesBody(transaction, accepting: accepted) { return }
            handler.handle(transaction)
        case .proxy:
            proxy?.proxy.route(transaction, request: routed, routedToUs: routedToUs, ownRoutes: ownRoutes)
        case .server:
            if refusesBody(transaction, accepting: configuration.acceptedBodyTypes) { return }
            if method == .options {
                answerOptions(transaction)
            } else if Self.knownMethods.contains(method) {
                transaction.respond(SIPStatus(405), headers: [(.allow, allowValue)])
            } else {
                transaction.respond(SIPStatus(501), headers: [(.allow, allowValue)])
            }
        }
    }

    /// RFC 3261 §16.4: a strict-routing previous hop put our Record-Route URI into the Request-URI
    /// (the last Route becomes the Request-URI again); a loose-routing one left our URI as the top
    /// Route (it is removed). Returns whether either happened: the request was routed to us.
    /// Removes Tern's own Route entries (and a strict router's Request-URI); `removed` gets the ones
    /// that carried a user part (an application server's way back, RFC 3261 §16.4 with TS 24.229's ODI).
    static func processRoutes(_ request: inout SIPMessage, identity: LocalIdentity) -> Bool {
        var removed: [SIPURI] = []
        return processRoutes(&request, identity: identity, removed: &removed)
    }

    static func processRoutes(_ request: inout SIPMessage, identity: LocalIdentity, removed: inout [SIPURI]) -> Bool {
        var routedToUs = false
        if let uri = try? request.requestURI(), identity.isSelf(uri), uri.user == nil || uri.parameters.contains("lr"),
           let last = (try? request.routes())?.last {
            request.setRequestURI(last.uri)
            var routes = (try? request.routes()) ?? []
            routes.removeLast()
            request.removeHeaders(.route)
            for route in routes { request.appendHeader(.route, route.description) }
            routedToUs = true
        }
        while let top = (try? request.routes())?.first, identity.isSelf(top.uri) {
            if top.uri.user != nil { removed.append(top.uri) }
            request.dropFirstValue(.route)
            routedToUs = true
        }
        return routedToUs
    }

    private func unsupportedExtensions(_ request: SIPMessage) -> [String] {
        var tags = request.proxyRequire
        if request.method != .cancel { tags += request.require }
        guard !tags.isEmpty else { return [] }
        let supported = capabilities.withLockedValue { $0.supportedLowercased }
        var seen = Set<String>()
        return tags.filter { tag in
            let lower = tag.lowercased()
            return !supported.contains(lower) && seen.insert(lower).inserted
        }
    }

    /// A request answered here whose body has a required part of a type not accepted gets 415
    /// with Accept (RFC 3261 §8.2.3, §20.11; RFC 3204 §3); a proxy passes such bodies untouched.
    private func refusesBody(_ transaction: ServerTransaction, accepting accepted: [String]) -> Bool {
        let required = transaction.request.requiredBodyTypes
        guard let unknown = required.first(where: { type in !accepted.contains { $0.caseInsensitiveEquals(type) } }) else { return false }
        transaction.respond(SIPStatus(415, "Required Body Not Understood: " + unknown),
                            headers: [(.accept, accepted.joined(separator: ", "))])
        return true
    }

    /// RFC 3261 §11.2: an OPTIONS answer says what the server can do.
    private func answerOptions(_ transaction: ServerTransaction) {
        var headers: [(SIPHeaderName, String)] = [(.allow, allowValue)]
        headers.append((.accept, configuration.acceptedBodyTypes.joined(separator: ", ")))
        headers.append((.acceptEncoding, "gzip, deflate, identity"))
        let supported = supportedExtensions
        if !supported.isEmpty {
            headers.append((.supported, supported.joined(separator: ", ")))
        }
        if let server = configuration.serverHeader { headers.append((.server, server)) }
        transaction.respond(SIPStatus(200), headers: headers)
    }

    public func handleCancel(_ transaction: ServerTransaction, invite: ServerTransaction?) {
        if let proxy = proxyBox.withLockedValue({ $0 }), proxy.proxy.cancel(transaction, invite: invite) {
            return
        }
        // RFC 3261 §9.2: no matching transaction → 481; otherwise 200 for the CANCEL, and an INVITE
        // still without a final response ends with 487.
        guard let invite else {
            transaction.respond(SIPStatus(481))
            return
        }
        transaction.respond(SIPStatus(200))
        if !invite.isAnsweredFinally {
            invite.respond(SIPStatus(487))
        }
    }

    public func handleACK(_ ack: InboundMessage, transaction: ServerTransaction?) {
        // Tern never answers an INVITE with 2xx itself, so an ACK that no transaction absorbed
        // belongs to a proxied 2xx (or is stray): it goes on along its route (RFC 3261 §16.11).
        guard let proxy = proxyBox.withLockedValue({ $0 }) else { return }
        var message = ack.message
        let routedToUs = Self.processRoutes(&message, identity: proxy.identity)
        proxy.proxy.forwardACK(message, routedToUs: routedToUs)
    }

    public func handleStrayResponse(_ response: InboundMessage) {
        if let proxy = proxyBox.withLockedValue({ $0 }) {
            proxy.proxy.forwardStrayResponse(response)
        }
    }

    public func serverTransactionTimedOut(_ transaction: ServerTransaction) {
        logger.debug("no ACK for final response", metadata: ["sip.call_id": "\(transaction.request.callID ?? "")"])
    }

    public func serverTransactionTransportFailed(_ transaction: ServerTransaction) {
        logger.debug("response could not be sent", metadata: ["sip.call_id": "\(transaction.request.callID ?? "")"])
    }
}
