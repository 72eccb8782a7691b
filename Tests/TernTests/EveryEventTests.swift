import EventBus
import Foundation
import Testing

/// Every event type the bus carries, caused through the `tern` binary by real SIP over UDP (and one
/// management call), arriving at a real broker with the payload docs/events.md documents.
extension EventBusTests {
    @Test func everyEventTypeArrivesWithItsDocumentedPayload() async throws {
        let uri = try #require(Self.uri)
        let exchange = "tern.events.every." + UUID().uuidString.prefix(8)
        let consumer = try AMQPTestConsumer(uri: uri, exchange: String(exchange))
        let token = "every-token"
        let configured = try await TernBinaryTests.startTern(node: "every-node", """
        registrar:
          min_expires: 1
        presence:
          policy: ask
        events:
          brokers: ["\(uri)"]
          exchange: \(exchange)
          commands:
            enabled: false
        management:
          token: \(token)
        """)
        defer { configured.removeDirectory() }
        let tern = configured.process, port = configured.sipPort
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        let api = ManagementClient(port: try await tern.managementPort(), token: token)
        let bob = try UDPPhone(user: "bob"), alice = try UDPPhone(user: "alice"), erin = try UDPPhone(user: "erin")
        let dave = try UDPPhone(user: "dave"), frank = try UDPPhone(user: "frank")

        func request(_ phone: UDPPhone, _ method: String, to target: String, callID: String, cseq: Int = 1, toTag: String? = nil,
                     headers: [String] = [], body: String = "") -> String {
            var lines = ["\(method) \(target) SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bK-\(UUID().uuidString);rport",
                         "Max-Forwards: 70", "From: <sip:\(phone.user)@tern.test>;tag=\(phone.user)-tag",
                         "To: <\(target.hasPrefix("sip:\(phone.user)@") ? target : target)>" + (toTag.map { ";tag=\($0)" } ?? ""),
                         "Call-ID: \(callID)", "CSeq: \(cseq) \(method)", "Contact: \(phone.contact)"]
            lines += headers
            lines.append("Content-Length: \(body.utf8.count)")
            let text = lines.joined(separator: "\r\n") + "\r\n\r\n" + body
            phone.send(text, toPort: port)
            return text
        }
        func register(_ phone: UDPPhone, expires: Int, cseq: Int) throws -> String {
            _ = request(phone, "REGISTER", to: "sip:\(phone.user)@tern.test", callID: "reg-\(phone.user)", cseq: cseq,
                        headers: ["Expires: \(expires)"])
            return try phone.finalResponse(callID: "reg-\(phone.user)")
        }

        // Registrations: added, refreshed, later removed and expired.
        #expect(try register(bob, expires: 600, cseq: 1).hasPrefix("SIP/2.0 200"))
        #expect(try register(bob, expires: 600, cseq: 2).hasPrefix("SIP/2.0 200"))
        #expect(try register(erin, expires: 1, cseq: 1).hasPrefix("SIP/2.0 200"))

        // A call that is answered and hung up: started, answered, ended.
        _ = request(alice, "INVITE", to: "sip:bob@tern.test", callID: "call-answered")
        bob.answer(try bob.request("INVITE"), status: 200, reason: "OK")
        let answered = try alice.finalResponse(callID: "call-answered")
        #expect(answered.hasPrefix("SIP/2.0 200"))
        let routes = UDPPhone.values("Record-Route", in: answered).reversed().map { "Route: " + $0 }
        _ = request(alice, "BYE", to: "sip:bob@127.0.0.1:\(bob.port)", callID: "call-answered", cseq: 2, toTag: "bob-answer",
                    headers: routes)
        bob.answer(try bob.request("BYE"), status: 200, reason: "OK")
        #expect(try alice.finalResponse(callID: "call-answered").hasPrefix("SIP/2.0 200"))
        // Calls that fail: busy, and a callee with no device at all.
        _ = request(alice, "INVITE", to: "sip:bob@tern.test", callID: "call-busy")
        bob.answer(try bob.request("INVITE"), status: 486, reason: "Busy Here")
        #expect(try alice.finalResponse(callID: "call-busy").hasPrefix("SIP/2.0 486"))
        _ = request(alice, "INVITE", to: "sip:carol@tern.test", callID: "call-nobody")
        #expect(try alice.finalResponse(callID: "call-nobody").hasPrefix("SIP/2.0 404"))

        // Offline messages: stored, then delivered to dave; stored, then refused by frank's phone.
        _ = request(alice, "MESSAGE", to: "sip:dave@tern.test", callID: "msg-dave", headers: ["Content-Type: text/plain"], body: "hi dave")
        #expect(try alice.finalResponse(callID: "msg-dave").hasPrefix("SIP/2.0 202"))
        _ = request(alice, "MESSAGE", to: "sip:frank@tern.test", callID: "msg-frank", headers: ["Content-Type: text/plain"], body: "hi frank")
        #expect(try alice.finalResponse(callID: "msg-frank").hasPrefix("SIP/2.0 202"))
        _ = request(dave, "REGISTER", to: "sip:dave@tern.test", callID: "reg-dave", headers: ["Expires: 600"])
        dave.answer(try dave.request("MESSAGE"), status: 200, reason: "OK")
        _ = request(frank, "REGISTER", to: "sip:frank@tern.test", callID: "reg-frank", headers: ["Expires: 600"])
        frank.answer(try frank.request("MESSAGE"), status: 480, reason: "Temporarily Unavailable")

        // Presence: a publication, a watcher who must wait, is allowed by the operator, then leaves.
        let pidf = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@tern.test\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>"
        _ = request(alice, "PUBLISH", to: "sip:alice@tern.test", callID: "pub-alice",
                    headers: ["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"], body: pidf)
        #expect(try alice.finalResponse(callID: "pub-alice").hasPrefix("SIP/2.0 200"))
        _ = request(bob, "SUBSCRIBE", to: "sip:alice@tern.test", callID: "sub-bob", headers: ["Event: presence", "Expires: 600"])
        let subscribed = try bob.finalResponse(callID: "sub-bob")
        #expect(subscribed.hasPrefix("SIP/2.0 2"))
        let dialogTag = UDPPhone.values("To", in: subscribed).first?.components(separatedBy: ";tag=").last ?? ""
        bob.answer(try bob.request("NOTIFY"), status: 200, reason: "OK")
        #expect(try await api.call("presence.authorize", ["presentity": "alice@tern.test", "watcher": "bob@tern.test",
                                                          "decision": "allowed"]).result["decision"] as? String == "allowed")
        bob.answer(try bob.request("NOTIFY"), status: 200, reason: "OK")
        _ = request(bob, "SUBSCRIBE", to: "sip:alice@tern.test", callID: "sub-bob", cseq: 2, toTag: dialogTag,
                    headers: ["Event: presence", "Expires: 0"])
        #expect(try bob.finalResponse(callID: "sub-bob").hasPrefix("SIP/2.0 2"))

        #expect(try register(bob, expires: 0, cseq: 3).hasPrefix("SIP/2.0 200"))

        // Everything arrives (erin's binding lapses meanwhile).
        let expected: Set<String> = [
            "registration.added", "registration.refreshed", "registration.removed", "registration.expired",
            "call.started", "call.answered", "call.ended", "call.failed",
            "message.stored", "message.delivered", "message.failed",
            "presence.updated", "subscription.created", "subscription.updated", "subscription.terminated", "watcher.pending",
        ]
        var events: [[String: Any]] = []
        let deadline = Date(timeIntervalSinceNow: 20)
        while Date() < deadline, !expected.isSubset(of: Set(events.compactMap { $0["type"] as? String })) {
            events += try consumer.receive(count: 1, timeout: 1)
        }
        let types = Set(events.compactMap { $0["type"] as? String })
        #expect(expected.isSubset(of: types), "missing \(expected.subtracting(types).sorted())")

        // The envelope and each type's payload, as docs/events.md has them.
        func payloads(_ type: String) -> [[String: Any]] {
            events.filter { $0["type"] as? String == type }.compactMap { $0["payload"] as? [String: Any] }
        }
        for event in events {
            #expect((event["id"] as? String)?.isEmpty == false && event["node"] as? String == "every-node")
            #expect((event["time"] as? String)?.hasSuffix("Z") == true && event["version"] as? Int == TernEvent.schemaVersion)
        }
        for type in ["registration.added", "registration.refreshed", "registration.removed", "registration.expired"] {
            for payload in payloads(type) {
                #expect(payload["aor"] is String && payload["contact"] is String && (payload["expires_at"] as? String)?.hasSuffix("Z") == true)
                #expect(payload["transport"] as? String == "udp" && payload.keys.contains("instance") && payload.keys.contains("user_agent"))
                #expect((payload["source"] as? String)?.hasPrefix("127.0.0.1:") == true)
            }
        }
        #expect(payloads("registration.expired").contains { $0["aor"] as? String == "sip:erin@tern.test" })
        #expect(payloads("registration.removed").contains { $0["aor"] as? String == "sip:bob@tern.test" })
        let started = payloads("call.started").filter { $0["call_id"] as? String == "call-answered" }
        #expect(started.first?["from"] as? String == "sip:alice@tern.test" && started.first?["to"] as? String == "sip:bob@tern.test")
        #expect(started.first?["request_uri"] as? String == "sip:bob@tern.test")
        #expect(payloads("call.answered").contains { $0["call_id"] as? String == "call-answered" && $0["status"] as? Int == 200 })
        #expect(payloads("call.ended").contains { $0["call_id"] as? String == "call-answered" && $0["from"] as? String == "sip:alice@tern.test" })
        #expect(payloads("call.failed").contains { $0["call_id"] as? String == "call-busy" && $0["status"] as? Int == 486 })
        #expect(payloads("call.failed").contains { $0["call_id"] as? String == "call-nobody" && $0["status"] as? Int == 404 })
        #expect(!payloads("call.started").contains { $0["call_id"] as? String == "call-nobody" }, "nothing was routed")
        for type in ["message.stored", "message.delivered", "message.failed"] {
            for payload in payloads(type) {
                #expect(payload["message_id"] is String && payload["sender"] is String && payload["recipient"] is String)
                #expect((payload["stored_at"] as? String)?.hasSuffix("Z") == true && payload["attempts"] is Int)
            }
        }
        #expect(payloads("message.delivered").contains { $0["recipient"] as? String == "sip:dave@tern.test" })
        #expect(payloads("message.failed").contains { $0["recipient"] as? String == "sip:frank@tern.test" })
        #expect(payloads("presence.updated").contains { $0["presentity"] as? String == "sip:alice@tern.test" && $0["open"] as? Bool == true })
        for type in ["subscription.created", "subscription.updated", "subscription.terminated", "watcher.pending"] {
            #expect(payloads(type).contains {
                $0["presentity"] as? String == "sip:alice@tern.test" && $0["watcher"] as? String == "sip:bob@tern.test"
                    && $0["package"] as? String == "presence"
            }, "\(type)")
        }
        #expect(payloads("subscription.terminated").first?["reason"] is String)
    }
}
