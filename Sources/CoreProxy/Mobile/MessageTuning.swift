public import SIP

/// What Tern trims from a message before it leaves for a peer on a costly link (the seed's
/// forwarding tunings: Kamailio's keep_hf, sdp_keep_codecs_by_name and sdp_remove_media, compact
/// header names, gzip bodies).
public struct MessageTuning: Sendable {
    public enum Gzip: String, Sendable, CaseIterable {
        /// Never compress; a gzip body that the peer did not ask for is decoded.
        case never
        /// Compress when the peer advertised `Accept-Encoding: gzip` (in its REGISTER, or in the
        /// request being answered).
        case auto
        /// Compress whatever the peer advertised (the configuration knows it copes).
        case always
    }

    /// Headers kept besides those the protocol needs (see ``MessageTuner/requiredHeaders``); nil
    /// keeps every header.
    public var keepHeaders: Set<SIPHeaderName>?
    /// Codecs (encoding names) kept in every SDP media stream; nil keeps all.
    public var sdpKeepCodecs: [String]?
    /// Media types (`video`, `application`, ...) disabled in SDP: port 0, one format, no attributes,
    /// so the answer still lines up with the caller's offer (RFC 3264 §6, §8.2).
    public var sdpRemoveMedia: Set<String>
    /// Render every header name that has one in compact form (RFC 3261 §7.3.3).
    public var compactHeaders: Bool
    public var gzip: Gzip
    /// Bodies smaller than this are not worth a gzip header and trailer.
    public var gzipMinimumBytes: Int

    public init(keepHeaders: Set<SIPHeaderName>? = nil, sdpKeepCodecs: [String]? = nil, sdpRemoveMedia: Set<String> = [],
                compactHeaders: Bool = false, gzip: Gzip = .auto, gzipMinimumBytes: Int = 200) {
        self.keepHeaders = keepHeaders
        self.sdpKeepCodecs = sdpKeepCodecs
        self.sdpRemoveMedia = sdpRemoveMedia
        self.compactHeaders = compactHeaders
        self.gzip = gzip
        self.gzipMinimumBytes = gzipMinimumBytes
    }
}

/// Which messages a tuning applies to. Every criterion given must hold; an empty criterion holds
/// for all.
public struct MessageTuningRule: Sendable {
    /// Peer addresses (hosts or networks in CIDR form).
    public var networks: [IPNetwork]
    /// Peer host names or addresses as written in the target URI, compared case-insensitively.
    public var hosts: [String]
    /// Substrings of the peer's User-Agent (its REGISTER's, or the request's for a response).
    public var userAgents: [String]
    /// Request methods (for a response: its CSeq method).
    public var methods: Set<SIPMethod>
    public var tuning: MessageTuning

    public init(networks: [IPNetwork] = [], hosts: [String] = [], userAgents: [String] = [], methods: Set<SIPMethod> = [],
                tuning: MessageTuning) {
        self.networks = networks
        self.hosts = hosts
        self.userAgents = userAgents
        self.methods = methods
        self.tuning = tuning
    }

    func matches(_ peer: TuningPeer, method: SIPMethod?) -> Bool {
        if !methods.isEmpty {
            guard let method, methods.contains(method) else { return false }
        }
        if !networks.isEmpty || !hosts.isEmpty {
            let byNetwork = peer.addresses.contains { address in networks.contains { $0.contains(host: address) } }
            let byHost = peer.addresses.contains { address in hosts.contains { $0.caseInsensitiveEquals(address) } }
            guard byNetwork || byHost else { return false }
        }
        if !userAgents.isEmpty {
            guard let agent = peer.userAgent?.lowercased(), userAgents.contains(where: { agent.contains($0.lowercased()) })
            else { return false }
        }
        return true
    }
}

/// The receiver of a message, as far as tuning cares.
public struct TuningPeer: Sendable {
    /// The addresses it is known by: the socket address a flow reaches, and the host of its URI.
    public var addresses: [String]
    public var userAgent: String?
    public var acceptsGzip: Bool
    /// The media types a registered device announced (nil: unknown, nothing is dropped for it).
    public var mediaTypes: Set<String>?

    public init(addresses: [String], userAgent: String? = nil, acceptsGzip: Bool = false, mediaTypes: Set<String>? = nil) {
        self.addresses = addresses
        self.userAgent = userAgent
        self.acceptsGzip = acceptsGzip
        self.mediaTypes = mediaTypes
    }
}
