import CoreProxy
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SIP
import Testing

/// What the server answers by itself, over real sockets: OPTIONS, 405/501 with Allow, 420, 483,
/// 400 with the fault named, 505, 416, CANCEL matching, and every RFC 4475 request.
@Suite(.timeLimit(.minutes(1)))
struct StatelessRepliesEndToEndTests {
    static let rfc4475 = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("SIPTests/Fixtures/rfc4475")

    /// The status each RFC 4475 request gets when sent over TCP; nil means no response (dropped, or
    /// the connection is closed because the Content-Length makes the stream unframeable).
    /// The status each RFC 4475 request gets when sent over TCP; nil means no response in time (dropped,
    /// the connection closed because the Content-Length makes the stream unframeable, or forwarded to
    /// a next hop that never answers). Requests for a user are proxied: nobody is registered, so 404.
    static let tortureAnswers: [(String, Int?)] = [
        ("valid/wsinv.dat", 480), ("valid/intmeth.dat", 404), ("valid/esc01.dat", 404), ("valid/escnull.dat", 200),
        ("valid/esc02.dat", 501), ("valid/lwsdisp.dat", 404), ("valid/longreq.dat", 404), ("valid/semiuri.dat", 404),
        ("valid/transports.dat", 404), ("valid/mpart01.dat", nil),
        ("invalid/badinv01.dat", 400), ("invalid/ncl.dat", nil), ("invalid/scalar02.dat", 400),
        ("invalid/quotbal.dat", 400), ("invalid/ltgtruri.dat", 400), ("invalid/lwsruri.dat", 400),
        ("invalid/lwsstart.dat", 400), ("invalid/trws.dat", 400), ("invalid/escruri.dat", 400),
        ("invalid/baddate.dat", 404), ("invalid/regbadct.dat", 400), ("invalid/badaspec.dat", 400),
        ("invalid/badvers.dat", 505), ("invalid/mismatch01.dat", 400), ("invalid/mismatch02.dat", 400),
        ("invalid/badbranch.dat", 404), ("invalid/insuf.dat", 400), ("invalid/unkscm.dat", 416),
        ("invalid/novelsc.dat", 416), ("invalid/bext01.dat", 420), ("invalid/multi01.dat", 400),
        ("invalid/mcl01.dat", nil), ("invalid/zeromf.dat", 483), ("invalid/inv2543.dat", 404),
        // REGISTER cases of RFC 4475 §3.3, now that the registrar answers them.
        ("invalid/cparam01.dat", 200), ("invalid/cparam02.dat", 200), ("invalid/regescrt.dat", 200),
        ("invalid/unksm2.dat", 400), ("invalid/regaut01.dat", 200),
    ]

    @Test(arguments: tortureAnswers)
    func tortureRequestOverTCP(_ name: String, _ expected: Int?) async throws {
        let bytes = try Data(contentsOf: Self.rfc4475.appendingPathComponent(name))
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await client.send(ByteBuffer(bytes: bytes))
            if let expected {
                var response = try await client.receive()
                while response.statusCode == 100 { response = try await client.receive() }
                #expect(response.statusCode == expected, "\(name): \(response.statusCode ?? 0) \(response.reasonPhrase ?? "")")
            } else {
                #expect(await client.receiveIfAny(timeout: .milliseconds(300)) == nil)
            }
            await client.close()
        }
    }

    @Test func badRequestNamesTheFault() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let request = sipRequest("OPTIONS").replacingOccurrences(of: "CSeq: 1 OPTIONS", with: "CSeq: 1 INVITE")
            try await client.send(request)
            let response = try await client.receive()
            #expect(response.statusCode == 400)
            #expect(response.reasonPhrase == "CSeq Method Does Not Match Request-Line")
            try await client.send(sipRequest("OPTIONS").replacingOccurrences(of: "Max-Forwards: 70", with: "Max-Forwards: many"))
            let second = try await client.receive()
            #expect(second.statusCode == 400)
            #expect(second.reasonPhrase == "Bad Max-Forwards: not a number from 0 to 255")
            await client.close()
        }
    }

    @Test func unanswerableGarbageIsDroppedAndServerKeepsServing() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await client.send("this is not SIP\r\n\r\n")
            try await client.send("INVITE sip:x SIP/2.0\r\nCall-ID: only\r\n\r\n")
            #expect(await client.receiveIfAny(timeout: .milliseconds(200)) == nil)
            try await client.send(sipRequest("OPTIONS"))
            #expect(try await client.receive().statusCode == 200)
            await client.close()
        }
    }

    @Test func unsupportedVersionGets505() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await client.send(sipRequest("OPTIONS").replacingOccurrences(of: "SIP/2.0\r\n", with: "SIP/3.0\r\n"))
            let response = try await client.receive()
            #expect(response.statusCode == 505)
            await client.close()
        }
    }

    @Test func optionsAnswerDescribesTheServer() async throws {
        try await withTestServer(pipeline: RequestPipeline.Configuration(supportedExtensions: ["path", "gruu"])) { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await client.send(sipRequest("OPTIONS", extraHeaders: ["Require: gruu"]))
            let response = try await client.receive()
            #expect(response.statusCode == 200)
            #expect(Set(response.allow) == ["ACK", "CANCEL", "OPTIONS", "REGISTER"])
            #expect(response.supported == ["path", "gruu", "outbound"], "configured tags, then the registrar's")
            #expect(response.firstValue(.server) == "Tern")
            #expect(response.acceptEncodings.contains("gzip"))
            #expect(try response.to()?.tag != nil)
            try await client.send(sipRequest("OPTIONS", extraHeaders: ["Require: 100rel, gruu", "Proxy-Require: foo"]))
            let refused = try await client.receive()
            #expect(refused.statusCode == 420)
            #expect(Set(refused.unsupported) == ["foo", "100rel"])
            await client.close()
        }
    }

    @Test func knownMethodWithoutHandlerGets405UnknownGets501() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await client.send(sipRequest("SUBSCRIBE", extraHeaders: ["Event: presence"]))
            let notAllowed = try await client.receive()
            #expect(notAllowed.statusCode == 405)
            #expect(notAllowed.allow.contains("OPTIONS"))
            try await client.send(sipRequest("FROBNICATE"))
            let unknown = try await client.receive()
            #expect(unknown.statusCode == 501)
            #expect(!unknown.allow.isEmpty)
            await client.close()
        }
    }

    /// Holds INVITEs without answering, so CANCEL has something to cancel.
    final class HoldingInviteHandler: SIPRequestHandler {
        let methods: [SIPMethod] = [.invite]
        func handle(_ transaction: ServerTransaction) {}
    }

    @Test func cancelEndsPendingInviteWith487() async throws {
        // Short timers, T2 = 2·T1: an unabsorbed 487 would come back every 200 ms.
        let timers = TransactionTimers(t1: .milliseconds(100), t2: .milliseconds(200), t4: .milliseconds(500))
        try await withTestServer(timers: timers, configure: { $0.pipeline.register(HoldingInviteHandler()) }) { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let branch = SIPIdentifiers.branch()
            let callID = SIPIdentifiers.callID()
            // Only this call's answers count: ports are reused by tests side by side, and a late answer
            // from another test's server can reach this socket.
            func next() async throws -> SIPMessage {
                while true {
                    let message = try await client.receive()
                    if message.callID == callID { return message }
                }
            }
            try await client.send(sipRequest("INVITE", branch: branch, callID: callID))
            #expect(try await next().statusCode == 100)
            try await client.send(sipRequest("CANCEL", branch: branch, callID: callID))
            var statuses: [String: Int] = [:]
            for _ in 0..<2 {
                let response = try await next()
                statuses[(try response.cseq())?.method.rawValue ?? ""] = response.statusCode
            }
            #expect(statuses == ["CANCEL": 200, "INVITE": 487])
            // The ACK for the 487 is absorbed: the INVITE transaction is confirmed (RFC 3261 §17.2.1),
            // which stops the retransmissions of the 487.
            try await client.send(sipRequest("ACK", branch: branch, callID: callID))
            let key = try TransactionKey.server(for: try SIPMessageParser().parse(sipRequest("INVITE", branch: branch, callID: callID)))
            let deadline = ContinuousClock.now + .seconds(5)
            while let state = server.server.transactionLayer.serverTransaction(key)?.machineState, state == .completed,
                  ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(server.server.transactionLayer.serverTransaction(key)?.machineState != .completed)
            // Copies already on their way are drained; then nothing more comes.
            while await client.receiveIfAny(timeout: .milliseconds(300)) != nil {}
            #expect(await client.receiveIfAny(timeout: .milliseconds(700)) == nil)
            await client.close()
        }
    }

    @Test func cancelWithoutTransactionGets481() async throws {
        try await withTestServer { server in
            let client = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            // Retransmitted like a UDP client would (Timer E): one datagram may be lost on a loaded machine.
            let cancel = sipRequest("CANCEL")
            var answer: SIPMessage?
            for _ in 0..<5 where answer == nil {
                try await client.send(cancel)
                answer = await client.receiveIfAny(timeout: .seconds(1))
            }
            #expect(answer?.statusCode == 481)
            await client.close()
        }
    }
}
