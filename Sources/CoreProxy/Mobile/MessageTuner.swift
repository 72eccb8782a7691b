public import SIP
import NIOCore
import Metrics

/// Applies the first matching ``MessageTuningRule`` to a message on its way out, and drops from an
/// SDP offer the media a registered device said it does not take (RFC 3840 feature tags).
public final class MessageTuner: Sendable {
    public let rules: [MessageTuningRule]
    /// Disable, in offers sent to a device that registered media feature tags, the media types it did
    /// not register.
    public let dropUnregisteredMedia: Bool
    private let tuned = Counter(label: "tern.tuning.messages")
    private let headersRemoved = Counter(label: "tern.tuning.headers_removed")
    private let bodiesCompressed = Counter(label: "tern.tuning.bodies_compressed")
    private let bodiesDecoded = Counter(label: "tern.tuning.bodies_decoded")
    private let mediaDisabled = Counter(label: "tern.tuning.media_disabled")

    public init(rules: [MessageTuningRule], dropUnregisteredMedia: Bool = true) {
        self.rules = rules
        self.dropUnregisteredMedia = dropUnregisteredMedia
    }

    /// Whether a response can ever change.
    public var tunesResponses: Bool { !rules.isEmpty }

    /// Tunes `message` for `peer`; returns how to serialize it.
    public func tune(_ message: inout SIPMessage, for peer: TuningPeer) -> SIPMessage.SerializationOptions {
        let method = message.method ?? ((try? message.cseq()) ?? nil)?.method
        let tuning = rules.first { $0.matches(peer, method: method) }?.tuning
        let registeredMedia = dropUnregisteredMedia && message.isRequest ? peer.mediaTypes : nil
        guard tuning != nil || registeredMedia != nil else { return SIPMessage.SerializationOptions() }
        if tuning != nil { tuned.increment() }
        tuneSDP(&message, tuning: tuning, registeredMedia: registeredMedia)
        guard let tuning else { return SIPMessage.SerializationOptions() }
        if let keep = tuning.keepHeaders {
            let required = Self.requiredHeaders(of: message)
            let removed = message.keepHeaders { keep.contains($0) || required.contains($0) }
            if removed > 0 { headersRemoved.increment(by: removed) }
        }
        codeBody(&message, tuning: tuning, peer: peer)
        return SIPMessage.SerializationOptions(compactEveryHeader: tuning.compactHeaders)
    }

    // MARK: - Headers

    /// What the protocol needs whatever the configuration lists: routing and dialog headers,
    /// Content-*, authentication, the extension negotiation and the headers of the extensions the
    /// message names in Require, Proxy-Require or Supported, and those its status code calls for.
    static func requiredHeaders(of message: SIPMessage) -> Set<SIPHeaderName> {
        var names = alwaysKept
        var extensions: [String] = []
        for header in [SIPHeaderName.require, .proxyRequire, .supported] {
            for value in message.values(header) {
                extensions += value.split(separator: ",").map { $0.trimmingWhitespace.lowercased() }
            }
        }
        for option in extensions {
            if let headers = extensionHeaders[option] { names.formUnion(headers) }
        }
        switch message.statusCode {
        case 405: names.insert(.allow)
        case 415: names.formUnion([.accept, .acceptEncoding, SIPHeaderName("Accept-Language")])
        default: break
        }
        return names
    }

    private static let alwaysKept: Set<SIPHeaderName> = [
        .via, .from, .to, .callID, .cseq, .maxForwards, .contact, .route, .recordRoute,
        .contentType, .contentLength, .contentEncoding, SIPHeaderName("Content-Disposition"), SIPHeaderName("Content-Language"),
        .require, .proxyRequire, .supported, .unsupported, .expires, .minExpires,
        .event, .subscriptionState, .sipETag, .sipIfMatch,
        .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate, SIPHeaderName("Authentication-Info"),
        SIPHeaderName("Refer-To"), .retryAfter, SIPHeaderName("Feature-Caps"),
    ]

    /// Headers that carry an option tag's procedure (RFC 3262, 4028, 3327, 3891, 3329, 5626, 4488).
    private static let extensionHeaders: [String: [SIPHeaderName]] = [
        "100rel": [SIPHeaderName("RSeq"), SIPHeaderName("RAck")],
        "timer": [SIPHeaderName("Session-Expires"), SIPHeaderName("Min-SE")],
        "path": [.path, .serviceRoute],
        "replaces": [SIPHeaderName("Replaces")],
        "sec-agree": [SIPHeaderName("Security-Client"), SIPHeaderName("Security-Server"), SIPHeaderName("Security-Verify")],
        "outbound": [SIPHeaderName("Flow-Timer")],
        "norefersub": [SIPHeaderName("Refer-Sub")],
    ]

    // MARK: - SDP

    private func tuneSDP(_ message: inout SIPMessage, tuning: MessageTuning?, registeredMedia: Set<String>?) {
        let keepCodecs = tuning?.sdpKeepCodecs
        let removeMedia = tuning?.sdpRemoveMedia ?? []
        guard keepCodecs != nil || !removeMedia.isEmpty || registeredMedia != nil,
              message.body.readableBytes > 0,
              let type = message.firstValue(.contentType)?.lowercased(), type.hasPrefix("application/sdp"),
              let plain = decodedBody(message)
        else { return }
        guard var sdp = try? SessionDescription(parsing: plain) else { return }
        var changed = false
        for index in sdp.media.indices where sdp.media[index].port != 0 {
            let mediaType = sdp.media[index].mediaType.lowercased()
            let unwanted = removeMedia.contains(mediaType) || (registeredMedia.map { !$0.contains(mediaType) } ?? false)
            if !unwanted, let keepCodecs {
                var trimmed = sdp.media[index]
                if trimmed.removeFormats(trimmed.codecs.filter { codec in
                    !(codec.encodingName.map { name in keepCodecs.contains { $0.caseInsensitiveEquals(name) } } ?? false)
                }.map(\.format)) > 0 {
                    // A stream left with no codec is refused rather than sent empty.
                    if trimmed.formats.isEmpty {
                        disable(&sdp.media[index])
                    } else {
                        sdp.media[index] = trimmed
                    }
                    changed = true
                }
            } else if unwanted {
                disable(&sdp.media[index])
                mediaDisabled.increment()
                changed = true
            }
        }
        guard changed else { return }
        message.removeHeaders(.contentEncoding)
        message.setBody(sdp.rendered())
    }

    /// RFC 3264 §6/§5.1: port 0 refuses the stream; one format stays for the m= line's grammar.
    private func disable(_ media: inout SessionDescription.Media) {
        media.port = 0
        media.portCount = nil
        media.formats = Array(media.formats.prefix(1))
        media.lines.removeAll()
    }

    // MARK: - Body coding

    /// The body with its Content-Encoding undone, or nil when it cannot be.
    private func decodedBody(_ message: SIPMessage) -> ByteBuffer? {
        guard let encoding = message.firstValue(.contentEncoding) else { return message.body }
        guard let coding = ContentCoding(headerValue: encoding.trimmingWhitespace) else { return nil }
        return try? ContentCoding.decode(message.body, coding: coding)
    }

    private func codeBody(_ message: inout SIPMessage, tuning: MessageTuning, peer: TuningPeer) {
        guard message.body.readableBytes > 0 else { return }
        let wanted = tuning.gzip == .always || (tuning.gzip == .auto && peer.acceptsGzip)
        if message.contains(.contentEncoding) {
            // A coded body for a peer that did not ask for one: undone, so it can read it.
            guard !wanted, let plain = decodedBody(message) else { return }
            message.removeHeaders(.contentEncoding)
            message.setBody(plain)
            bodiesDecoded.increment()
            return
        }
        guard wanted, message.body.readableBytes >= tuning.gzipMinimumBytes,
              let compressed = try? ContentCoding.encode(message.body, coding: .gzip),
              compressed.readableBytes < message.body.readableBytes
        else { return }
        message.setBody(compressed)
        message.setHeader(.contentEncoding, "gzip")
        bodiesCompressed.increment()
    }
}
