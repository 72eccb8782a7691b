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

/// The vectors of SIPTests' ISUP suite that these tests reuse.
enum ISUPMessageTestsVectors {
    static let iamA: [UInt8] = "01 10 48 00 0a 03 02 0a 08 83 10 29 99 24 00 80 0f 0a 08 03 13 94 03 42 30 93 20 f2 15 36 19 08 00 00 15 ff ff ff ff ff ff ff ff ff ff 1d 45 38 cb 20 00"
        .split(separator: " ").compactMap { UInt8($0, radix: 16) }
}
