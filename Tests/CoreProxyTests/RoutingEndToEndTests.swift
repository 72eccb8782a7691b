import CoreProxy
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Routing
import SIP
import Testing

/// Requests routed by the dialplan, the dispatcher and least-cost routing over real sockets, with
/// simulated gateways.
// Serialized: the ten-thousand-request and million-number tests would starve the others' timers.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RoutingEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent

    /// A gateway on its own UDP socket: answers every request with `status` (probes with 200 unless
    /// silent), counts the requests it saw by Call-ID, and keeps the last one.
    final class Gateway: @unchecked Sendable {
        let agent: Agent
        private let state = NIOLockedValueBox((seen: Set<String>(), last: [SIPMessage](), status: 200, silent: false))
        private var task: Task<Void, Never>?

        init(_ server: RunningServer) async throws {
            agent = try await Agent.connect(server, user: "gw")
            task = Task { [agent, state] in
                while !Task.isCancelled {
                    guard let message = try? await agent.client.receive(timeout: .seconds(1)), message.isRequest,
                          message.method != .ack else { continue }
                    let (status, silent) = state.withLockedValue { ($0.status, $0.silent) }
                    if message.method == .options {
                        if !silent { try? await agent.answer(message, 200) }
                        continue
                    }
                    state.withLockedValue { state in
                        if state.seen.insert(message.callID ?? "").inserted { state.last.append(message) }
                    }
                    try? await agent.answer(message, status)
                }
            }
        }

        deinit { task?.cancel() }

        var uri: String { "sip:127.0.0.1:\(agent.port)" }
        var count: Int { state.withLockedValue { $0.seen.count } }
        var received: [SIPMessage] { state.withLockedValue { $0.last } }
        func answer(_ status: Int) { state.withLockedValue { $0.status = status } }
        func silence(_ silent: Bool) { state.withLockedValue { $0.silent = silent } }
    }

    static func uri(_ text: String) -> SIPURI {
        (try? SIPURI(parsing: text)) ?? SIPURI(scheme: .sip, host: "invalid")
    }

    static func withRouter<T: Sendable>(timers: TransactionTimers = TransactionTimers(),
                                        _ body: @Sendable (RunningServer, Router) async throws -> T) async throws -> T {
        let router = Router(tables: RoutingTables(), cache: SharedCache())
        return try await withTestServer(timers: timers, configure: { server in server.proxy.setRouter(router) }) { server in
            try await body(server, router)
        }
    }

    /// Sends a MESSAGE to `target` and returns the final status.
    static func message(_ alice: Agent, to target: String, callID: String = SIPIdentifiers.callID()) async throws -> Int {
        try await alice.send("MESSAGE", to: target, callID: callID, body: "hello")
        return try await alice.response(callID: callID, timeout: .seconds(10)).statusCode ?? 0
    }

    @Test func weightedDispatcherSplitsFourThousandCallsByWeight() async throws {
        try await Self.withRouter { server, router in
            let heavy = try await Gateway(server), light = try await Gateway(server)
            // The gateways turn every call down (486): the caller ACKs and the call is over.
            heavy.answer(486)
            light.answer(486)
            router.replace(RoutingTables(
                dispatcherSets: ["gw": DispatcherSet(name: "gw", algorithm: .weighted, destinations: [
                    .init(uri: Self.uri(heavy.uri), weight: 75), .init(uri: Self.uri(light.uri), weight: 25),
                ])],
                dialplan: [DialplanRule(name: "all", match: .prefix(""), action: .dispatcher("gw"))], probeInterval: 0))
            // A window of requests in flight, as a busy caller would send them.
            let caller = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            // 4,000 calls: the share's standard deviation is 0.7 %, so ± 3 % is over four of them. Ten
            // thousand through a debug build kept both cores of a CI machine busy for 25 s, long
            // enough to starve the timing of tests running beside it.
            let total = 4_000, window = 100
            var sent = 0, answered = 0, ok = 0
            var branches: [String: String] = [:]
            func send() async throws {
                sent += 1
                let branch = SIPIdentifiers.branch()
                branches["w-\(sent)"] = branch
                try await caller.send(sipRequest("INVITE", uri: "sip:+4420\(sent)@tern.test", branch: branch, callID: "w-\(sent)",
                                                 extraHeaders: ["Contact: <sip:caller@127.0.0.1>"]))
            }
            while sent < window { try await send() }
            while answered < total {
                let response = try await caller.receive(timeout: .seconds(10))
                guard let code = response.statusCode, code >= 200, let callID = response.callID,
                      let branch = branches.removeValue(forKey: callID) else { continue }
                answered += 1
                if code == 486 { ok += 1 }
                // RFC 3261 §17.1.1.3: the ACK for a non-2xx final answer shares the INVITE's branch.
                try await caller.send(["ACK \(response.firstValue(.to).flatMap { try? SIPAddress(parsing: $0).uri.description } ?? "sip:x") SIP/2.0",
                                       "Via: SIP/2.0/UDP client.test:5060;branch=\(branch);rport", "Max-Forwards: 70",
                                       "From: \(response.firstValue(.from) ?? "")", "To: \(response.firstValue(.to) ?? "")",
                                       "Call-ID: \(callID)", "CSeq: 1 ACK", "Content-Length: 0", "", ""].joined(separator: "\r\n"))
                if sent < total { try await send() }
            }
            #expect(ok == total)
            let share = Double(heavy.count) / Double(total)
            print("weighted dispatcher: \(heavy.count) / \(light.count) of \(total) calls (weights 75/25)")
            #expect(heavy.count + light.count == total)
            #expect(abs(share - 0.75) < 0.03, "75 % ± 3 %")
        }
    }

    @Test func failoverWithinOneTransactionOnlyOnConfiguredStatuses() async throws {
        try await Self.withRouter { server, router in
            let first = try await Gateway(server), second = try await Gateway(server)
            router.replace(RoutingTables(
                dispatcherSets: ["gw": DispatcherSet(name: "gw", algorithm: .roundRobin, destinations: [
                    .init(uri: Self.uri(first.uri), priority: 0), .init(uri: Self.uri(second.uri), priority: 1),
                ], failoverCodes: [503])],
                dialplan: [DialplanRule(name: "all", match: .prefix(""), action: .dispatcher("gw"))], probeInterval: 0))
            let alice = try await Agent.connect(server, user: "alice")
            first.answer(503)
            #expect(try await Self.message(alice, to: "sip:+15551234@tern.test", callID: "fo-1") == 200)
            #expect(first.count == 1 && second.count == 1, "the second destination took over the same transaction")
            first.answer(486)
            #expect(try await Self.message(alice, to: "sip:+15551234@tern.test", callID: "fo-2") == 486, "not a failover status")
            #expect(second.count == 1)
        }
    }

    @Test func aDestinationThatStopsAnsweringProbesGetsNoTrafficUntilItAnswersAgain() async throws {
        // A probe waits Timer F (64·T1 = 3.2 s) for an answer: short enough for a test, long enough under load.
        let timers = TransactionTimers(t1: .milliseconds(50), t2: .milliseconds(200), t4: .milliseconds(50))
        try await Self.withRouter(timers: timers) { server, router in
            let steady = try await Gateway(server), flaky = try await Gateway(server)
            router.replace(RoutingTables(
                dispatcherSets: ["gw": DispatcherSet(name: "gw", algorithm: .roundRobin, destinations: [
                    .init(uri: Self.uri(steady.uri)), .init(uri: Self.uri(flaky.uri)),
                ])],
                dialplan: [DialplanRule(name: "all", match: .prefix(""), action: .dispatcher("gw"))], probeInterval: 1, probeFailures: 1))
            let prober = DestinationProber(router: router, proxy: server.server.proxy, loop: MultiThreadedEventLoopGroup.singleton.next(),
                                           logger: PushEndToEndTests.logger)
            flaky.silence(true)
            prober.probeAll()
            try await Self.until(timeout: .seconds(20)) { router.isDown(Self.uri(flaky.uri)) }
            let alice = try await Agent.connect(server, user: "alice")
            for index in 0..<10 { #expect(try await Self.message(alice, to: "sip:+1555\(index)@tern.test") == 200) }
            #expect(flaky.count == 0 && steady.count == 10, "nothing for a destination that is down")
            flaky.silence(false)
            prober.probeAll()
            try await Self.until(timeout: .seconds(20)) { !router.isDown(Self.uri(flaky.uri)) }
            for index in 0..<10 { #expect(try await Self.message(alice, to: "sip:+1666\(index)@tern.test") == 200) }
            #expect(flaky.count == 5, "round robin again once it answers")
        }
    }

    static func until(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        guard condition() else { throw TestFailure("condition not met in time") }
    }

    static func lcrTables(_ gateways: [Gateway], portability: NumberPortability? = nil) throws -> RoutingTables {
        RoutingTables(
            lcr: LeastCostRouting(gateways: [
                .init(name: "uk", uri: uri(gateways[0].uri)),
                .init(name: "london-a", uri: uri(gateways[1].uri), strip: 3, prefix: "0"),
                .init(name: "london-b", uri: uri(gateways[2].uri)),
            ], routes: [
                "+44": [.init(gateway: "uk")],
                "+4420": [.init(gateway: "london-a", priority: 1), .init(gateway: "london-b", priority: 2)],
            ], failoverCodes: [503]),
            dialplan: [
                DialplanRule(name: "international", match: .regex(try NSRegularExpressionBox("00(\\d+)")), rewrite: "+$1", action: .continue),
                DialplanRule(name: "emergency", match: .regex(try NSRegularExpressionBox("112|999")), rewrite: "999",
                             addHeaders: [(SIPHeaderName("Priority"), "emergency")], action: .uri(uri(gateways[0].uri))),
                DialplanRule(name: "did", match: .regex(try NSRegularExpressionBox("\\+155501001")), rewrite: "alice", action: .local),
                DialplanRule(name: "numbers", match: .prefix("+"), action: .lcr),
            ],
            portability: portability, probeInterval: 0)
    }

    @Test func leastCostRoutingTakesTheLongestPrefixAndFailsOver() async throws {
        try await Self.withRouter { server, router in
            let gateways = [try await Gateway(server), try await Gateway(server), try await Gateway(server)]
            router.replace(try Self.lcrTables(gateways))
            let alice = try await Agent.connect(server, user: "alice")
            // 00 44 20… becomes +4420… (dialplan), then the London prefix wins over +44.
            #expect(try await Self.message(alice, to: "sip:00442071234567@tern.test") == 200)
            #expect(gateways[1].received.last?.requestURIString == "sip:02071234567@127.0.0.1:\(gateways[1].agent.port)",
                    "london-a strips +44 and puts 0 in front")
            #expect(try await Self.message(alice, to: "sip:+441612345678@tern.test") == 200)
            #expect(gateways[0].count == 1, "Manchester only matches +44")
            gateways[1].answer(503)
            #expect(try await Self.message(alice, to: "sip:+442079999999@tern.test") == 200)
            #expect(gateways[2].received.last?.requestURIString == "sip:+442079999999@127.0.0.1:\(gateways[2].agent.port)",
                    "failover to the next gateway of the prefix")
            #expect(try await Self.message(alice, to: "sip:+3312345@tern.test") == 404, "no prefix: no route")
        }
    }

    @Test func dialplanRewritesMarksAndMapsDIDsToLocalUsers() async throws {
        try await Self.withRouter { server, router in
            let gateways = [try await Gateway(server), try await Gateway(server), try await Gateway(server)]
            router.replace(try Self.lcrTables(gateways))
            let owner = try await Agent.connect(server, user: "alice")
            _ = try await owner.register()
            let caller = try await Agent.connect(server, user: "carol")
            // A DID that belongs to a local user.
            try await caller.send("MESSAGE", to: "sip:+155501001@tern.test", callID: "did", body: "hi")
            let delivered = try await owner.next(.message)
            #expect(delivered.requestURIString?.hasPrefix("sip:alice@") == true)
            try await owner.answer(delivered, 200)
            #expect(try await caller.response(callID: "did").statusCode == 200)
            // An emergency number: rewritten, marked and sent to the emergency gateway.
            #expect(try await Self.message(caller, to: "sip:112@tern.test") == 200)
            let emergency = try #require(gateways[0].received.last)
            #expect(emergency.requestURIString == "sip:999@127.0.0.1:\(gateways[0].agent.port)")
            #expect(emergency.firstValue(SIPHeaderName("Priority")) == "emergency")
            // A user that no rule matches takes the proxy's own way.
            #expect(try await Self.message(caller, to: "sip:nobody@tern.test") == 404)
        }
    }

    @Test func numberPortabilityWithAMillionEntries() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ported-\(UUID().uuidString).csv").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var text = "number,routing_number\n"
        text.reserveCapacity(40_000_000)
        for index in 0..<1_000_000 { text += "+4420\(7_000_000 + index),+44161\(index)\n" }
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let loadStart = ContinuousClock.now
        let portability = try NumberPortability.load(path: path)
        let loadTime = ContinuousClock.now - loadStart
        #expect(portability.count == 1_000_000)
        // Lookup cost: a million hits and a million misses.
        let lookupStart = ContinuousClock.now
        var hits = 0
        for index in 0..<1_000_000 where portability.routingNumber(for: "+4420\(7_000_000 + index)") != nil { hits += 1 }
        for index in 0..<1_000_000 where portability.routingNumber(for: "+4430\(7_000_000 + index)") != nil { hits += 1 }
        let lookupTime = ContinuousClock.now - lookupStart
        #expect(hits == 1_000_000)
        print("number portability: 1,000,000 entries loaded in \(loadTime), 2,000,000 lookups in \(lookupTime)"
              + " (\(lookupTime / 2_000_000) each, number formatting included)")
        try await Self.withRouter { server, router in
            let gateways = [try await Gateway(server), try await Gateway(server), try await Gateway(server)]
            router.replace(try Self.lcrTables(gateways, portability: portability))
            let alice = try await Agent.connect(server, user: "alice")
            // Ported from London to Manchester: routed by its routing number, to the +44 gateway.
            #expect(try await Self.message(alice, to: "sip:+44207000042@tern.test") == 200)
            #expect(gateways[0].received.last?.requestURIString == "sip:+44207000042;rn=+4416142;npdi@127.0.0.1:\(gateways[0].agent.port)")
            // Not ported: npdi says the dip was made, and London routes it.
            #expect(try await Self.message(alice, to: "sip:+442055555555@tern.test") == 200)
            #expect(gateways[1].received.last?.requestURIString == "sip:02055555555;npdi@127.0.0.1:\(gateways[1].agent.port)")
        }
    }

    @Test func reloadUnderLoadLosesNoRequest() async throws {
        try await Self.withRouter { server, router in
            let one = try await Gateway(server), two = try await Gateway(server)
            func tables(_ target: Gateway) -> RoutingTables {
                RoutingTables(dispatcherSets: ["gw": DispatcherSet(name: "gw", algorithm: .roundRobin, destinations: [.init(uri: Self.uri(target.uri))])],
                              dialplan: [DialplanRule(name: "all", match: .prefix(""), action: .dispatcher("gw"))], probeInterval: 0)
            }
            router.replace(tables(one))
            let reloading = Task {
                for round in 0..<50 {
                    router.replace(tables(round % 2 == 0 ? two : one))
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            let alice = try await Agent.connect(server, user: "alice")
            var ok = 0
            for index in 0..<300 where try await Self.message(alice, to: "sip:+1777\(index)@tern.test") == 200 { ok += 1 }
            await reloading.value
            #expect(ok == 300)
            #expect(one.count > 0 && two.count > 0, "both tables were in use")
        }
    }

    /// The hops a router picks for a request to `user` with this Call-ID and From user.
    static func hops(_ router: Router, user: String = "+1555", callID: String, from: String = "alice") throws -> [RouteDestination] {
        let text = sipRequest("INVITE", uri: "sip:\(user)@tern.test", callID: callID).replacingOccurrences(of: "sip:alice@", with: "sip:\(from)@")
        let request = try SIPMessageParser().parse(ByteBuffer(string: text))
        guard case .forward(let hops, _)? = router.route(request, requestURI: try request.requestURI(), source: nil)?.action else {
            throw TestFailure("not forwarded")
        }
        return hops
    }

    static func dispatcher(_ algorithm: DispatcherSet.Algorithm) -> Router {
        Router(tables: RoutingTables(
            dispatcherSets: ["gw": DispatcherSet(name: "gw", algorithm: algorithm, destinations: (1...4).map { .init(uri: uri("sip:10.0.0.\($0)")) })],
            dialplan: [DialplanRule(name: "all", match: .prefix(""), action: .dispatcher("gw"))], probeInterval: 0), cache: SharedCache())
    }

    @Test func hashesKeepACallIDOrAUserOnOneDestination() throws {
        let byCallID = Self.dispatcher(.hashCallID)
        let first = try Self.hops(byCallID, callID: "call-1").map(\.requestURI.host)
        #expect(try Self.hops(byCallID, callID: "call-1").map(\.requestURI.host) == first, "same Call-ID, same order")
        let spread = Set(try (0..<40).map { try Self.hops(byCallID, callID: "call-\($0)")[0].requestURI.host })
        #expect(spread.count == 4, "Call-IDs spread over every destination")
        let byFrom = Self.dispatcher(.hashFromUser)
        let carol = try Self.hops(byFrom, callID: "a", from: "carol")[0].requestURI.host
        #expect(try Self.hops(byFrom, callID: "b", from: "carol")[0].requestURI.host == carol, "same caller, another call: same destination")
    }

    @Test func leastLoadedPrefersTheDestinationWithFewestRequestsInFlight() throws {
        let router = Self.dispatcher(.leastLoaded)
        var busy: [String] = []
        for index in 0..<4 {
            let hops = try Self.hops(router, callID: "load-\(index)")
            hops[0].started?()
            busy.append(hops[0].requestURI.host)
        }
        #expect(Set(busy).count == 4, "each new request went to an idle destination")
        let fifth = try Self.hops(router, callID: "load-5")
        fifth[0].started?()
        fifth[0].outcome?(200)
        for hop in try Self.hops(router, callID: "load-6").prefix(1) { #expect(busy.contains(hop.requestURI.host)) }
    }

    @Test func explainSaysWhatWouldHappenWithoutSendingAnything() throws {
        let router = Router(tables: RoutingTables(
            lcr: LeastCostRouting(gateways: [.init(name: "uk", uri: Self.uri("sip:gw.example:5060"))], routes: ["+44": [.init(gateway: "uk")]]),
            dialplan: [
                DialplanRule(name: "international", match: .regex(try NSRegularExpressionBox("00(\\d+)")), rewrite: "+$1", action: .continue),
                DialplanRule(name: "numbers", match: .prefix("+"), action: .lcr),
            ], probeInterval: 0), cache: SharedCache())
        let request = try SIPMessageParser().parse(ByteBuffer(string: sipRequest("INVITE", uri: "sip:00441234@tern.test")))
        let explanation = router.explain(request)
        #expect(explanation.decision == "forward")
        #expect(explanation.matchedRules == ["international", "numbers"])
        #expect(explanation.destinations == ["sip:+441234@gw.example:5060"])
        #expect(explanation.steps.contains { $0.contains("prefix \"+44\"") })
    }
}
