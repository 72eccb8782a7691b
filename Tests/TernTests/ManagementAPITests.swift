import Foundation
import Testing

/// The management API through the `tern` binary, over real HTTP and SIP sockets: every method over
/// JSON-RPC, the same over XML-RPC, the token, JSON-RPC's error codes, and metrics that parse.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ManagementAPITests {
    static let token = "test-token-\(UUID().uuidString.prefix(8))"

    /// A tern with a temporary store, presence asking before it shows anyone's state, and a token.
    static func startTern(token: String? = ManagementAPITests.token) async throws
        -> (tern: TernBinaryTests.TernProcess, sip: Int, api: ManagementClient, directory: URL) {
        let started = try await TernBinaryTests.startTern(node: "mgmt-node", """
        presence:
          policy: ask
        management:
          token: "\(token ?? "")"
        """)
        let tern = started.process, sip = started.sipPort, directory = started.directory
        let api = ManagementClient(port: try await tern.managementPort(), token: nil)
        return (tern, sip, api, directory)
    }

    static func register(_ user: String, port: Int, contactPort: Int = 9) async throws -> String {
        let text = "REGISTER sip:tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(contactPort);branch=z9hG4bK-\(UUID().uuidString);rport\r\n"
            + "From: <sip:\(user)@tern.test>;tag=1\r\nTo: <sip:\(user)@tern.test>\r\nCall-ID: mgmt-\(UUID().uuidString)\r\nCSeq: 1 REGISTER\r\n"
            + "Contact: <sip:\(user)@127.0.0.1:\(contactPort)>\r\nExpires: 600\r\nUser-Agent: mgmt-test\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        return try await TernBinaryTests().udpExchange(port: port, text)
    }

    @Test func everyMethodOverJSONRPC() async throws {
        let (tern, sip, api, directory) = try await Self.startTern()
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        let token = Self.token
        #expect(try await Self.register("alice", port: sip).hasPrefix("SIP/2.0 200"))

        // The method list covers the issue's operations.
        let names = try await api.call("system.listMethods").object["result"] as? [String] ?? []
        for name in ["stats", "config.dump", "listeners", "transactions.count", "location.lookup", "location.remove", "location.dump",
                     "presence.state", "presence.watchers", "presence.authorize", "presence.publish", "presence.dump",
                     "message.send", "messages.stored", "messages.delete"] {
            #expect(names.contains(name), "missing \(name)")
        }
        #expect((try await api.call("system.methodHelp", ["method": "location.dump"]).object["result"] as? String)?.contains("page") == true)

        // Location.
        let lookup = try await api.call("location.lookup", ["aor": "alice@tern.test"]).result
        #expect(lookup["aor"] as? String == "sip:alice@tern.test")
        let bindings = lookup["bindings"] as? [[String: Any]] ?? []
        #expect(bindings.count == 1)
        #expect(bindings.first?["contact"] as? String == "sip:alice@127.0.0.1:9")
        #expect(bindings.first?["user_agent"] as? String == "mgmt-test")
        #expect((bindings.first?["expires"] as? Int).map { (590...600).contains($0) } == true)
        #expect(try await Self.register("bob", port: sip).hasPrefix("SIP/2.0 200"))
        let dump = try await api.call("location.dump", ["limit": 1, "offset": 1]).result
        #expect(dump["total"] as? Int == 2)
        #expect((dump["bindings"] as? [[String: Any]])?.map { $0["aor"] as? String } == ["sip:bob@tern.test"])

        // Statistics, configuration, listeners, transactions.
        let stats = try await api.call("stats").result
        #expect(stats["node"] as? String == "mgmt-node")
        #expect(stats["bindings"] as? Int == 2)
        #expect((stats["presence"] as? [String: Any])?["subscriptions"] as? Int == 0)
        let config = try await api.call("config.dump").result
        #expect((config["storage"] as? [String: Any])?["node"] as? String == "mgmt-node")
        #expect((config["presence"] as? [String: Any])?["policy"] as? String == "ask")
        #expect((config["management"] as? [String: Any])?["token"] as? String == "(set)", "the token must not be shown")
        #expect(!(try await api.call("config.dump").text.contains(token)))
        let listeners = try await api.call("listeners").object["result"] as? [[String: Any]] ?? []
        #expect(listeners.count == 1 && listeners.first?["port"] as? Int == sip && listeners.first?["transport"] as? String == "udp")
        let transactions = try await api.call("transactions.count").result
        #expect(transactions["server"] is Int && transactions["client"] is Int)

        // Presence: publish for a user, read it back; a watcher that waits for a decision, then allowed.
        let published = try await api.call("presence.publish", ["presentity": "sip:alice@tern.test", "status": "open", "note": "at work"],
                                           token: token).result
        #expect((published["etag"] as? String)?.isEmpty == false)
        let state = try await api.call("presence.state", ["presentity": "sip:alice@tern.test"]).result
        let document = state["document"] as? String ?? ""
        #expect(document.contains("<basic>open</basic>") && document.contains("at work"))
        let subscribe = "SUBSCRIBE sip:alice@tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-sub1;rport\r\n"
            + "From: <sip:carol@tern.test>;tag=c1\r\nTo: <sip:alice@tern.test>\r\nCall-ID: mgmt-sub\r\nCSeq: 1 SUBSCRIBE\r\n"
            + "Event: presence\r\nExpires: 600\r\nContact: <sip:carol@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        let subscribed = try await TernBinaryTests().udpExchange(port: sip, subscribe)
        #expect(subscribed.hasPrefix("SIP/2.0 200"), "\(subscribed)")
        var watchers = try await api.call("presence.watchers", ["presentity": "alice@tern.test"]).result["watchers"] as? [[String: Any]]
        #expect(watchers?.map { $0["watcher"] as? String } == ["sip:carol@tern.test"])
        #expect(watchers?.first?["status"] as? String == "pending")
        let decided = try await api.call("presence.authorize", ["presentity": "alice@tern.test", "watcher": "carol@tern.test",
                                                                "decision": "allowed"], token: token)
        #expect(decided.result["decision"] as? String == "allowed")
        watchers = try await api.call("presence.watchers", ["presentity": "alice@tern.test"]).result["watchers"] as? [[String: Any]]
        #expect(watchers?.first?["status"] as? String == "active")
        let presentities = try await api.call("presence.dump").result["presentities"] as? [[String: Any]] ?? []
        let alice = presentities.first { $0["presentity"] as? String == "sip:alice@tern.test" }
        #expect(alice?["open"] as? Bool == true && alice?["subscriptions"] as? Int == 1 && alice?["publications"] as? Int == 1)
        #expect(try await api.call("presence.authorize", ["presentity": "alice@tern.test", "watcher": "carol@tern.test",
                                                          "decision": "maybe"], token: token).errorCode == -32602)

        // Messages: a user who is not registered gets it stored; list it, delete it.
        let sent = try await api.call("message.send", ["to": "sip:dave@tern.test", "body": "hello dave"], token: token).result
        #expect(sent["status"] as? Int == 202 && sent["outcome"] as? String == "stored")
        let stored = try await api.call("messages.stored", ["user": "dave@tern.test"]).result["messages"] as? [[String: Any]] ?? []
        #expect(stored.count == 1 && stored.first?["body"] as? String == "hello dave")
        #expect((stored.first?["from"] as? String)?.contains("sip:tern@tern.test") == true)
        let id = try #require(stored.first?["id"] as? String)
        #expect(try await api.call("messages.delete", ["id": id], token: token).result["deleted"] as? Bool == true)
        #expect(try await api.call("messages.delete", ["id": id], token: token).errorCode == -32004)
        #expect((try await api.call("messages.stored", ["user": "dave@tern.test"]).result["messages"] as? [Any])?.isEmpty == true)

        // Removing a binding, then it is gone.
        let removed = try await api.call("location.remove", ["aor": "sip:alice@tern.test", "contact": "sip:alice@127.0.0.1:9"], token: token)
        #expect(removed.result["removed"] as? Int == 1)
        #expect((try await api.call("location.lookup", ["aor": "alice@tern.test"]).result["bindings"] as? [Any])?.isEmpty == true)
        #expect(try await api.call("location.remove", ["aor": "alice@tern.test", "contact": "sip:alice@127.0.0.1:9"],
                                   token: token).errorCode == -32004)
    }

    @Test func theTokenGuardsEveryMethodThatChangesState() async throws {
        let (tern, sip, api, directory) = try await Self.startTern()
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        #expect(try await Self.register("erin", port: sip).hasPrefix("SIP/2.0 200"))
        let changing: [(String, [String: Any])] = [
            ("location.remove", ["aor": "erin@tern.test"]),
            ("presence.publish", ["presentity": "erin@tern.test", "status": "open"]),
            ("presence.authorize", ["presentity": "erin@tern.test", "watcher": "x@tern.test", "decision": "blocked"]),
            ("message.send", ["to": "erin@tern.test", "body": "x"]),
            ("messages.delete", ["id": "x"]),
        ]
        for (method, params) in changing {
            #expect(try await api.call(method, params).errorCode == -32001, "\(method) without a token")
            let wrong = try await api.call(method, params, token: "not-the-token")
            #expect(wrong.status == 401 && wrong.errorCode == -32001, "\(method) with a wrong token")
        }
        // Nothing changed; reading needs no token.
        #expect((try await api.call("location.lookup", ["aor": "erin@tern.test"]).result["bindings"] as? [Any])?.count == 1)
        #expect(try await api.call("presence.state", ["presentity": "erin@tern.test"]).result["document"] is NSNull)
        // The right token works.
        #expect(try await api.call("location.remove", ["aor": "erin@tern.test"], token: Self.token).result["removed"] as? Int == 1)
        // XML-RPC is guarded the same way.
        let xml = "<?xml version=\"1.0\"?><methodCall><methodName>location.remove</methodName><params><param><value>"
            + "<string>erin@tern.test</string></value></param></params></methodCall>"
        let refused = try await api.post("/xmlrpc", xml, contentType: "text/xml")
        #expect(refused.text.contains("<fault>") && refused.text.contains("<int>-32001</int>"))
    }

    @Test func withoutAConfiguredTokenNothingChangesState() async throws {
        let (tern, _, api, directory) = try await Self.startTern(token: nil)
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        #expect(try await api.call("location.remove", ["aor": "a@tern.test"]).errorCode == -32001)
        #expect(try await api.call("location.remove", ["aor": "a@tern.test"], token: "anything").status == 401)
        #expect(try await api.call("stats").result["node"] as? String == "mgmt-node")
    }

    @Test func jsonRPCErrorsBatchesAndNotifications() async throws {
        let (tern, _, api, directory) = try await Self.startTern()
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        let parse = try await api.post("/jsonrpc", "{\"jsonrpc\": \"2.0\", \"method\": ")
        #expect(parse.errorCode == -32700 && parse.object["id"] is NSNull)
        #expect(try await api.post("/jsonrpc", #"{"jsonrpc":"1.0","id":7,"method":"stats"}"#).errorCode == -32600)
        #expect(try await api.post("/jsonrpc", #"{"jsonrpc":"2.0","id":7,"method":42}"#).errorCode == -32600)
        #expect(try await api.post("/jsonrpc", #"{"jsonrpc":"2.0","id":7,"method":"stats","params":"x"}"#).errorCode == -32600)
        #expect(try await api.post("/jsonrpc", "[]").errorCode == -32600)
        let unknown = try await api.post("/jsonrpc", #"{"jsonrpc":"2.0","id":"u","method":"no.such.method"}"#)
        #expect(unknown.errorCode == -32601 && unknown.object["id"] as? String == "u")
        let badParam = try await api.call("location.lookup", ["aor": "alice@tern.test", "colour": "blue"])
        #expect(badParam.errorCode == -32602)
        #expect(((badParam.object["error"] as? [String: Any])?["message"] as? String)?.contains("colour") == true)
        #expect(try await api.call("location.lookup", [:]).errorCode == -32602)
        #expect(try await api.call("location.lookup", ["aor": 5]).errorCode == -32602)
        #expect(try await api.call("location.dump", ["limit": 0]).errorCode == -32602)
        #expect(try await api.call("location.lookup", ["aor": "sip:"]).errorCode == -32602)
        // By position.
        let positional = try await api.post("/jsonrpc", #"{"jsonrpc":"2.0","id":1,"method":"location.lookup","params":["x@tern.test"]}"#)
        #expect((positional.result["aor"] as? String) == "sip:x@tern.test")
        // A batch: two answers in order of the calls that have ids; the notification gets none.
        let batch = try await api.post("/jsonrpc", #"[{"jsonrpc":"2.0","id":1,"method":"stats"},{"jsonrpc":"2.0","method":"stats"},"#
            + #"{"jsonrpc":"2.0","id":2,"method":"nope"}, 5]"#)
        let answers = batch.json as? [[String: Any]] ?? []
        #expect(answers.count == 3)
        #expect(answers.first?["id"] as? Int == 1 && answers.first?["result"] != nil)
        #expect((answers.dropFirst().first?["error"] as? [String: Any])?["code"] as? Int == -32601)
        #expect((answers.last?["error"] as? [String: Any])?["code"] as? Int == -32600)
        let notification = try await api.post("/jsonrpc", #"{"jsonrpc":"2.0","method":"stats"}"#)
        #expect(notification.status == 204 && notification.text.isEmpty)
    }

    @Test func xmlRPCCarriesTheSameMethods() async throws {
        let (tern, sip, api, directory) = try await Self.startTern()
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        #expect(try await Self.register("frank", port: sip).hasPrefix("SIP/2.0 200"))
        let call = "<?xml version=\"1.0\"?><methodCall><methodName>location.lookup</methodName><params><param><value>"
            + "<string>frank@tern.test</string></value></param></params></methodCall>"
        let reply = try await api.post("/xmlrpc", call, contentType: "text/xml")
        #expect(reply.status == 200)
        #expect(reply.text.contains("<methodResponse><params><param><value><struct><member><name>aor</name><value><string>sip:frank@tern.test</string>"))
        #expect(reply.text.contains("<name>contact</name><value><string>sip:frank@127.0.0.1:9</string>"))
        // A struct as named parameters, at the customary /RPC2 path, with an int.
        let named = "<?xml version=\"1.0\"?><methodCall><methodName>location.dump</methodName><params><param><value><struct>"
            + "<member><name>limit</name><value><i4>1</i4></value></member></struct></value></param></params></methodCall>"
        let dump = try await api.post("/RPC2", named, contentType: "text/xml")
        #expect(dump.text.contains("<name>total</name><value><int>1</int></value>"))
        // Faults: an unknown method, a malformed call.
        let unknown = try await api.post("/xmlrpc", "<methodCall><methodName>nope</methodName></methodCall>", contentType: "text/xml")
        #expect(unknown.text.contains("<fault>") && unknown.text.contains("<int>-32601</int>"))
        let broken = try await api.post("/xmlrpc", "<methodCall><methodName>stats", contentType: "text/xml")
        #expect(broken.text.contains("<fault>") && broken.text.contains("<int>-32700</int>"), "\(broken.text)")
        let authorized = try await api.post("/xmlrpc", "<methodCall><methodName>location.remove</methodName><params><param><value>"
            + "<string>frank@tern.test</string></value></param></params></methodCall>", contentType: "text/xml", token: Self.token)
        #expect(authorized.text.contains("<name>removed</name><value><int>1</int></value>"))
    }

    @Test func metricsHealthAndReadiness() async throws {
        let (tern, sip, api, directory) = try await Self.startTern()
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        #expect(try await api.get("/health").status == 200)
        let ready = try await api.get("/ready")
        #expect(ready.status == 200 && ready.text.contains("ready"))
        #expect(try await Self.register("gina", port: sip).hasPrefix("SIP/2.0 200"))
        let options = "OPTIONS sip:tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-opt;rport\r\n"
            + "From: <sip:gina@tern.test>;tag=1\r\nTo: <sip:tern.test>\r\nCall-ID: mgmt-opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        #expect(try await TernBinaryTests().udpExchange(port: sip, options).hasPrefix("SIP/2.0 200"))
        let metrics = try await api.get("/metrics")
        #expect(metrics.status == 200)
        // Every line is a comment or `name{labels} value` in the Prometheus text format.
        var samples: [String: Double] = [:]
        let sampleLine = try Regex(#"^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})?) (-?[0-9.eE+]+|NaN|[+-]Inf)$"#)
        for line in metrics.text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let match = String(line).wholeMatch(of: sampleLine), let key = match.output[1].substring,
                  let value = match.output[4].substring.flatMap({ Double($0) }) else {
                Issue.record("not a Prometheus sample: \(line)")
                continue
            }
            samples[String(key)] = value
        }
        #expect((samples[#"tern_sip_requests_received{method="REGISTER"}"#] ?? 0) >= 1)
        #expect((samples[#"tern_sip_requests_received{method="OPTIONS"}"#] ?? 0) >= 1)
        #expect((samples[#"tern_sip_responses_sent{class="2xx"}"#] ?? 0) >= 2)
        #expect(samples[#"tern_location_bindings"#] == 1)
        // Each kind of change on its own series: one registration added, nothing else.
        #expect(samples[#"tern_location_changes{kind="added"}"#] == 1)
        #expect((samples[#"tern_location_changes{kind="refreshed"}"#] ?? 0) == 0)
        #expect((samples[#"tern_location_changes{kind="removed"}"#] ?? 0) == 0)
        #expect(samples[#"tern_sip_transactions{kind="server"}"#] != nil)
        #expect(samples[#"tern_presence_subscriptions"#] == 0)
        #expect((samples[#"tern_process_heap_in_use_bytes"#] ?? 0) > 1_000_000, "live heap of a running tern")
        #expect(samples[#"tern_presence_notifies"#] != nil)
        #expect(samples.keys.contains { $0.hasPrefix("tern_messaging_messages") })
    }
}
