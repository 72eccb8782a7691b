import Foundation
import CoreProxy
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Tern as the sender: client transactions over real sockets, with retransmissions, matching and
/// the transport errors a caller must see.
@Suite(.timeLimit(.minutes(1)))
struct ClientTransactionEndToEndTests {
    static let fastTimers = TransactionTimers(t1: .milliseconds(40), t2: .milliseconds(320), t4: .milliseconds(200))

    func options(via transport: String, host: String, port: Int) throws -> SIPMessage {
        try SIPMessageParser().parse(sipRequest("OPTIONS", uri: "sip:peer@127.0.0.1:\(port)", transport: transport)
            .replacingOccurrences(of: "client.test:5060", with: "\(host):\(port)"))
    }

    @Test func udpRequestIsRetransmittedUntilAnswered() async throws {
        try await withTestServer(timers: Self.fastTimers) { server in
            let peer = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let peerPort = try #require(peer.channel.localAddress?.port)
            let outcome = NIOLockedValueBox<[String]>([])
            let request = try options(via: "UDP", host: "127.0.0.1", port: server.port(.udp))
            try server.server.transactionLayer.sendRequest(
                request, to: SIPDestination(transport: .udp, host: "127.0.0.1", port: peerPort),
                on: MultiThreadedEventLoopGroup.singleton.next()
            ) { event in
                switch event {
                case .response(let response): outcome.withLockedValue { $0.append("\(response.statusCode ?? 0)") }
                case .timeout: outcome.withLockedValue { $0.append("timeout") }
                case .transportError(let error): outcome.withLockedValue { $0.append("\(error)") }
                }
            }
            // The peer ignores the first two copies (Timer E), then answers the third.
            let first = try await peer.receive()
            _ = try await peer.receive()
            let third = try await peer.receive()
            #expect(first.serializedString == third.serializedString)
            var answer = SIPMessage.response(to: third, status: SIPStatus(200), toTag: "peer")
            answer.removeHeaders(.via)
            answer.prependHeader(.via, third.values(.via).first ?? "")
            try await peer.send(answer.serializedString)
            let deadline = ContinuousClock.now + .seconds(3)
            while outcome.withLockedValue({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(outcome.withLockedValue { $0 } == ["200"])
            await peer.close()
        }
    }

    /// Whatever the handler holds (a proxy's context, which holds the transaction) is let go once
    /// the final response is in, not kept through Timer K: kept, the pair never freed each other.
    @Test func aCompletedTransactionLetsGoOfItsHandler() async throws {
        final class Witness: Sendable {}
        // Timer F (64·T1) must outlast a loaded CI machine's delay between the send and the peer's
        // answer (at T1 = 40 ms, 2.56 s was once not enough), and Timer K (T4) every check below.
        let longTimerK = TransactionTimers(t1: .milliseconds(500), t2: .seconds(4), t4: .seconds(20))
        try await withTestServer(timers: longTimerK) { server in
            let peer = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let peerPort = try #require(peer.channel.localAddress?.port)
            let answered = NIOLockedValueBox(false)
            var witness: Witness? = Witness()
            weak let watched = witness
            let transaction = try { [witness] in
                try server.server.transactionLayer.sendRequest(
                    try options(via: "UDP", host: "127.0.0.1", port: server.port(.udp)),
                    to: SIPDestination(transport: .udp, host: "127.0.0.1", port: peerPort),
                    on: MultiThreadedEventLoopGroup.singleton.next()
                ) { event in
                    withExtendedLifetime(witness) {
                        if case .response = event { answered.withLockedValue { $0 = true } }
                    }
                }
            }()
            witness = nil
            let request = try await peer.receive()
            #expect(watched != nil, "held while the transaction waits for its answer")
            try await peer.send(SIPMessage.response(to: request, status: SIPStatus(200), toTag: "peer").serializedString)
            let deadline = ContinuousClock.now + .seconds(10)
            while !answered.withLockedValue({ $0 }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(answered.withLockedValue { $0 })
            // The handler's last call may still be returning when `answered` is seen (one loaded CI
            // run looked in that instant): a few seconds are far inside Timer K's 20 s.
            let released = ContinuousClock.now + .seconds(3)
            while watched != nil, ContinuousClock.now < released {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(transaction.machineState == .completed, "still waiting out Timer K")
            #expect(watched == nil)
            await peer.close()
        }
    }

    @Test func unansweredRequestTimesOut() async throws {
        try await withTestServer(timers: Self.fastTimers) { server in
            let peer = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let peerPort = try #require(peer.channel.localAddress?.port)
            let outcome = NIOLockedValueBox<[String]>([])
            try server.server.transactionLayer.sendRequest(
                try options(via: "UDP", host: "127.0.0.1", port: server.port(.udp)),
                to: SIPDestination(transport: .udp, host: "127.0.0.1", port: peerPort),
                on: MultiThreadedEventLoopGroup.singleton.next()
            ) { event in
                if case .timeout = event { outcome.withLockedValue { $0.append("timeout") } }
            }
            try await Task.sleep(for: .milliseconds(64 * 40 + 300))
            #expect(outcome.withLockedValue { $0 } == ["timeout"])
            await peer.close()
        }
    }

    @Test func connectFailureIsATransportError() async throws {
        // A TCP port that nobody listens on, held (bound, never listening) for the whole test so
        // that no other test running in parallel can take it: a connect gets ECONNREFUSED.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        // A sockaddr_in as its 16 bytes (family in host order, then port and address in network
        // order): which C module a field of the struct is visible through varies by build.
        var address = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: sa_family_t(AF_INET)) { family in
            for index in family.indices { address[index] = family[index] }
        }
        address[4] = 127
        address[7] = 1
        var length = socklen_t(address.count)
        let bound = address.withUnsafeMutableBytes { bytes in
            bytes.withMemoryRebound(to: sockaddr.self) { pointer in
                guard let first = pointer.baseAddress else { return false }
                return bind(holder, first, length) == 0 && getsockname(holder, first, &length) == 0
            }
        }
        try #require(bound)
        let deadPort = Int(address[2]) << 8 | Int(address[3])
        try await withTestServer { server in
            let outcome = NIOLockedValueBox<[String]>([])
            try server.server.transactionLayer.sendRequest(
                try options(via: "TCP", host: "127.0.0.1", port: server.port(.tcp)),
                to: SIPDestination(transport: .tcp, host: "127.0.0.1", port: deadPort),
                on: MultiThreadedEventLoopGroup.singleton.next()
            ) { event in
                if case .transportError(let error) = event { outcome.withLockedValue { $0.append("\(error)") } }
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while outcome.withLockedValue({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let errors = outcome.withLockedValue { $0 }
            #expect(errors.count == 1)
            #expect(errors.first?.hasPrefix("connect failed") == true)
        }
    }

    @Test func tcpRequestReusesTheClientsConnection() async throws {
        try await withTestServer { server in
            let peer = try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp))
            try await peer.send(sipRequest("OPTIONS", transport: "TCP"))
            _ = try await peer.receive()
            let id = try #require(server.server.transportLayer.connectionIDs.first)
            let outcome = NIOLockedValueBox<[Int]>([])
            let request = try options(via: "TCP", host: "127.0.0.1", port: server.port(.tcp))
            try server.server.transactionLayer.sendRequest(request, over: .connection(id), reliable: true,
                                                          on: MultiThreadedEventLoopGroup.singleton.next()) { event in
                if case .response(let response) = event { outcome.withLockedValue { $0.append(response.statusCode ?? 0) } }
            }
            let received = try await peer.receive()
            #expect(received.method == .options)
            var answer = SIPMessage.response(to: received, status: SIPStatus(200), toTag: "peer")
            answer.setHeader(.via, received.values(.via).first ?? "")
            try await peer.send(answer.serializedString)
            let deadline = ContinuousClock.now + .seconds(3)
            while outcome.withLockedValue({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(outcome.withLockedValue { $0 } == [200])
            await peer.close()
        }
    }
}
