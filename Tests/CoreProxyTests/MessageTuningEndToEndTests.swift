import CoreProxy
import NIOCore
import SIP
import Testing

/// What a phone on a costly link receives once the forwarding tunings apply: fewer headers, fewer
/// codecs and media, compact names, gzip bodies (Kamailio's keep_hf, sdp_keep_codecs_by_name,
/// sdp_remove_media; RFC 3261 §7.3.3; RFC 3261 §20.12).
@Suite(.timeLimit(.minutes(1)))
struct MessageTuningEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent

    /// A REGISTER with the given Contact parameters and extra headers; returns the 200 OK.
    static func register(_ agent: Agent, contactParameters: String = "", uriParameters: String = "",
                         headers: [String] = []) async throws -> SIPMessage {
        agent.cseq += 1
        var lines = [
            "REGISTER sip:tern.test SIP/2.0",
            "Via: SIP/2.0/\(agent.transportToken) \(agent.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: <sip:\(agent.user)@tern.test>;tag=\(SIPIdentifiers.tag())", "To: <sip:\(agent.user)@tern.test>",
            "Call-ID: reg-\(agent.user)-\(agent.port)", "CSeq: \(agent.cseq) REGISTER",
            "Contact: <sip:\(agent.user)@\(agent.viaHost);transport=\(agent.client.transport.rawValue)\(uriParameters)>\(contactParameters)",
            "Expires: 600",
        ]
        lines += headers
        try await agent.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
        while true {
            let message = try await agent.client.receive()
            if message.isRequest {
                agent.parked.append(message)
                continue
            }
            return message
        }
    }

    static let offer = [
        "v=0", "o=alice 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 4000 RTP/AVP 0 8 18 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendrecv",
        "m=video 5000 RTP/AVP 96", "a=rtpmap:96 H264/90000", "a=fmtp:96 profile-level-id=42e01f", "a=sendrecv",
    ].joined(separator: "\r\n") + "\r\n"

    /// A typical softphone INVITE with an audio and video offer.
    static func invite(from alice: Agent, to user: String, callID: String) -> String {
        let lines = [
            "INVITE sip:\(user)@tern.test SIP/2.0",
            "Via: SIP/2.0/UDP \(alice.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: \"Alice\" <sip:alice@tern.test>;tag=a1", "To: <sip:\(user)@tern.test>",
            "Call-ID: \(callID)", "CSeq: 1 INVITE", "Contact: <sip:alice@\(alice.viaHost)>",
            "User-Agent: TernPhone/1.0 (Linux; x86_64)",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY, REFER, UPDATE, INFO, PRACK",
            "Supported: replaces, timer", "Session-Expires: 1800", "Subject: lunch?", "Organization: Example",
            "Accept: application/sdp", "Date: Fri, 27 Nov 2026 10:00:00 GMT", "Content-Type: application/sdp",
        ]
        return lines.joined(separator: "\r\n") + "\r\nContent-Length: \(offer.utf8.count)\r\n\r\n" + offer
    }

    static let mobileRule = MessageTuningRule(
        userAgents: ["ternphone"],
        tuning: MessageTuning(keepHeaders: [], sdpKeepCodecs: ["PCMU", "telephone-event"], sdpRemoveMedia: ["video"],
                              compactHeaders: true, gzip: .never))

    @Test func trimmedHeadersAndSDPOnTheWire() async throws {
        try await withTestServer(tunings: [Self.mobileRule]) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await Self.register(bob, headers: ["User-Agent: TernPhone/2.0"])
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.client.send(Self.invite(from: alice, to: "bob", callID: "trim-1"))
            let received = try await bob.next(.invite)
            // Names as they appear on the wire: compact where RFC 3261 §7.3.3 has a form.
            let names = received.headers.map(\.name)
            #expect(names == ["Record-Route", "v", "v", "Max-Forwards", "f", "t", "i", "CSeq", "m", "k", "x", "c", "l"])
            #expect(received.firstValue(SIPHeaderName("Session-Expires")) == "1800", "timer is supported: its header stays")
            let expectedSDP = [
                "v=0", "o=alice 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
                "m=audio 4000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
                "a=sendrecv", "m=video 0 RTP/AVP 96",
            ].joined(separator: "\r\n") + "\r\n"
            #expect(String(buffer: received.body) == expectedSDP)
            try await bob.answer(received, 486)
            _ = try await alice.response(callID: "trim-1")
        }
    }

    @Test func untunedPeerGetsTheRequestAsItCame() async throws {
        try await withTestServer(tunings: [Self.mobileRule]) { server in
            let carol = try await Agent.connect(server, user: "carol")
            _ = try await Self.register(carol, headers: ["User-Agent: DeskPhone/9"])
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.client.send(Self.invite(from: alice, to: "carol", callID: "trim-2"))
            let received = try await carol.next(.invite)
            #expect(received.contains(.userAgent) && received.contains(SIPHeaderName("Subject")))
            #expect(String(buffer: received.body) == Self.offer)
            try await carol.answer(received, 486)
            _ = try await alice.response(callID: "trim-2")
        }
    }

    @Test func offersToADeviceLoseTheMediaItDidNotRegister() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await Self.register(bob, contactParameters: ";audio")
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.client.send(Self.invite(from: alice, to: "bob", callID: "media-1"))
            let received = try await bob.next(.invite)
            let sdp = try SessionDescription(parsing: received.body)
            #expect(sdp.media.map(\.port) == [4000, 0], "video refused for an audio-only device")
            #expect(sdp.media.first?.formats == ["0", "8", "18", "101"], "no rule: every audio codec stays")
            try await bob.answer(received, 486)
            _ = try await alice.response(callID: "media-1")
        }
    }

    static let gzipRule = MessageTuningRule(methods: [.message], tuning: MessageTuning(gzip: .auto, gzipMinimumBytes: 0))

    static func message(from alice: Agent, to user: String, callID: String, body: ByteBuffer, encoding: String? = nil) -> ByteBuffer {
        var lines = [
            "MESSAGE sip:\(user)@tern.test SIP/2.0",
            "Via: SIP/2.0/UDP \(alice.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: <sip:alice@tern.test>;tag=m1", "To: <sip:\(user)@tern.test>",
            "Call-ID: \(callID)", "CSeq: 1 MESSAGE", "Content-Type: text/plain",
        ]
        if let encoding { lines.append("Content-Encoding: \(encoding)") }
        var out = ByteBuffer(string: lines.joined(separator: "\r\n") + "\r\nContent-Length: \(body.readableBytes)\r\n\r\n")
        var copy = body
        out.writeBuffer(&copy)
        return out
    }

    @Test func gzipForAPeerThatAdvertisesItAndNoneForOneThatDoesNot() async throws {
        try await withTestServer(tunings: [Self.gzipRule]) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await Self.register(bob, headers: ["Accept-Encoding: gzip"])
            let carol = try await Agent.connect(server, user: "carol")
            _ = try await Self.register(carol)
            let alice = try await Agent.connect(server, user: "alice")
            let text = String(repeating: "Are we still meeting at noon in the usual place? ", count: 12)

            try await alice.client.send(Self.message(from: alice, to: "bob", callID: "gz-1", body: ByteBuffer(string: text)))
            let toBob = try await bob.next(.message)
            #expect(toBob.firstValue(.contentEncoding) == "gzip")
            #expect(toBob.body.readableBytes < text.utf8.count / 4)
            #expect(String(buffer: try ContentCoding.decode(toBob.body, coding: .gzip)) == text)
            try await bob.answer(toBob, 200)
            #expect(try await alice.response(callID: "gz-1").statusCode == 200)

            try await alice.client.send(Self.message(from: alice, to: "carol", callID: "gz-2", body: ByteBuffer(string: text)))
            let toCarol = try await carol.next(.message)
            #expect(!toCarol.contains(.contentEncoding))
            #expect(String(buffer: toCarol.body) == text)
            try await carol.answer(toCarol, 200)
            _ = try await alice.response(callID: "gz-2")

            // A gzip body for a peer that cannot read it arrives decoded.
            let compressed = try ContentCoding.encode(ByteBuffer(string: text), coding: .gzip)
            try await alice.client.send(Self.message(from: alice, to: "carol", callID: "gz-3", body: compressed, encoding: "gzip"))
            let decoded = try await carol.next(.message)
            #expect(!decoded.contains(.contentEncoding))
            #expect(String(buffer: decoded.body) == text)
            try await carol.answer(decoded, 200)
            _ = try await alice.response(callID: "gz-3")
        }
    }
}
