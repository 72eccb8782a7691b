import EventBus
import Foundation
import Testing

/// Push notifications through the `tern` binary: a push gateway (examples/push_gateway.py) takes
/// one device's push and refuses another's, and the bus carries push.requested, push.sent and
/// push.failed with the payload docs/events.md documents.
extension EventBusTests {
    @Test func pushesReachTheGatewayAndTheBus() async throws {
        let uri = try #require(Self.uri)
        let python = AMQPTestService.python ?? "/usr/bin/python3"
        let gateway = try PythonScript(python, "examples/push_gateway.py", ["--port", "0", "--refuse-token", "carl-token"])
        defer { gateway.stop() }
        try await gateway.waitFor("listening on port", in: \.outputText)
        let gatewayPort = try #require(gateway.outputText.split(separator: "\n").first?.split(separator: " ").last.flatMap { Int($0) })
        let exchange = "tern.events.push." + UUID().uuidString.prefix(8)
        let consumer = try AMQPTestConsumer(uri: uri, exchange: String(exchange))
        let configured = try await TernBinaryTests.startTern(node: "push-node", """
        events:
          brokers: ["\(uri)"]
          exchange: \(exchange)
          commands:
            enabled: false
        mobile:
          push:
            gateway_url: http://127.0.0.1:\(gatewayPort)/push
            authorization: Bearer gateway-key
            retries: 1
            retry_delay_ms: 50
          pending:
            wait_ms: 5000
            push_always: true
        """)
        defer { configured.removeDirectory() }
        let tern = configured.process, port = configured.sipPort
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        let bob = try UDPPhone(user: "bob"), carl = try UDPPhone(user: "carl"), alice = try UDPPhone(user: "alice")

        func send(_ phone: UDPPhone, _ method: String, to target: String, callID: String, cseq: Int = 1, headers: [String] = []) {
            let lines = ["\(method) \(target) SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bK-\(UUID().uuidString);rport",
                         "Max-Forwards: 70", "From: <sip:\(phone.user)@tern.test>;tag=\(phone.user)-tag", "To: <\(target)>",
                         "Call-ID: \(callID)", "CSeq: \(cseq) \(method)"] + headers
            phone.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 0\r\n\r\n", toPort: port)
        }
        func register(_ phone: UDPPhone, cseq: Int) throws -> String {
            let contact = "<sip:\(phone.user)@127.0.0.1:\(phone.port);pn-provider=fcm;pn-param=tern-test;pn-prid=\(phone.user)-token>"
            send(phone, "REGISTER", to: "sip:\(phone.user)@tern.test", callID: "reg-\(phone.user)", cseq: cseq,
                 headers: ["Contact: \(contact)", "Expires: 600"])
            return try phone.finalResponse(callID: "reg-\(phone.user)")
        }

        let registered = try register(bob, cseq: 1)
        #expect(registered.hasPrefix("SIP/2.0 200"))
        #expect(UDPPhone.values("Feature-Caps", in: registered).first?.hasPrefix("*;+sip.pns=\"fcm\";+sip.pnspurr=\"") == true)
        #expect(try register(carl, cseq: 1).hasPrefix("SIP/2.0 200"))

        // bob's push goes through; he registers again and takes the call.
        send(alice, "INVITE", to: "sip:bob@tern.test", callID: "push-bob", headers: ["Contact: \(alice.contact)"])
        try await gateway.waitFor("bob-token", in: \.outputText)
        #expect(try register(bob, cseq: 2).hasPrefix("SIP/2.0 200"))
        let invite = try bob.request("INVITE")
        #expect(!invite.components(separatedBy: "\r\n")[0].contains("pn-"), "push parameters stay with Tern")
        bob.answer(invite, status: 200, reason: "OK")
        #expect(try alice.finalResponse(callID: "push-bob").hasPrefix("SIP/2.0 200"))
        // carl's push is refused twice (the first attempt and one retry): the call ends at once.
        send(alice, "INVITE", to: "sip:carl@tern.test", callID: "push-carl", headers: ["Contact: \(alice.contact)"])
        #expect(try alice.finalResponse(callID: "push-carl").hasPrefix("SIP/2.0 480"))

        let expected: Set<String> = ["push.requested", "push.sent", "push.failed"]
        var events: [[String: Any]] = []
        let deadline = Date(timeIntervalSinceNow: 15)
        while Date() < deadline, !expected.isSubset(of: Set(events.compactMap { $0["type"] as? String })) {
            events += try consumer.receive(count: 1, timeout: 1)
        }
        func payloads(_ type: String) -> [[String: Any]] {
            events.filter { $0["type"] as? String == type }.compactMap { $0["payload"] as? [String: Any] }
        }
        let requested = payloads("push.requested")
        #expect(requested.count == 2)
        for payload in requested {
            #expect(payload["push_id"] is String && payload["provider"] as? String == "fcm" && payload["param"] as? String == "tern-test")
            #expect(payload["reason"] as? String == "call" && payload["attempts"] as? Int == 0 && payload["from"] is String)
        }
        #expect(payloads("push.sent").contains {
            $0["aor"] as? String == "sip:bob@tern.test" && $0["prid"] as? String == "bob-token" && $0["call_id"] as? String == "push-bob"
                && $0["attempts"] as? Int == 1
        })
        #expect(payloads("push.failed").contains {
            $0["aor"] as? String == "sip:carl@tern.test" && $0["attempts"] as? Int == 2 && ($0["error"] as? String)?.contains("503") == true
        })
        let gatewayLines = gateway.outputText.split(separator: "\n").dropFirst()
        #expect(gatewayLines.filter { $0.contains("carl-token") }.count == 2)
        #expect(gatewayLines.allSatisfy { $0.contains("Bearer gateway-key") })
    }
}
