import CoreProxy
import IMS
import NIOCore
import Routing
import SIP
import Testing

/// SIP-I through the proxy: an INVITE with SDP and an ISUP IAM in multipart/mixed, routed to a
/// gateway under a rewritten number.
@Suite(.timeLimit(.minutes(1)))
struct SIPIEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent
    typealias Gateway = RoutingEndToEndTests.Gateway

    static let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"

    /// An INVITE to `user` whose body is the SDP and `isup` in multipart/mixed (RFC 3204 framing).
    static func invite(_ caller: Agent, to user: String, callID: String, isup: [UInt8]) -> ByteBuffer {
        var body = ByteBuffer(string: "--tern-boundary\r\nContent-Type: application/sdp\r\n\r\n" + sdp
                              + "\r\n--tern-boundary\r\nContent-Type: application/ISUP; version=itu-t92+\r\n"
                              + "Content-Disposition: signal; handling=optional\r\n\r\n")
        body.writeBytes(isup)
        body.writeString("\r\n--tern-boundary--\r\n")
        let head = ["INVITE sip:\(user)@tern.test SIP/2.0", "Via: SIP/2.0/UDP \(caller.viaHost);branch=\(SIPIdentifiers.branch());rport",
                    "Max-Forwards: 70", "From: <sip:+4930555@tern.test>;tag=sipi", "To: <sip:\(user)@tern.test>", "Call-ID: \(callID)",
                    "CSeq: 1 INVITE", "Contact: <sip:caller@\(caller.viaHost)>", "MIME-Version: 1.0",
                    "Content-Type: multipart/mixed;boundary=tern-boundary", "Content-Length: \(body.readableBytes)", "", ""]
        var out = ByteBuffer(string: head.joined(separator: "\r\n"))
        out.writeBuffer(&body)
        return out
    }

    static func withGateway<T: Sendable>(_ body: @Sendable (RunningServer, Gateway) async throws -> T) async throws -> T {
        let router = Router(tables: RoutingTables(), cache: SharedCache())
        return try await withTestServer(configure: { server in
            server.proxy.setRouter(router)
            server.proxy.addTrustPolicy(SIPIInterworking())
        }) { server in
            let gateway = try await Gateway(server)
            gateway.answer(486)
            router.replace(RoutingTables(dialplan: [
                DialplanRule(name: "international", match: .regex(try NSRegularExpressionBox("00(\\d+)")), rewrite: "+$1",
                             action: .uri(RoutingEndToEndTests.uri(gateway.uri))),
            ], probeInterval: 0))
            return try await body(server, gateway)
        }
    }

    @Test func theCalledPartyNumberFollowsTheRewrittenRequestURI() async throws {
        try await Self.withGateway { server, gateway in
            let caller = try await Agent.connect(server, user: "pstn")
            try await caller.client.send(Self.invite(caller, to: "004930123456", callID: "sipi-1", isup: ISUPMessageTestsVectors.iamA))
            let busy = try await caller.response(callID: "sipi-1")
            #expect(busy.statusCode == 486 && busy.firstValue(.reason) == "Q.850;cause=17", "RFC 3398: busy is cause 17")
            let received = try #require(gateway.received.last)
            #expect(received.requestURIString?.hasPrefix("sip:+4930123456@") == true)
            let isup = try #require(received.isupMessage)
            #expect(isup.calledPartyNumber?.digits == "4930123456F" && isup.calledPartyNumber?.natureOfAddress == 4)
            #expect(isup.hopCounter == 31, "added, as sipt_destination does")
            #expect(isup.optionalValue(0xF2)?.count == 21 && isup.callingPartyNumber?.digits == "493024033902", "the rest untouched")
            // The SDP part is as it was.
            let boundary = try #require(try SIPMediaType(parsing: received.firstValue(.contentType) ?? "").parameters.unquoted("boundary"))
            let parts = try MultipartBody(parsing: received.body, boundary: boundary)
            #expect(parts.firstPart(withContentType: "application/sdp").map { String(buffer: $0.body) } == Self.sdp)
            #expect(parts.firstPart(withContentType: "application/isup")?.contentDisposition == "signal; handling=optional")
            #expect(received.firstValue(.contentLength) == String(received.body.readableBytes), "Content-Length follows the new body")
        }
    }

    @Test func aSpentHopCounterIsALoopAndARestrictedCallerAsksForPrivacy() async throws {
        try await Self.withGateway { server, gateway in
            let caller = try await Agent.connect(server, user: "pstn")
            var spent = try ISUPMessage(parsing: ISUPMessageTestsVectors.iamA)
            spent.setOptional(ISUPMessage.Parameter.hopCounter, [0])
            try await caller.client.send(Self.invite(caller, to: "004930123456", callID: "sipi-2", isup: spent.encoded))
            let refused = try await caller.response(callID: "sipi-2")
            #expect(refused.statusCode == 483)
            #expect(gateway.count == 0)
            var restricted = try ISUPMessage(parsing: ISUPMessageTestsVectors.iamA)
            restricted.setCalling("4930999", nature: 4, presentation: 1, screening: 0)
            restricted.setOptional(ISUPMessage.Parameter.hopCounter, [12])
            try await caller.client.send(Self.invite(caller, to: "004930123456", callID: "sipi-3", isup: restricted.encoded))
            #expect(try await caller.response(callID: "sipi-3").statusCode == 486)
            let received = try #require(gateway.received.last)
            #expect(received.values(.privacy) == ["id"], "presentation restricted")
            #expect(received.firstValue(.maxForwards) == "11", "the hop counter (12) bounds Max-Forwards, less this hop")
            #expect(received.isupMessage?.hopCounter == 11)
        }
    }
}

extension SIPIEndToEndTests {
    /// Dialplan rules that read the IAM (`$sipt` fields) and rewrite it (sipt_set_calling,
    /// sipt_forwarding, sipt_destination), as Kamailio's sipt module is used from its script.
    @Test func routingRulesReadAndRewriteTheISUP() async throws {
        let router = Router(tables: RoutingTables(), cache: SharedCache())
        try await withTestServer(configure: { server in
            server.proxy.setRouter(router)
            server.proxy.addTrustPolicy(SIPIInterworking())
        }) { server in
            let gateway = try await Gateway(server)
            gateway.answer(486)
            router.replace(RoutingTables(dialplan: [
                DialplanRule(name: "berlin-forwarded", match: .prefix("0049"), rewrite: "0",
                             isupConditions: [.init(field: "calling_party_number", pattern: try NSRegularExpressionBox("4930\\d+")),
                                              .init(field: "calling_party_number.screening", pattern: try NSRegularExpressionBox("[13]"))],
                             isupEdits: [.destination(number: "$user", nature: 3, hops: 31),
                                         .calling(number: "4930999", nature: 4, presentation: 1, screening: 3),
                                         .forwarding(number: "4930777", nature: 4)],
                             action: .uri(RoutingEndToEndTests.uri(gateway.uri))),
                DialplanRule(name: "others", match: .prefix("0049"), action: .reject(403, "Only Berlin")),
            ], probeInterval: 0))
            let caller = try await Agent.connect(server, user: "pstn")
            try await caller.client.send(Self.invite(caller, to: "0049301234", callID: "sipt-1", isup: ISUPMessageTestsVectors.iamA))
            #expect(try await caller.response(callID: "sipt-1").statusCode == 486)
            let received = try #require(gateway.received.last)
            #expect(received.requestURIString?.hasPrefix("sip:0301234@") == true)
            let isup = try #require(received.isupMessage)
            #expect(isup.calledPartyNumber?.digits == "0301234F" && isup.calledPartyNumber?.natureOfAddress == 3)
            #expect(isup.hopCounter == 31)
            #expect(isup.callingPartyNumber?.digits == "4930999" && isup.callingPartyNumber?.presentation == 1)
            #expect(isup.fields.first { $0.name == "redirecting_number" }?.value == "4930777")
            // Another caller's IAM fails the condition and falls to the next rule.
            var munich = try ISUPMessage(parsing: ISUPMessageTestsVectors.iamA)
            munich.setCalling("4989111", nature: 4, presentation: 0, screening: 3)
            try await caller.client.send(Self.invite(caller, to: "0049301234", callID: "sipt-2", isup: munich.encoded))
            let refused = try await caller.response(callID: "sipt-2")
            #expect(refused.statusCode == 403 && refused.reasonPhrase == "Only Berlin")
            // explain says which field decided.
            let explained = router.explain(try SIPMessageParser().parse(Self.invite(caller, to: "0049301234", callID: "sipt-3", isup: munich.encoded)))
            #expect(explained.steps.contains { $0.contains("ISUP calling_party_number does not match") })
            #expect(explained.decision == "reject")
        }
    }

    /// A BYE from the PSTN side that carries the REL says its cause in SIP too (RFC 3398 §8.2.3).
    @Test func aReleaseInABYEGivesItsCauseAsAReason() async throws {
        try await Self.withGateway { server, gateway in
            let caller = try await Agent.connect(server, user: "pstn")
            let release: [UInt8] = [0x0C, 0x02, 0x00, 0x02, 0x83, 0x9F]
            let head = ["BYE \(gateway.uri) SIP/2.0", "Via: SIP/2.0/UDP \(caller.viaHost);branch=\(SIPIdentifiers.branch());rport",
                        "Max-Forwards: 70", "Route: <sip:127.0.0.1:\(server.port(.udp));lr>", "From: <sip:+4930555@tern.test>;tag=sipi",
                        "To: <sip:+4930123456@tern.test>;tag=gw", "Call-ID: sipt-bye", "CSeq: 2 BYE",
                        "Content-Type: application/ISUP; version=itu-t92+", "Content-Length: \(release.count)", "", ""]
            var out = ByteBuffer(string: head.joined(separator: "\r\n"))
            out.writeBytes(release)
            gateway.answer(200)
            try await caller.client.send(out)
            let answered = try await caller.response(callID: "sipt-bye")
            #expect(answered.statusCode == 200, "\(answered.serializedString)")
            let bye = try #require(gateway.received.last)
            #expect(bye.method == .bye && bye.firstValue(.reason) == "Q.850;cause=31")
            #expect(Array(bye.body.readableBytesView) == release, "the body itself untouched")
        }
    }
}

/// The vectors of SIPTests' ISUP suite that these tests reuse.
enum ISUPMessageTestsVectors {
    static let iamA: [UInt8] = "01 10 48 00 0a 03 02 0a 08 83 10 29 99 24 00 80 0f 0a 08 03 13 94 03 42 30 93 20 f2 15 36 19 08 00 00 15 ff ff ff ff ff ff ff ff ff ff 1d 45 38 cb 20 00"
        .split(separator: " ").compactMap { UInt8($0, radix: 16) }
}
