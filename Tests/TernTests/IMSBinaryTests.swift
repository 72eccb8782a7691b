import Foundation
import IMS
import Logging
import MongoSupport
import Testing
@testable import TernServer

/// IMS through the `tern` binary: subscriber profiles from a file, the registrar's IMS answers,
/// tel identities, and the profile methods of the management API.
@Suite(.timeLimit(.minutes(2)))
struct IMSBinaryTests {
    @Test func profilesRegistrationAndTheManagementAPI() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ims-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let profiles = folder.appendingPathComponent("profiles.yaml")
        try """
        subscribers:
          - private_id: alice@ims.example
            service_profiles:
              - public_identities:
                  - { uri: "sip:alice@ims.example", default: true }
                  - { uri: "tel:+4930123" }
                  - { uri: "sip:alice.old@ims.example", barred: true }
                ifc:
                  - priority: 10
                    trigger: { cnf: true, spt: [ { group: 0, method: MESSAGE }, { group: 1, session_case: 0 } ] }
                    application_server: { server_name: "sip:as.ims.example", default_handling: continue }
        """.write(to: profiles, atomically: true, encoding: .utf8)
        let token = "ims-token"
        let configured = try await TernBinaryTests.startTern(node: "ims", """
        ims:
          server_uri: "sip:scscf.ims.example"
          profiles_file: "\(profiles.path)"
        sip_i:
          enabled: true
        management:
          token: \(token)
        """)
        defer { configured.removeDirectory() }
        let tern = configured.process, port = configured.sipPort
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        #expect(tern.output.contains("ims: subscriber profiles loaded"))
        let api = ManagementClient(port: try await tern.managementPort(), token: token)
        let alice = try UDPPhone(user: "alice"), bob = try UDPPhone(user: "bob"), carol = try UDPPhone(user: "carol")

        var sequence = 0
        func register(_ phone: UDPPhone, as user: String) throws -> String {
            sequence += 1
            phone.send(["REGISTER sip:ims.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bK-ims\(sequence);rport",
                        "Max-Forwards: 70", "From: <sip:\(user)@ims.example>;tag=r\(sequence)", "To: <sip:\(user)@ims.example>",
                        "Call-ID: ims-reg-\(sequence)", "CSeq: 1 REGISTER", "Contact: \(phone.contact)", "Expires: 600", "Content-Length: 0", "", ""]
                .joined(separator: "\r\n"), toPort: port)
            return try phone.finalResponse(callID: "ims-reg-\(sequence)")
        }

        let ok = try register(alice, as: "alice")
        #expect(ok.hasPrefix("SIP/2.0 200"))
        #expect(UDPPhone.values("P-Associated-URI", in: ok) == ["<sip:alice@ims.example>, <tel:+4930123>"])
        #expect(UDPPhone.values("Service-Route", in: ok) == ["<sip:orig@scscf.ims.example;lr>"])
        #expect(try register(alice, as: "alice.old").hasPrefix("SIP/2.0 403 Public Identity Barred"))
        #expect(try register(bob, as: "bob").hasPrefix("SIP/2.0 403 Unknown Public Identity"))

        // A MESSAGE to alice's tel identity reaches her phone, saying which identity was called.
        carol.send(["MESSAGE tel:+4930123 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(carol.port);branch=z9hG4bK-imsmsg;rport", "Max-Forwards: 70",
                    "From: <sip:carol@elsewhere.example>;tag=c1", "To: <tel:+4930123>", "Call-ID: ims-msg", "CSeq: 1 MESSAGE",
                    "Content-Type: text/plain", "Content-Length: 2", "", "hi"].joined(separator: "\r\n"), toPort: port)
        let message = try alice.request("MESSAGE")
        #expect(UDPPhone.values("P-Called-Party-ID", in: message) == ["<tel:+4930123>"])
        alice.answer(message, status: 200, reason: "OK")
        #expect(try carol.finalResponse(callID: "ims-msg").hasPrefix("SIP/2.0 200"))

        // Profiles through the management API.
        let fetched = try await api.call("ims.profile.get", ["identity": "tel:+4930123"])
        #expect(fetched.result["private_id"] as? String == "alice@ims.example")
        let ifc = ((fetched.result["service_profiles"] as? [[String: Any]])?.first?["ifc"] as? [[String: Any]])?.first
        #expect((ifc?["application_server"] as? [String: Any])?["server_name"] as? String == "sip:as.ims.example")
        let bobProfile: [String: Any] = ["private_id": "bob@ims.example",
                                         "service_profiles": [["public_identities": [["uri": "sip:bob@ims.example"]]]]]
        #expect(try await api.call("ims.profile.put", ["profile": bobProfile], token: "wrong").status == 401)
        #expect(try await api.call("ims.profile.put", ["profile": bobProfile]).result["private_id"] as? String == "bob@ims.example")
        #expect(try register(bob, as: "bob").hasPrefix("SIP/2.0 200"))
        #expect(try await api.call("ims.profile.put", ["profile": ["private_id": "x", "service_profiles": []]]).errorCode == -32602)
        #expect(try await api.call("ims.profile.delete", ["private_id": "bob@ims.example"]).result["deleted"] as? Bool == true)
        #expect(try register(bob, as: "bob").hasPrefix("SIP/2.0 403 Unknown Public Identity"))
        // ISUP fields through the API.
        let decoded = try await api.call("sipi.decode", ["hex": "0c 02 00 02 83 9f"])
        #expect(decoded.result["cause"] as? String == "31" && decoded.result["sip_status"] as? String == "480")
        #expect(try await api.call("sipi.decode", ["hex": "zz"]).errorCode == -32602)
        // Kamailio's known answer: vector (a) with sipt_destination("4930123456", 31, 4) and
        // sipt_set_calling("4930999", 4, 1, 3) is vector (e), byte for byte.
        let rewritten = try await api.call("sipi.rewrite", [
            "hex": "01 10 48 00 0a 03 02 0a 08 83 10 29 99 24 00 80 0f 0a 08 03 13 94 03 42 30 93 20 f2 15 36 19 08 00 00 15 ff ff ff ff ff ff ff ff ff ff 1d 45 38 cb 20 00",
            "destination": ["number": "4930123456", "hops": 31, "nature": 4],
            "calling": ["number": "4930999", "nature": 4, "presentation": 1, "screening": 3],
        ])
        #expect(rewritten.result["hex"] as? String
                == "011048000a03020a08841094032143650f0a06841794039909f215361908000015ffffffffffffffffffff1d4538cb203d011f00")
        #expect(try await api.call("sipi.rewrite", ["hex": "0c 02 00 02 83 9f", "calling": ["number": "1"]]).errorCode == -32602,
                "a REL has no calling number to set")
        // The network de-registers alice.
        #expect(try await api.call("ims.deregister", ["identity": "tel:+4930123"]).result["bindings_removed"] as? Int == 1)
        let lookup = try await api.call("location.lookup", ["aor": "sip:alice@ims.example"])
        #expect((lookup.result["bindings"] as? [Any])?.isEmpty == true)
        #expect(try await api.call("ims.deregister", ["identity": "sip:nobody@ims.example"]).errorCode == -32004)
    }

    @Test(.enabled(if: TernBinaryTests.mongoEnabled, "needs TERN_TEST_MONGODB_URI (make test starts the server)"))
    func profilesFromMongoDBAndEditsWrittenBack() async throws {
        let scratch = try TernBinaryTests.ScratchDatabase(prefix: "ims")
        let database = scratch.database
        defer { Task { await scratch.drop() } }
        let alice = #"{"private_id":"alice@ims.example","service_profiles":[{"public_identities":[{"uri":"sip:alice@ims.example"},{"uri":"tel:+4930123"}]}]}"#
        try await database.perform { session in
            try session.insert("subscribers", ["private_id": .string("alice@ims.example"), "profile": .string(alice)])
        }
        let configured = try await TernBinaryTests.startTern(node: "ims-mongo", storage: "  location: memory\n" + scratch.storageLines, """
        ims:
          profiles_collection: subscribers
        management:
          token: t
        """)
        defer { configured.removeDirectory() }
        let tern = configured.process, port = configured.sipPort
        defer { kill(tern.process.processIdentifier, SIGKILL) }
        let api = ManagementClient(port: try await tern.managementPort(), token: "t")
        let phone = try UDPPhone(user: "alice")
        phone.send(["REGISTER sip:ims.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:\(phone.port);branch=z9hG4bK-imsmongo;rport",
                    "Max-Forwards: 70", "From: <sip:alice@ims.example>;tag=m1", "To: <sip:alice@ims.example>", "Call-ID: ims-mongo",
                    "CSeq: 1 REGISTER", "Contact: \(phone.contact)", "Expires: 600", "Content-Length: 0", "", ""].joined(separator: "\r\n"),
                   toPort: port)
        let ok = try phone.finalResponse(callID: "ims-mongo")
        #expect(UDPPhone.values("P-Associated-URI", in: ok) == ["<sip:alice@ims.example>, <tel:+4930123>"], "the profile came from MongoDB")
        let bob: [String: Any] = ["private_id": "bob@ims.example", "service_profiles": [["public_identities": [["uri": "sip:bob@ims.example"]]]]]
        #expect(try await api.call("ims.profile.put", ["profile": bob]).result["private_id"] as? String == "bob@ims.example")
        var stored = try await database.perform { try $0.find("subscribers", filter: ["private_id": .string("bob@ims.example")]) }
        #expect(stored.first?["profile"]?.string?.contains("sip:bob@ims.example") == true, "the edit is in the collection")
        #expect(try await api.call("ims.profile.delete", ["private_id": "alice@ims.example"]).result["deleted"] as? Bool == true)
        stored = try await database.perform { try $0.find("subscribers", filter: ["private_id": .string("alice@ims.example")]) }
        #expect(stored.isEmpty)
    }

    @Test func exampleProfilesAreValid() throws {
        let path = TernBinaryTests.packageRoot.appendingPathComponent("ims-profiles.example.yaml").path
        let subscriptions = try IMSProfileLoader.load(file: path)
        #expect(subscriptions.count == 2 && subscriptions[0].serviceProfiles[0].filterCriteria.count == 2)
    }

    static let errors: [(String, String)] = [
        ("ims:\n  server_uri: \"not a uri\"\n", "ims.server_uri (line 2): not a uri: not a SIP URI"),
        ("ims:\n  profiles_collection: subscribers\n", "ims.profiles_collection: needs storage.mongodb.uri"),
        ("ims:\n  colour: red\n", "ims.colour (line 2): unknown key"),
        ("sip_i:\n  initial_hops: 40\n", "sip_i.initial_hops (line 2): 40 is out of range 1...31"),
        ("ims:\n  breakout: \"tel:+49\"\n", "ims.breakout (line 2): tel:+49: not a SIP URI"),
    ]

    @Test(arguments: errors)
    func badIMSConfigurationNamesTheKey(_ yaml: String, _ message: String) {
        do {
            _ = try TernConfiguration(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect("\(error)" == message)
        }
    }
}
