import CoreProxy
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Simulated phones registering over real sockets (RFC 3261 §10, RFC 5626, RFC 5627, RFC 3327).
@Suite(.timeLimit(.minutes(1)))
struct RegistrarEndToEndTests {
    /// A phone: one socket, one Call-ID, a CSeq that counts up.
    final class Phone: @unchecked Sendable {
        let client: TestSIPClient
        let user: String
        let callID = SIPIdentifiers.callID()
        var cseq = 0
        let transport: SIPTransportProtocol

        init(_ client: TestSIPClient, user: String = "alice") {
            self.client = client
            self.user = user
            self.transport = client.transport
        }

        var localPort: Int { client.channel.localAddress?.port ?? 0 }

        /// Sends a REGISTER and returns the final response.
        func register(contact: String? = nil, expires: Int? = nil, headers: [String] = [], callID: String? = nil,
                      cseq explicit: Int? = nil, honestVia: Bool = false) async throws -> SIPMessage {
            cseq += 1
            var extra = headers
            if let contact { extra.append("Contact: \(contact)") }
            if let expires { extra.append("Expires: \(expires)") }
            let text = sipRequest("REGISTER", uri: "sip:tern.test", transport: transport.viaToken,
                                  callID: callID ?? self.callID, cseq: explicit ?? cseq, extraHeaders: extra)
                .replacingOccurrences(of: "To: <sip:bob@tern.test>", with: "To: <sip:\(user)@tern.test>")
                .replacingOccurrences(of: "From: <sip:alice@tern.test>", with: "From: <sip:\(user)@tern.test>")
                .replacingOccurrences(of: "client.test:5060", with: honestVia ? "127.0.0.1:\(localPort)" : "client.test:5060")
            try await client.send(text)
            // Only the answer to this REGISTER: under parallel load a stray datagram may reach a reused port.
            let sentCallID = callID ?? self.callID
            let sentCSeq = explicit ?? cseq
            while true {
                let message = try await client.receive()
                if message.statusCode != nil, message.callID == sentCallID, (try? message.cseq())??.sequence == UInt32(sentCSeq) {
                    return message
                }
            }
        }

        /// This phone's contact; `uriParameters` go inside the brackets, `parameters` after them.
        func contact(uriParameters: String = "", _ parameters: String = "") -> String {
            "<sip:\(user)@127.0.0.1:\(localPort)\(uriParameters)>\(parameters)"
        }
    }

    static func contacts(_ response: SIPMessage) throws -> [SIPAddress] {
        guard case .addresses(let list) = try response.contacts() else { return [] }
        return list
    }

    @Test func registerRefreshAndUnregister() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let first = try await phone.register(contact: phone.contact(), expires: 120)
            #expect(first.statusCode == 200)
            let listed = try Self.contacts(first)
            #expect(listed.count == 1)
            #expect((115...120).contains(Int(listed.first?.expires ?? 0)))
            #expect(first.contains(.date))
            #expect(try first.to()?.tag != nil)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").count == 1)

            let refresh = try await phone.register(contact: phone.contact(), expires: 300)
            #expect(refresh.statusCode == 200)
            #expect(try Self.contacts(refresh).count == 1)
            #expect((295...300).contains(Int(try Self.contacts(refresh).first?.expires ?? 0)))

            // A REGISTER without Contact asks for the current bindings.
            let query = try await phone.register()
            #expect(try Self.contacts(query).count == 1)

            let gone = try await phone.register(contact: phone.contact(";expires=0"))
            #expect(gone.statusCode == 200)
            #expect(try Self.contacts(gone).isEmpty)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").isEmpty)
            await phone.client.close()
        }
    }

    @Test func expiryRulesGive423AndClampToMaximum() async throws {
        try await withTestServer(registrar: Registrar.Configuration(minExpires: 60, maxExpires: 600)) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let brief = try await phone.register(contact: phone.contact(), expires: 10)
            #expect(brief.statusCode == 423)
            #expect(brief.firstValue(.minExpires) == "60")
            let long = try await phone.register(contact: phone.contact(), expires: 100_000)
            #expect(long.statusCode == 200)
            #expect((595...600).contains(Int(try Self.contacts(long).first?.expires ?? 0)))
            await phone.client.close()
        }
    }

    @Test func wildcardRemovesEveryBinding() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            _ = try await phone.register(contact: phone.contact(), expires: 120)
            _ = try await phone.register(contact: "<sip:alice@192.0.2.7:5060>", expires: 120)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").count == 2)
            let refused = try await phone.register(contact: "*", expires: 30)
            #expect(refused.statusCode == 400)
            let cleared = try await phone.register(contact: "*", expires: 0)
            #expect(cleared.statusCode == 200)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").isEmpty)
            await phone.client.close()
        }
    }

    /// With stateless replies (the default, and Kamailio's way), an answered REGISTER keeps no
    /// transaction: its retransmission reaches the registrar again and gets a 200 OK with the
    /// binding unchanged and the same To tag (RFC 3261 §8.2.7), while a new request with the same
    /// CSeq is still out of order (RFC 3261 §10.3 step 7).
    @Test func statelessRepliesAnswerRetransmissionsAnewAndKeepNoTransaction() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let register = sipRequest("REGISTER", callID: phone.callID, cseq: 10, extraHeaders: ["Contact: \(phone.contact())", "Expires: 120"])
                .replacingOccurrences(of: "To: <sip:bob@tern.test>", with: "To: <sip:alice@tern.test>")
            try await phone.client.send(register)
            let first = try await phone.client.receive()
            #expect(first.statusCode == 200)
            #expect(server.server.transactionLayer.serverTransactionCount == 0)
            try await phone.client.send(register)
            let again = try await phone.client.receive()
            #expect(again.statusCode == 200)
            #expect(try again.to()?.tag != nil && (try again.to()?.tag) == (try first.to()?.tag))
            #expect(try Self.contacts(again).count == 1)
            let bindings = server.server.location.bindings(for: "sip:alice@tern.test")
            #expect(bindings.count == 1 && bindings.first?.cseq == 10)
            #expect(try await phone.register(contact: phone.contact(), expires: 300, cseq: 10).statusCode == 400)
            #expect((115...120).contains(server.server.location.bindings(for: "sip:alice@tern.test").first?
                .remainingSeconds(at: server.server.location.clock.nowMilliseconds()) ?? 0))
            #expect(try await phone.register(contact: phone.contact(), expires: 300, cseq: 11).statusCode == 200)
            await phone.client.close()
        }
    }

    /// With `stateless: false`, a REGISTER's transaction answers its retransmissions for Timer J
    /// (32 s over UDP).
    @Test func answeredRegisterTransactionsStayForTimerJWhenStateful() async throws {
        var registrar = Registrar.Configuration()
        registrar.statelessReplies = false
        try await withTestServer(registrar: registrar) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            #expect(try await phone.register(contact: phone.contact(), expires: 120).statusCode == 200)
            #expect(server.server.transactionLayer.serverTransactionCount == 1)
            await phone.client.close()
        }
    }

    @Test func cseqOrderingPerCallID() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            #expect(try await phone.register(contact: phone.contact(), expires: 120, cseq: 10).statusCode == 200)
            // Same Call-ID, CSeq not higher: refused, nothing changes (RFC 3261 §10.3 step 7).
            #expect(try await phone.register(contact: phone.contact(), expires: 300, cseq: 10).statusCode == 400)
            #expect((115...120).contains(server.server.location.bindings(for: "sip:alice@tern.test").first?
                .remainingSeconds(at: server.server.location.clock.nowMilliseconds()) ?? 0))
            // Another Call-ID (the phone rebooted) replaces it whatever its CSeq.
            #expect(try await phone.register(contact: phone.contact(), expires: 300, callID: "rebooted", cseq: 1).statusCode == 200)
            let bindings = server.server.location.bindings(for: "sip:alice@tern.test")
            #expect(bindings.count == 1)
            #expect(bindings.first?.callID == "rebooted")
            await phone.client.close()
        }
    }

    @Test func sameInstanceKeepsOneBinding() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let instance = ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""
            _ = try await phone.register(contact: "<sip:alice@192.0.2.1:5060>" + instance, expires: 120)
            // The device moved to another address: same instance, new contact URI, new Call-ID.
            let moved = try await phone.register(contact: "<sip:alice@192.0.2.99:5070>" + instance, expires: 120,
                                                 callID: "after-move")
            #expect(moved.statusCode == 200)
            let bindings = server.server.location.bindings(for: "sip:alice@tern.test")
            #expect(bindings.count == 1)
            #expect(bindings.first?.contact.host == "192.0.2.99")
            #expect(try Self.contacts(moved).count == 1)
            await phone.client.close()
        }
    }

    @Test func outboundFlowsAndGRUU() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp)))
            let instance = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
            let response = try await phone.register(
                contact: "<sip:alice@127.0.0.1;transport=tcp>;+sip.instance=\"<\(instance)>\";reg-id=1",
                expires: 600, headers: ["Supported: outbound, gruu, path", "Path: <sip:edge.tern.test;lr;ob>"])
            #expect(response.statusCode == 200)
            #expect(response.require == ["outbound"])
            #expect(response.values(.path) == ["<sip:edge.tern.test;lr;ob>"])
            let contact = try #require(try Self.contacts(response).first)
            #expect(contact.publicGRUU == "sip:alice@tern.test;gr=\(instance)")
            let temporary = try #require(contact.temporaryGRUU)
            #expect(temporary.hasPrefix("sip:tgruu.") && temporary.hasSuffix("@tern.test;gr"))
            let binding = try #require(server.server.location.bindings(for: "sip:alice@tern.test").first)
            #expect(binding.regID == 1)
            #expect(binding.path == ["<sip:edge.tern.test;lr;ob>"])
            guard case .connection = binding.flow else {
                Issue.record("an outbound binding remembers its connection")
                return
            }
            // The same instance with a second reg-id is a second flow of the same device.
            let second = try await phone.register(
                contact: "<sip:alice@127.0.0.1;transport=tcp>;+sip.instance=\"<\(instance)>\";reg-id=2",
                expires: 600, headers: ["Supported: outbound, gruu"])
            #expect(try Self.contacts(second).count == 2)
            await phone.client.close()
        }
    }

    /// RFC 3327 §5.3 with Kamailio's path modes: strict refuses Path without `Supported: path`,
    /// off stores it without echoing it.
    @Test(arguments: [Registrar.Configuration.PathMode.strict, .off])
    func pathWithoutSupportFollowsThePathMode(_ mode: Registrar.Configuration.PathMode) async throws {
        var configuration = Registrar.Configuration()
        configuration.pathMode = mode
        try await withTestServer(registrar: configuration) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let bare = try await phone.register(contact: "<sip:alice@192.0.2.1>", expires: 120, headers: ["Path: <sip:edge.tern.test;lr>"])
            let supported = try await phone.register(contact: "<sip:alice@192.0.2.1>", expires: 120,
                                                     headers: ["Path: <sip:edge.tern.test;lr>", "Supported: path"])
            switch mode {
            case .strict:
                #expect(bare.statusCode == 420 && bare.values(.unsupported) == ["path"])
                #expect(supported.statusCode == 200 && supported.values(.path) == ["<sip:edge.tern.test;lr>"])
            default:
                #expect(bare.statusCode == 200 && !bare.contains(.path))
                #expect(supported.statusCode == 200 && !supported.contains(.path), "off never echoes")
                #expect(server.server.location.bindings(for: "sip:alice@tern.test").first?.path == ["<sip:edge.tern.test;lr>"])
            }
            await phone.client.close()
        }
    }

    @Test func singleContactPerAOR() async throws {
        try await withTestServer(registrar: Registrar.Configuration(singleContactPerAOR: true)) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            _ = try await phone.register(contact: "<sip:alice@192.0.2.1>", expires: 120)
            let newest = try await phone.register(contact: "<sip:alice@192.0.2.2>", expires: 120)
            #expect(try Self.contacts(newest).map(\.uri.host) == ["192.0.2.2"])
            await phone.client.close()
        }
    }

    @Test func natIsDetectedFromTheSource() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            _ = try await phone.register(contact: "<sip:alice@10.0.0.5:5060>", expires: 120, honestVia: true)
            let binding = try #require(server.server.location.bindings(for: "sip:alice@tern.test").first)
            #expect(binding.isBehindNAT)
            #expect(binding.source?.port == phone.localPort)
            #expect(binding.contact.host == "10.0.0.5", "the device's own view is kept")
            _ = try await phone.register(contact: "<sip:alice@10.0.0.5:5060>;expires=0", honestVia: true)
            _ = try await phone.register(contact: phone.contact(), expires: 120, honestVia: true)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").first?.isBehindNAT == false)
            await phone.client.close()
        }
    }

    @Test func closedConnectionRemovesItsBinding() async throws {
        try await withTestServer { server in
            let phone = Phone(try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp)))
            _ = try await phone.register(contact: phone.contact(uriParameters: ";transport=tcp"), expires: 600)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").count == 1)
            await phone.client.close()
            let deadline = ContinuousClock.now + .seconds(5)
            while !server.server.location.bindings(for: "sip:alice@tern.test").isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").isEmpty)
        }
    }

    final class EventRecorder: LocationObserver {
        let events = NIOLockedValueBox<[BindingEvent.Kind]>([])
        func locationChanged(_ event: BindingEvent) { events.withLockedValue { $0.append(event.kind) } }
    }

    @Test func expiryRemovesOnTimeAndEveryChangeIsAnEvent() async throws {
        let recorder = EventRecorder()
        try await withTestServer(registrar: Registrar.Configuration(minExpires: 1),
                                 configure: { $0.location.addObserver(recorder) }) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            _ = try await phone.register(contact: phone.contact(), expires: 60)
            _ = try await phone.register(contact: "<sip:alice@192.0.2.50>", expires: 60)
            _ = try await phone.register(contact: "<sip:alice@192.0.2.50>;expires=0")
            // Shortened last, so that a slow machine cannot see it lapse before the other changes.
            _ = try await phone.register(contact: phone.contact(), expires: 1)
            let deadline = ContinuousClock.now + .seconds(5)
            while !server.server.location.bindings(for: "sip:alice@tern.test").isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            // Swept by the periodic expiry within about a second of lapsing.
            while recorder.events.withLockedValue({ !$0.contains(.expired) }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(recorder.events.withLockedValue { $0 } == [.added, .added, .removed, .refreshed, .expired])
            await phone.client.close()
        }
    }

    @Test func domainsNotServedAreRefused() async throws {
        try await withTestServer(registrar: Registrar.Configuration(domains: ["example.org"])) { server in
            let phone = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            let response = try await phone.register(contact: phone.contact(), expires: 60)
            #expect(response.statusCode == 403)
            await phone.client.close()
        }
    }

    @Test func restartKeepsBindings() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("tern.sqlite").path
        var logger = Logger(label: "tern.test")
        logger.logLevel = .warning
        let group = MultiThreadedEventLoopGroup.singleton

        let firstStore = try await SQLiteBindingStore.open(path: path, logger: logger, group: group)
        let stillOpen = try await withTestServer(bindingStore: firstStore) { server in
            let udp = Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            _ = try await udp.register(contact: udp.contact(";+sip.instance=\"<urn:uuid:1>\""), expires: 600)
            let tcp = Phone(try await TestSIPClient.connect(.tcp, host: "127.0.0.1", port: server.port(.tcp)), user: "bob")
            _ = try await tcp.register(contact: tcp.contact(uriParameters: ";transport=tcp"), expires: 600)
            _ = try await udp.register(contact: "<sip:alice@192.0.2.9>", expires: 600)
            _ = try await udp.register(contact: "<sip:alice@192.0.2.9>;expires=0")
            await udp.client.close()
            // The TCP phone stays connected: the server's own shutdown closes it, which is no dead flow.
            return tcp.client
        }
        await stillOpen.close()
        let secondStore = try await SQLiteBindingStore.open(path: path, logger: logger, group: group)
        try await withTestServer(bindingStore: secondStore) { server in
            let alice = server.server.location.bindings(for: "sip:alice@tern.test")
            #expect(alice.count == 1)
            #expect(alice.first?.instanceID == "urn:uuid:1")
            // The expiry it had, not one reset by the restart: the whole suite in parallel on two
            // cores has taken 12 s between the REGISTER and this line.
            #expect((540...600).contains(alice.first?.remainingSeconds(at: server.server.location.clock.nowMilliseconds()) ?? 0))
            guard case .datagram = alice.first?.flow else {
                Issue.record("a UDP binding keeps its flow across a restart")
                return
            }
            #expect(server.server.location.bindings(for: "sip:bob@tern.test").count == 1,
                    "a TCP binding survives the restart even though its connection did not")
        }
    }
}
