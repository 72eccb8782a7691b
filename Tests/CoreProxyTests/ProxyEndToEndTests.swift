import CoreProxy
import NIOCore
import SIP
import Testing

/// Callers and callees over real sockets through the stateful proxy (RFC 3261 §16).
@Suite(.timeLimit(.minutes(1)))
struct ProxyEndToEndTests {
    /// A user agent on its own socket: registers, calls, answers.
    final class Agent: @unchecked Sendable {
        let client: TestSIPClient
        let user: String
        var cseq = 0
        /// Requests that arrived while a response was awaited; ``next(_:timeout:)`` reads them first.
        var parked: [SIPMessage] = []
        /// Call-ID and CSeq of requests already taken, to tell retransmissions from new requests.
        var seen: Set<String> = []

        init(_ client: TestSIPClient, user: String) {
            self.client = client
            self.user = user
        }

        var port: Int { client.channel.localAddress?.port ?? 0 }
        var viaHost: String { "127.0.0.1:\(port)" }
        var transportToken: String { client.transport.viaToken }

        static func connect(_ server: RunningServer, user: String, transport: SIPTransportProtocol = .udp) async throws -> Agent {
            Agent(try await TestSIPClient.connect(transport, host: "127.0.0.1", port: server.port(transport)), user: user)
        }

        /// `contact` names another device address than the agent's own (`<sip:...>`).
        func register(instance: String? = nil, q: String? = nil, expires: Int = 600,
                      domain: String = "tern.test", contact address: String? = nil) async throws -> SIPMessage {
            cseq += 1
            var contact = address ?? "<sip:\(user)@\(viaHost);transport=\(client.transport.rawValue)>"
            if let instance { contact += ";+sip.instance=\"<\(instance)>\"" }
            if let q { contact += ";q=\(q)" }
            let text = "REGISTER sip:tern.test SIP/2.0\r\nVia: SIP/2.0/\(transportToken) \(viaHost);branch=\(SIPIdentifiers.branch());rport\r\n"
                + "Max-Forwards: 70\r\nFrom: <sip:\(user)@\(domain)>;tag=\(SIPIdentifiers.tag())\r\nTo: <sip:\(user)@\(domain)>\r\n"
                + "Call-ID: reg-\(user)-\(port)\r\nCSeq: \(cseq) REGISTER\r\nContact: \(contact)\r\nExpires: \(expires)\r\nContent-Length: 0\r\n\r\n"
            try await client.send(text)
            // Under load a retransmitted request may come first: it is kept for next(_:), not taken for the answer.
            while true {
                let message = try await client.receive()
                if message.isRequest {
                    parked.append(message)
                    continue
                }
                return message
            }
        }

        /// Sends a request and returns it as text (for CANCEL and ACK, which reuse its fields).
        @discardableResult
        func send(_ method: String, to target: String, callID: String, branch: String = SIPIdentifiers.branch(),
                  cseq: Int = 1, fromTag: String = "caller", toTag: String? = nil, routes: [String] = [],
                  maxForwards: Int = 70, body: String = "") async throws -> String {
            var lines = [
                "\(method) \(target) SIP/2.0",
                "Via: SIP/2.0/\(transportToken) \(viaHost);branch=\(branch);rport",
                "Max-Forwards: \(maxForwards)",
                "From: <sip:\(user)@tern.test>;tag=\(fromTag)",
                "To: <\(target)>" + (toTag.map { ";tag=\($0)" } ?? ""),
                "Call-ID: \(callID)",
                "CSeq: \(cseq) \(method)",
                "Contact: <sip:\(user)@\(viaHost)>",
            ]
            lines += routes.map { "Route: \($0)" }
            if !body.isEmpty { lines.append("Content-Type: text/plain") }
            lines.append("Content-Length: \(body.utf8.count)")
            let text = lines.joined(separator: "\r\n") + "\r\n\r\n" + body
            try await client.send(text)
            return text
        }

        /// Answers a request received from the proxy with `status`, copying its Vias and adding a To tag.
        func answer(_ request: SIPMessage, _ status: Int, toTag: String = "callee") async throws {
            var response = SIPMessage.response(to: request, status: SIPStatus(status), toTag: toTag, copyRecordRoute: true)
            if status >= 200 && status < 300 && request.method == .invite {
                response.appendHeader(.contact, "<sip:\(user)@\(viaHost)>")
            }
            try await client.send(response.serializedString)
        }

        /// The next request with this method; retransmissions of earlier requests (UDP, under load) are skipped.
        /// Retransmissions of a request already returned (same Call-ID and CSeq, sent again because
        /// our answer was slow under load) are skipped.
        func next(_ method: SIPMethod, timeout: Duration = .seconds(5)) async throws -> SIPMessage {
            while let index = parked.firstIndex(where: { $0.method == method }) {
                let message = parked.remove(at: index)
                if firstTime(message) { return message }
            }
            while true {
                let message = try await client.receive(timeout: timeout)
                if message.method == method, firstTime(message) { return message }
            }
        }

        private func firstTime(_ request: SIPMessage) -> Bool {
            // A request for another port is a stray: a retransmission meant for an earlier owner of
            // this port (tests run side by side and reuse ports).
            // (Only loopback targets: a NAT test's private Contact reaches the agent under another address.)
            if let uri = try? request.requestURI(), uri.host == "127.0.0.1", let port = uri.port, port != self.port { return false }
            return seen.insert((request.callID ?? "") + " " + (request.firstValue(.cseq) ?? "")).inserted
        }

        /// The next final or provisional response other than 100; requests (retransmissions of one
        /// not answered yet, under load) are skipped.
        func nextResponse(timeout: Duration = .seconds(5)) async throws -> SIPMessage {
            while true {
                let message = try await client.receive(timeout: timeout)
                if let code = message.statusCode, code != 100 { return message }
            }
        }

        /// The next message that is not a 100 Trying.
        func next(timeout: Duration = .seconds(5)) async throws -> SIPMessage {
            while true {
                let message = try await client.receive(timeout: timeout)
                if message.statusCode != 100 { return message }
            }
        }

        /// Anything new within `quiet`, or nil: retransmissions of requests already taken and strays
        /// meant for an earlier owner of this port (UDP, tests side by side) are not news.
        func somethingNew(within quiet: Duration) async -> SIPMessage? {
            let deadline = ContinuousClock.now + quiet
            while case let left = deadline - ContinuousClock.now, left > .zero {
                guard let message = await client.receiveIfAny(timeout: left) else { return nil }
                if message.isRequest, !firstTime(message) { continue }
                return message
            }
            return nil
        }

        /// The next final or provisional response (not 100) with this Call-ID. Ports are reused by
        /// tests running side by side, so a late answer meant for an earlier owner of this port can
        /// arrive first: it is skipped.
        func response(callID: String, timeout: Duration = .seconds(5)) async throws -> SIPMessage {
            while true {
                let message = try await client.receive(timeout: timeout)
                if let code = message.statusCode, code != 100, message.callID == callID { return message }
            }
        }
    }

    @Test func forkedCallFirstAnswerWinsOtherBranchIsCancelled() async throws {
        try await withTestServer { server in
            let desk = try await Agent.connect(server, user: "bob")
            let mobile = try await Agent.connect(server, user: "bob")
            #expect(try await desk.register(instance: "urn:uuid:desk").statusCode == 200)
            #expect(try await mobile.register(instance: "urn:uuid:mobile").statusCode == 200)
            let alice = try await Agent.connect(server, user: "alice")
            let callID = SIPIdentifiers.callID()
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: callID)

            // Both devices ring (parallel fork, equal q).
            let atDesk = try await desk.next()
            let atMobile = try await mobile.next()
            #expect(atDesk.method == .invite && atMobile.method == .invite)
            #expect(try atDesk.requestURI().port == desk.port)
            #expect(try atDesk.maxForwards() == 69)
            #expect(try atDesk.vias().count == 2)
            #expect(try atDesk.recordRoutes().count == 1)
            #expect(atDesk.callID == callID)

            try await desk.answer(atDesk, 180)
            try await mobile.answer(atMobile, 180, toTag: "mobile")
            #expect(try await alice.next().statusCode == 180)
            #expect(try await alice.next().statusCode == 180)
            try await desk.answer(atDesk, 200)
            let ok = try await alice.next()
            #expect(ok.statusCode == 200)
            #expect(try ok.vias().count == 1, "the proxy's own Via is gone")
            #expect(try ok.recordRoutes().count == 1)

            // The mobile's branch is cancelled; its 487 does not reach alice.
            let cancel = try await mobile.next(.cancel)
            #expect(cancel.method == .cancel)
            #expect(try cancel.topVia()?.branch == (try atMobile.topVia())?.branch)
            try await mobile.answer(cancel, 200)
            try await mobile.answer(atMobile, 487, toTag: "mobile")
            let ackFor487 = try await mobile.next(.ack)
            #expect(ackFor487.method == .ack)

            // ACK and BYE follow the Record-Route to the desk.
            let routeSet = ok.values(.recordRoute)
            try await alice.send("ACK", to: "sip:bob@\(desk.viaHost)", callID: callID, toTag: "callee", routes: routeSet)
            let ack = try await desk.next(.ack)
            #expect(ack.method == .ack)
            try await alice.send("BYE", to: "sip:bob@\(desk.viaHost)", callID: callID, cseq: 2, toTag: "callee", routes: routeSet)
            let bye = try await desk.next(.bye)
            #expect(bye.method == .bye)
            #expect(!bye.contains(.route), "our own Route was consumed")
            try await desk.answer(bye, 200)
            let byeOK = try await alice.next()
            #expect(byeOK.statusCode == 200)
            #expect(try byeOK.cseq()?.method == .bye)
            #expect(await alice.somethingNew(within: .milliseconds(300)) == nil, "no 487 leaked upstream")
        }
    }

    @Test func callerCancelsWhileRinging() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            let branch = SIPIdentifiers.branch()
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "cancel-1", branch: branch)
            let invite = try await bob.next()
            try await bob.answer(invite, 180)
            #expect(try await alice.next().statusCode == 180)
            try await alice.send("CANCEL", to: "sip:bob@tern.test", callID: "cancel-1", branch: branch)
            #expect(try await alice.next().statusCode == 200, "the CANCEL is answered hop by hop")
            let cancel = try await bob.next(.cancel)
            #expect(cancel.method == .cancel)
            try await bob.answer(cancel, 200)
            try await bob.answer(invite, 487)
            let terminated = try await alice.next()
            #expect(terminated.statusCode == 487)
            #expect(try terminated.cseq()?.method == .invite)
        }
    }

    @Test func cancelDoesNotWaitForASilentBranch() async throws {
        try await withTestServer { server in
            let ringing = try await Agent.connect(server, user: "bob")
            let silent = try await Agent.connect(server, user: "bob")
            _ = try await ringing.register(instance: "urn:uuid:ringing")
            _ = try await silent.register(instance: "urn:uuid:silent")
            let alice = try await Agent.connect(server, user: "alice")
            let branch = SIPIdentifiers.branch()
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "silent-branch", branch: branch)
            let invite = try await ringing.next()
            _ = try await silent.next()  // never answered, not even 100
            try await ringing.answer(invite, 180)
            #expect(try await alice.next().statusCode == 180)
            try await alice.send("CANCEL", to: "sip:bob@tern.test", callID: "silent-branch", branch: branch)
            #expect(try await alice.next().statusCode == 200)
            let cancel = try await ringing.next(.cancel)
            try await ringing.answer(cancel, 200)
            try await ringing.answer(invite, 487)
            // The caller hears 487 now, not after the silent branch's Timer B (32 s).
            let final = try await alice.next(timeout: .seconds(3))
            #expect(final.statusCode == 487)
        }
    }

    @Test func timerCCancelsABranchThatRingsTooLong() async throws {
        try await withTestServer(proxy: StatefulProxy.Configuration(timerC: .seconds(1))) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "timer-c")
            let invite = try await bob.next(.invite)
            try await bob.answer(invite, 180)
            #expect(try await alice.next().statusCode == 180)
            // Nobody answers: after Timer C the proxy cancels bob's branch and tells alice 408.
            let cancel = try await bob.next(.cancel, timeout: .seconds(4))
            try await bob.answer(cancel, 200)
            try await bob.answer(invite, 487)
            let final = try await alice.next(timeout: .seconds(4))
            #expect(final.statusCode == 408, "RFC 3261 §16.8: Timer C counts as a 408 for that branch")
        }
    }

    @Test func messageReachesRegisteredUser() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob", transport: .tcp)
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "im-1", body: "hello bob")
            let message = try await bob.next()
            #expect(message.method == .message)
            #expect(String(buffer: message.body) == "hello bob")
            // Arrived over TCP from a UDP caller: no Record-Route, since a MESSAGE forms no dialog
            // (an INVITE would carry two entries); the Vias show both legs.
            #expect(!message.contains(.recordRoute))
            #expect(try message.vias().first?.transport == "TCP")
            try await bob.answer(message, 200)
            #expect(try await alice.next().statusCode == 200)
        }
    }

    /// RFC 3261 §17.1.2.2: a completed non-INVITE client transaction absorbs retransmitted final
    /// responses for Timer K; only its key is kept then, and a retransmitted 200 must not reach the
    /// caller as a second answer.
    @Test func aRetransmittedFinalResponseIsAbsorbedNotForwarded() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "im-k", body: "once")
            let message = try await bob.next(.message)
            try await bob.answer(message, 200)
            #expect(try await alice.response(callID: "im-k").statusCode == 200)
            try await bob.answer(message, 200)
            try await bob.answer(message, 200)
            let late = await alice.somethingNew(within: .milliseconds(500))
            #expect(late == nil, "retransmitted 200s stay with the proxy: \(late?.serializedString ?? "")")
        }
    }

    /// A UAS may answer with every Via on one line (SIPp does): the proxy takes its own value off
    /// that line and the caller gets its own Vias back, untouched.
    @Test func aResponseWithAllViasOnOneLineReachesTheCaller() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            let sent = try SIPMessageParser().parse(ByteBuffer(string: try await alice.send("MESSAGE", to: "sip:bob@tern.test",
                                                                                             callID: "one-line", body: "hi")))
            let message = try await bob.next(.message)
            let vias = message.values(.via)
            #expect(vias.count == 2)
            var answer = SIPMessage.response(to: message, status: SIPStatus(200), toTag: "callee")
            answer.removeHeaders(.via)
            answer.prependHeader(.via, vias.joined(separator: " ,\r\n  "))
            try await bob.client.send(answer.serializedString)
            let ok = try await alice.response(callID: "one-line")
            #expect(ok.statusCode == 200)
            // The caller's own Via, with the received and rport the proxy stamped on it.
            #expect(try ok.vias().map(\.branch) == sent.vias().map(\.branch), "only the proxy's own Via was taken off")
            #expect(try ok.topVia()?.received == "127.0.0.1")
        }
    }

    @Test func recordRouteHasTwoEntriesWhenTransportChanges() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob", transport: .tcp)
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice", transport: .udp)
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "rr-2")
            let invite = try await bob.next()
            let entries = try invite.recordRoutes()
            #expect(entries.count == 2)
            #expect(entries.first?.uri.transportParameter == "tcp", "the entry facing bob names TCP")
            #expect(entries.last?.uri.transportParameter == nil, "the entry facing alice is the UDP listener")
            try await bob.answer(invite, 486)
            #expect(try await alice.next().statusCode == 486)
        }
    }

    @Test func unknownUserGets404AndForeignDomainGets403() async throws {
        try await withTestServer(registrar: Registrar.Configuration(domains: ["tern.test"])) { server in
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("INVITE", to: "sip:nobody@tern.test", callID: "404")
            #expect(try await alice.next().statusCode == 404)
            try await alice.send("MESSAGE", to: "sip:someone@elsewhere.example", callID: "403", body: "relay me")
            // Retransmissions of the INVITE's 404 (never ACKed here) may arrive in between.
            var refused = try await alice.next()
            while refused.callID == "404" { refused = try await alice.next() }
            #expect(refused.statusCode == 403)
        }
    }

    @Test func silentDeviceTimesOutAndLosesItsBinding() async throws {
        let timers = TransactionTimers(t1: .milliseconds(30), t2: .milliseconds(120), t4: .milliseconds(100))
        try await withTestServer(timers: timers) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "silent", body: "anyone?")
            _ = try await bob.next()  // received, never answered
            let response = try await alice.next(timeout: .seconds(10))
            #expect(response.statusCode == 408)
            #expect(server.server.location.bindings(for: "sip:bob@tern.test").isEmpty)
        }
    }

    @Test func callToClosedConnectionRemovesTheBinding() async throws {
        let configure: @Sendable (SIPServer) -> Void = { _ in }
        try await withTestServer(removeBindingsOnFlowClose: false, configure: configure) { server in
            let bob = try await Agent.connect(server, user: "bob", transport: .tcp)
            _ = try await bob.register()
            await bob.client.close()
            try await Task.sleep(for: .milliseconds(100))
            #expect(server.server.location.bindings(for: "sip:bob@tern.test").count == 1, "kept until used")
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "dead-flow")
            let response = try await alice.response(callID: "dead-flow")
            #expect(response.statusCode == 480, "the only device is unreachable")
            #expect(server.server.location.bindings(for: "sip:bob@tern.test").isEmpty)
        }
    }

    @Test func cancelBeforeInviteEndsTheLateInvite() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            let branch = SIPIdentifiers.branch()
            try await alice.send("CANCEL", to: "sip:bob@tern.test", callID: "race", branch: branch)
            #expect(try await alice.next().statusCode == 481)
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "race", branch: branch)
            #expect(try await alice.next().statusCode == 487)
            #expect(await bob.somethingNew(within: .milliseconds(300)) == nil, "never forwarded")
        }
    }

    @Test func loopIsDetected() async throws {
        try await withTestServer { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("OPTIONS", to: "sip:bob@tern.test", callID: "loop-1")
            var forwarded = try await bob.next()
            // A misconfigured next hop sends the request back with its original Request-URI: the same
            // request at the same hop again is a loop (RFC 3261 §16.3 step 4), not a spiral.
            forwarded.setRequestURI(try SIPURI(parsing: "sip:bob@tern.test"))
            forwarded.prependHeader(.via, "SIP/2.0/UDP \(bob.viaHost);branch=z9hG4bKbounce1")
            try await bob.client.send(forwarded.serializedString)
            let looped = try await bob.nextResponse()
            #expect(looped.statusCode == 482)
            #expect(try looped.topVia()?.branch == "z9hG4bKbounce1")
            // A spiral (the Request-URI changed, here to bob's contact) is routed again, not refused.
            var spiral = forwarded
            spiral.setRequestURI(try SIPURI(parsing: "sip:bob@other.test"))
            spiral.removeFirstValue(.via)
            spiral.prependHeader(.via, "SIP/2.0/UDP \(bob.viaHost);branch=z9hG4bKbounce2")
            try await bob.client.send(spiral.serializedString)
            #expect(try await bob.nextResponse().statusCode == 404)
        }
    }

    @Test func redirectModeAnswers302() async throws {
        try await withTestServer(proxy: StatefulProxy.Configuration(redirect: true)) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("INVITE", to: "sip:bob@tern.test", callID: "redirect")
            let response = try await alice.next()
            #expect(response.statusCode == 302)
            guard case .addresses(let contacts) = try response.contacts() else {
                Issue.record("302 lists the contacts")
                return
            }
            #expect(contacts.first?.uri.port == bob.port)
        }
    }

    @Test func redirectPerDomain() async throws {
        try await withTestServer(proxy: StatefulProxy.Configuration(redirectDomains: ["moved.test"])) { server in
            let bob = try await Agent.connect(server, user: "bob")
            _ = try await bob.register()
            let carol = try await Agent.connect(server, user: "carol")
            _ = try await carol.register(domain: "moved.test")
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:bob@tern.test", callID: "not-moved", body: "x")
            let forwarded = try await bob.next(.message)
            try await bob.answer(forwarded, 200)
            #expect(try await alice.next().statusCode == 200)
            try await alice.send("MESSAGE", to: "sip:carol@moved.test", callID: "moved", body: "x")
            let moved = try await alice.next()
            #expect(moved.statusCode == 302)
            #expect(await carol.somethingNew(within: .milliseconds(200)) == nil)
        }
    }

    @Test func foreignDomainsGoToTheOutboundProxy() async throws {
        // The outbound proxy is a peer socket that exists before the server starts.
        let peer = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: 9)
        let peerPort = try #require(peer.channel.localAddress?.port)
        let outbound = try SIPURI(parsing: "sip:127.0.0.1:\(peerPort)")
        try await withTestServer(registrar: Registrar.Configuration(domains: ["tern.test"]),
                                 proxy: StatefulProxy.Configuration(outboundProxy: outbound)) { server in
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:someone@elsewhere.example", callID: "outbound", body: "relay me")
            let relayed = try await peer.receive()
            #expect(relayed.method == .message)
            #expect(try relayed.requestURI().host == "elsewhere.example", "the Request-URI is kept")
            #expect(try relayed.routes().first?.uri.port == peerPort, "routed through the outbound proxy")
            var answer = SIPMessage.response(to: relayed, status: SIPStatus(202), toTag: "far")
            answer.setHeader(.via, relayed.values(.via).joined(separator: ", "))
            // The answer goes back to Tern (the peer socket was made before Tern had a port).
            let back = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await back.send(answer.serializedString)
            #expect(try await alice.next().statusCode == 202)
            await back.close()
        }
        await peer.close()
    }

    @Test func sequentialForkingByQ() async throws {
        try await withTestServer { server in
            let first = try await Agent.connect(server, user: "carol")
            let second = try await Agent.connect(server, user: "carol")
            _ = try await first.register(instance: "urn:uuid:first", q: "1.0")
            _ = try await second.register(instance: "urn:uuid:second", q: "0.5")
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:carol@tern.test", callID: "seq", body: "hi")
            let atFirst = try await first.next()
            #expect(await second.somethingNew(within: .milliseconds(200)) == nil, "lower q waits")
            try await first.answer(atFirst, 486)
            let atSecond = try await second.next()
            #expect(atSecond.method == .message)
            try await second.answer(atSecond, 200)
            #expect(try await alice.next().statusCode == 200)
        }
    }

    @Test func gruuReachesOnlyThatDevice() async throws {
        try await withTestServer { server in
            let desk = try await Agent.connect(server, user: "dave")
            let mobile = try await Agent.connect(server, user: "dave")
            _ = try await desk.register(instance: "urn:uuid:desk-1")
            _ = try await mobile.register(instance: "urn:uuid:mobile-1")
            let alice = try await Agent.connect(server, user: "alice")
            try await alice.send("MESSAGE", to: "sip:dave@tern.test;gr=urn:uuid:mobile-1", callID: "gruu", body: "just you")
            let message = try await mobile.next()
            #expect(message.method == .message)
            #expect(await desk.somethingNew(within: .milliseconds(200)) == nil)
            try await mobile.answer(message, 200)
            #expect(try await alice.next().statusCode == 200)
        }
    }
}
