public import NIOCore
public import SIP

/// The next application server an initial request visits: the Route entries to push (the server,
/// then this proxy's way back) and the header lines it gains.
public struct ApplicationServerVisit: Sendable {
    public var routes: [String]
    /// Set on the request (replacing any line of the same name), e.g. P-Served-User.
    public var addedHeaders: [(SIPHeaderName, String)]

    public init(routes: [String], addedHeaders: [(SIPHeaderName, String)]) {
        self.routes = routes
        self.addedHeaders = addedHeaders
    }
}

/// Routes initial requests through application servers before their destination (TS 24.229 ISC).
public protocol ApplicationServerRouting: Sendable {
    /// - Parameter ownRoutes: this proxy's Route entries with a user part that the request carried
    ///   (the way back from a server it visited).
    /// - Returns: nil when the request goes on to its destination.
    func nextApplicationServer(for request: SIPMessage, source: SocketAddress, ownRoutes: [SIPURI]) -> ApplicationServerVisit?
}
