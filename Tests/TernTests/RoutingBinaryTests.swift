import Foundation
import Logging
import MongoSupport
import Routing
import Testing
@testable import TernServer

/// Routing through the `tern` binary: the routing file, requests routed by it, and the management
/// methods that explain, reload and edit the shared cache.
@Suite(.timeLimit(.minutes(2)))
struct RoutingBinaryTests {
    static func routingFile(gatewayPort: Int, set: String = "gw") -> String {
        """
        probe:
          interval: 0
        dispatcher:
          gw:
            algorithm: round_robin
            destinations:
              - { uri: "sip:127.0.0.1:\(gatewayPort)" }
        tables:
          - { name: blocked, lifetime: 60 }
          - { name: dialled }
        dialplan:
          - name: blocked-callers
            prefix: ""
            if_in_table: { table: blocked, key: from_user }
            action: "reject:403 Blocked Caller"
          - name: international
            match: "00(\\\\d+)"
            rewrite: "+$1"
            store: { table: dialled, key: from_user, value: "$user" }
            action: continue
          - name: numbers
            prefix: "+"
            action: "dispatcher:\(set)"
        """
    }

    @Test func routedRequestsExplainReloadAndTheSharedCache() async throws {
        let gatewayA = try UDPPhone(user: "gwa"), gatewayB = try UDPPhone(user: "gwb"), alice = try UDPPhone(user: "alice")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("routing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("routing.yaml")
        try Self.routingFile(gatewayPort: gatewayA.port).write(to: file, atomically: true, encoding: .utf8)
        let token = "routing-token"
        let configured = try await TernBinaryTests.startTern(node: "routing", """
        routing:
          file: "\(file.path)"
        management:
          token: \(token)
        """)
        defer { configured.removeDirectory() }
        let tern = configured.process, port = configured.sipPort
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        let api = ManagementClient(port: try await tern.managementPort(), token: token)

        var sequence = 0
        func message(to user: String) throws -> String {
            sequence += 1
            let callID = "routing-\(sequence)"
            alice.send(["MESSAGE sip:\(user)@tern.test SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(alice.port);branch=z9hG4bK-r\(sequence);rport",
                        "Max-Forwards: 70", "From: <sip:alice@tern.test>;tag=a\(sequence)", "To: <sip:\(user)@tern.test>",
                        "Call-ID: \(callID)", "CSeq: 1 MESSAGE", "Content-Type: text/plain", "Content-Length: 2", "", "hi"]
                .joined(separator: "\r\n"), toPort: port)
            return callID
        }

        // 00 44 123 → +44123 → the dispatcher set's gateway.
        var callID = try message(to: "0044123")
        var request = try gatewayA.request("MESSAGE")
        #expect(request.hasPrefix("MESSAGE sip:+44123@127.0.0.1:\(gatewayA.port) SIP/2.0"))
        gatewayA.answer(request, status: 200, reason: "OK")
        #expect(try alice.finalResponse(callID: callID).hasPrefix("SIP/2.0 200"))

        let explained = try await api.call("routing.explain", ["request": """
            INVITE sip:0044123@tern.test SIP/2.0
            Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-explain
            Max-Forwards: 70
            From: <sip:bob@tern.test>;tag=1
            To: <sip:0044123@tern.test>
            Call-ID: explain
            CSeq: 1 INVITE
            """])
        #expect(explained.result["decision"] as? String == "forward")
        // The rule remembered what alice dialled (explaining wrote nothing for bob).
        #expect(try await api.call("htable.get", ["table": "dialled", "key": "alice"]).result["value"] as? String == "+44123")
        #expect(try await api.call("htable.get", ["table": "dialled", "key": "bob"]).errorCode == -32004)
        #expect(explained.result["matched_rules"] as? [String] == ["international", "numbers"])
        #expect(explained.result["destinations"] as? [String] == ["sip:+44123@127.0.0.1:\(gatewayA.port)"])
        #expect(try await api.call("routing.explain", ["request": "not SIP"]).errorCode == -32602)

        // The shared cache: a blocked caller is refused by the dialplan; the token guards changes.
        #expect(try await api.call("htable.set", ["table": "blocked", "key": "alice", "value": "spam"], token: "wrong").status == 401)
        #expect(try await api.call("htable.set", ["table": "blocked", "key": "alice", "value": "spam"]).result["value"] as? String == "spam")
        #expect(try await api.call("htable.get", ["table": "blocked", "key": "alice"]).result["value"] as? String == "spam")
        let dump = try await api.call("htable.dump", ["table": "blocked"])
        #expect((dump.result["entries"] as? [[String: Any]])?.first?["key"] as? String == "alice")
        callID = try message(to: "0044123")
        let blocked = try alice.finalResponse(callID: callID)
        #expect(blocked.hasPrefix("SIP/2.0 403 Blocked Caller"), "\(blocked)")
        #expect(try await api.call("htable.delete", ["table": "blocked", "key": "alice"]).result["deleted"] as? Bool == true)
        #expect(try await api.call("htable.set", ["table": "nosuch", "key": "k", "value": "v"]).errorCode == -32004)

        // A reload that fails keeps the tables in use and says why.
        try Self.routingFile(gatewayPort: gatewayB.port, set: "nope").write(to: file, atomically: true, encoding: .utf8)
        let refused = try await api.call("routing.reload")
        #expect(refused.errorCode == -32602)
        #expect(((refused.object["error"] as? [String: Any])?["message"] as? String)?.contains("no dispatcher set nope") == true)
        callID = try message(to: "+44999")
        request = try gatewayA.request("MESSAGE")
        gatewayA.answer(request, status: 200, reason: "OK")
        #expect(try alice.finalResponse(callID: callID).hasPrefix("SIP/2.0 200"))
        // A good reload takes effect at once.
        try Self.routingFile(gatewayPort: gatewayB.port).write(to: file, atomically: true, encoding: .utf8)
        let reloaded = try await api.call("routing.reload")
        #expect(reloaded.result["dialplan_rules"] as? Int == 3 && reloaded.result["dispatcher_sets"] as? Int == 1)
        callID = try message(to: "+44999")
        request = try gatewayB.request("MESSAGE")
        #expect(request.hasPrefix("MESSAGE sip:+44999@127.0.0.1:\(gatewayB.port) SIP/2.0"))
        gatewayB.answer(request, status: 200, reason: "OK")
        #expect(try alice.finalResponse(callID: callID).hasPrefix("SIP/2.0 200"))
        let destinations = try await api.call("routing.destinations")
        let set = (destinations.result["gw"] as? [String: Any])?["destinations"] as? [[String: Any]]
        #expect(set?.first?["uri"] as? String == "sip:127.0.0.1:\(gatewayB.port)" && set?.first?["up"] as? Bool == true)
    }

    @Test(.enabled(if: TernBinaryTests.mongoEnabled, "needs TERN_TEST_MONGODB_URI (make test starts the server)"))
    func portedNumbersFromMongoDB() async throws {
        let scratch = try TernBinaryTests.ScratchDatabase(prefix: "np")
        defer { Task { await scratch.drop() } }
        try await scratch.database.perform { session in
            try session.insert("ported", ["number": .string("+4420123"), "rn": .string("+44161999")])
            try session.insert("ported", ["number": .string("+4420124"), "rn": .string("+44161998")])
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("np-mongo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("routing.yaml")
        try """
        lcr:
          gateways: [{ name: north, uri: "sip:north.example" }, { name: london, uri: "sip:london.example" }]
          routes: [{ prefix: "+44161", gateways: [north] }, { prefix: "+4420", gateways: [london] }]
        portability:
          mongodb_collection: ported
        dialplan:
          - { prefix: "+", action: lcr }
        """.write(to: file, atomically: true, encoding: .utf8)
        let configured = try await TernBinaryTests.startTern(node: "np-mongo", storage: "  location: memory\n" + scratch.storageLines,
                                                             "routing:\n  file: \"\(file.path)\"\n")
        defer { configured.removeDirectory() }
        let tern = configured.process
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        #expect(tern.output.contains("ported numbers loaded from MongoDB"))
        let api = ManagementClient(port: try await tern.managementPort())
        func explain(_ number: String) async throws -> [String] {
            let reply = try await api.call("routing.explain", ["request": """
                INVITE sip:\(number)@tern.test SIP/2.0
                Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-np
                From: <sip:bob@tern.test>;tag=1
                To: <sip:\(number)@tern.test>
                Call-ID: np
                CSeq: 1 INVITE
                """])
            return reply.result["destinations"] as? [String] ?? []
        }
        #expect(try await explain("+4420124") == ["sip:+4420124;rn=+44161998;npdi@north.example"], "ported: routed by its rn")
        #expect(try await explain("+4420999") == ["sip:+4420999;npdi@london.example"], "not ported")
    }

    static let errors: [(String, String)] = [
        ("dialplan:\n  - prefix: \"+\"\n    action: lcr\n", "dialplan[0].action (line 3): lcr, but the file has no lcr section"),
        ("dialplan:\n  - match: \"(\"\n", "dialplan[0].match (line 2): (: not a regular expression"),
        ("dialplan:\n  - name: x\n", "dialplan[0].match (line 2): a rule needs match (a regular expression) or prefix"),
        ("dialplan:\n  - prefix: \"\"\n    action: \"dispatcher:gw\"\n", "dialplan[0].action (line 3): no dispatcher set gw"),
        ("dialplan:\n  - prefix: \"\"\n    action: \"reject:99\"\n", "dialplan[0].action (line 3): reject:99: expected reject:CODE [reason]"),
        ("dispatcher:\n  gw:\n    algorithm: random\n    destinations: [{ uri: \"sip:a\" }]\n",
         "dispatcher.gw.algorithm (line 3): random: expected round_robin, weighted, hash_call_id, hash_from_user, hash_to_user, least_loaded"),
        ("dispatcher:\n  gw:\n    destinations: [{ uri: \"nope\" }]\n", "dispatcher.gw.destinations[0].uri (line 3): nope: not a SIP URI"),
        ("lcr:\n  gateways: [{ name: a, uri: \"sip:a\" }]\n  routes: [{ prefix: \"+1\", gateways: [b] }]\n",
         "lcr.routes[0].gateways (line 3): b: no such gateway"),
        ("portability:\n  file: missing.csv\n", "portability.file (line 2): /nonexistent/missing.csv: no such file, or not readable"),
        ("colour: red\n", "colour (line 1): unknown key"),
        ("dialplan:\n  - prefix: \"0\"\n    isup:\n      calling_party_number: \"(\"\n",
         "dialplan[0].isup.calling_party_number (line 4): (: not a regular expression"),
        ("dialplan:\n  - prefix: \"0\"\n    isup_set_calling: { nature: 4 }\n", "dialplan[0].isup_set_calling.number (line 3): needed"),
        ("dialplan:\n  - prefix: \"0\"\n    isup_set_destination: { hops: 40 }\n",
         "dialplan[0].isup_set_destination.hops (line 3): 40 is out of range 1...31"),
    ]

    @Test(arguments: errors)
    func badRoutingFileNamesTheKey(_ yaml: String, _ message: String) {
        do {
            _ = try RoutingFile.parse(yaml, directory: "/nonexistent")
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func sipTRulesAreRead() throws {
        let contents = try RoutingFile.parse("""
        dialplan:
          - name: restricted-callers
            prefix: "00"
            isup: { calling_party_number.presentation: "1", hop_counter: "[0-9]+" }
            isup_set_destination: { nature: 3 }
            isup_set_calling: { number: "4930999", presentation: 1 }
            isup_set_forwarding: { number: "$user" }
            action: "reject:403 Anonymous Calls Refused"
        """, directory: "/nonexistent")
        let rule = try #require(contents.tables.dialplan.first)
        #expect(rule.isupConditions.map(\.field) == ["calling_party_number.presentation", "hop_counter"])
        #expect(rule.isupEdits == [.destination(number: "$user", nature: 3, hops: 31),
                                   .calling(number: "4930999", nature: 4, presentation: 1, screening: 3),
                                   .forwarding(number: "$user", nature: 4)])
    }

    @Test func exampleRoutingFileIsValid() throws {
        let contents = try RoutingFile.load(path: TernBinaryTests.packageRoot.appendingPathComponent("routing.example.yaml").path)
        #expect(contents.tables.dialplan.count == 7 && contents.tables.dispatcherSets["media-servers"]?.destinations.count == 3)
        #expect(contents.tables.lcr?.match("+442079460000")?.prefix == "+4420")
    }

    @Test func portabilityFileIsReadRelativeToTheRoutingFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("np-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "number,routing_number\n+4420123,+44161999\n# a comment\n\n+4420124,+44161998\n"
            .write(to: folder.appendingPathComponent("ported.csv"), atomically: true, encoding: .utf8)
        let contents = try RoutingFile.parse("portability:\n  file: ported.csv\n", directory: folder.path)
        #expect(contents.tables.portability?.count == 2)
        #expect(contents.tables.portability?.routingNumber(for: "+4420124") == "+44161998")
        try "+4420123,+44161999\nbroken line\n".write(to: folder.appendingPathComponent("bad.csv"), atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationError.self) { try RoutingFile.parse("portability:\n  file: bad.csv\n", directory: folder.path) }
    }
}
