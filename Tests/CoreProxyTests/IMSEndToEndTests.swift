import CoreProxy
import IMS
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Tern as an S-CSCF-like registrar and proxy over subscriber profiles (TS 24.229, RFC 3325,
/// RFC 3608, RFC 7315), over real sockets.
@Suite(.timeLimit(.minutes(1)))
struct IMSEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent

    static func uri(_ text: String) -> SIPURI { (try? SIPURI(parsing: text)) ?? SIPURI(scheme: .sip, host: "invalid") }

    static let alice = IMSSubscription(privateID: "alice@ims.example", serviceProfiles: [
        IMSServiceProfile(publicIdentities: [
            IMSPublicIdentity(uri: uri("sip:alice@ims.example"), isDefault: true),
            IMSPublicIdentity(uri: uri("tel:+4930123")),
            IMSPublicIdentity(uri: uri("sip:alice-barred@ims.example"), barred: true),
        ]),
    ])
    static let bob = IMSSubscription(privateID: "bob@ims.example", serviceProfiles: [
        IMSServiceProfile(publicIdentities: [IMSPublicIdentity(uri: uri("sip:bob@ims.example"))]),
    ])

    final class CallLog: CallObserver, @unchecked Sendable {
        let events = NIOLockedValueBox<[CallEvent]>([])
        func callEvent(_ event: CallEvent) { events.withLockedValue { $0.append(event) } }
    }

    static func withIMS<T: Sendable>(visited: Set<String>? = nil,
                                     _ body: @Sendable (RunningServer, CallLog) async throws -> T) async throws -> T {
        try await withIMS(visited: visited) { server, log, _ in try await body(server, log) }
    }

    static func withIMS<T: Sendable>(visited: Set<String>? = nil, breakout: SIPURI? = nil,
                                     configure: @Sendable @escaping (SIPServer, IMSPolicy) -> Void = { _, _ in },
                                     _ body: @Sendable (RunningServer, CallLog, IMSProfiles) async throws -> T) async throws -> T {
        let log = CallLog()
        let profiles = IMSProfiles([alice, bob])
        let controlBox = NIOLockedValueBox<IMSServiceControl?>(nil)
        return try await withTestServer(configure: { server in
            let policy = IMSPolicy(configuration: .init(serverURI: uri("sip:scscf.ims.test"), visitedNetworks: visited,
                                                        trustedNetworks: [IPNetwork("127.0.0.2/32")].compactMap { $0 }, ioi: "ims.test",
                                                        breakout: breakout),
                                   profiles: profiles, location: server.location)
            server.identity.addAlias("scscf.ims.test")
            configure(server, policy)
            let control = IMSServiceControl(profiles: profiles, policy: policy, location: server.location, proxy: server.proxy,
                                            identity: server.identity, loops: MultiThreadedEventLoopGroup.singleton,
                                            logger: PushEndToEndTests.logger)
            policy.setServiceControl(control)
            server.proxy.setApplicationServerRouting(control)
            server.setRegistrationPolicy(policy)
            server.proxy.addTrustPolicy(policy)
            server.proxy.addCallObserver(log)
            let reg = RegEventService(configuration: .init(), profiles: policy.profiles, location: server.location, proxy: server.proxy,
                                      identity: server.identity, logger: PushEndToEndTests.logger)
            server.location.addObserver(reg)
            server.pipeline.register(reg)
            control.setRegEvents(reg)
            controlBox.withLockedValue { $0 = control }
        }) { server in
            lastControl.withLockedValue { $0[server.port(.udp)] = controlBox.withLockedValue { $0 } }
            return try await body(server, log, profiles)
        }
    }

    /// A peer inside the trust domain (a P-CSCF, an application server, a registrar): it sends
    /// from 127.0.0.2, which `withIMS` trusts.
    static func trustedPeer(_ server: RunningServer, user: String) async throws -> Agent {
        Agent(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp), localHost: "127.0.0.2"), user: user)
    }

    /// The service control of the server listening on a UDP port (tests that call it directly).
    static let lastControl = NIOLockedValueBox<[Int: IMSServiceControl]>([:])

    /// alice's profile with one initial filter criterion toward `server`.
    static func alice(with criterion: InitialFilterCriteria) -> IMSSubscription {
        var subscription = alice
        let profile = subscription.serviceProfiles[0]
        subscription.serviceProfiles[0] = IMSServiceProfile(publicIdentities: profile.publicIdentities, filterCriteria: [criterion])
        return subscription
    }

    @Test func registrationsAreReportedToApplicationServersByThirdPartyRegister() async throws {
        try await Self.withIMS { server, _, profiles in
            let application = try await Self.trustedPeer(server, user: "as")
            profiles.put(Self.alice(with: InitialFilterCriteria(
                priority: 1,
                trigger: .init(conjunctive: true, triggers: [.init(.method("REGISTER")), .init(group: 1, .registrationType([0, 1, 2]))]),
                applicationServer: .init(serverName: Self.uri("sip:127.0.0.2:\(application.port)"), defaultHandling: .terminate,
                                         includeRegisterRequest: true))))
            // alice's REGISTER comes through a P-CSCF inside the trust domain.
            let phone = try await Self.trustedPeer(server, user: "alice")
            #expect(try await Self.register(phone, headers: ["P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=262011",
                                                             "P-Visited-Network-ID: \"Visited Network Number 1\"",
                                                             "P-Charging-Vector: icid-value=pcscf-icid-1"]).statusCode == 200)
            var third = try await application.next(.register)
            #expect(third.requestURIString == "sip:127.0.0.2:\(application.port)")
            #expect(third.firstValue(.to) == "<sip:alice@ims.example>" && third.firstValue(.from)?.hasPrefix("<sip:scscf.ims.test>;tag=") == true)
            #expect(third.firstValue(.expires) == "600" && third.firstValue(.contentType) == "message/sip")
            #expect(String(buffer: third.body).hasPrefix("REGISTER sip:ims.example SIP/2.0"), "the original REGISTER inside")
            #expect(third.firstValue(.pAccessNetworkInfo)?.hasPrefix("3GPP-E-UTRAN-FDD") == true, "I10")
            #expect(third.firstValue(.pVisitedNetworkID) == "\"Visited Network Number 1\"", "I11")
            #expect(third.firstValue(.pChargingVector) == "icid-value=pcscf-icid-1", "I9: the icid is kept")
            try await application.answer(third, 200)
            // A device registering straight from outside the trust domain is not believed about its network.
            let outsider = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(outsider, headers: ["P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=999",
                                                                "P-Charging-Vector: icid-value=forged"]).statusCode == 200)
            third = try await application.next(.register)
            #expect(!third.contains(.pAccessNetworkInfo))
            #expect(third.firstValue(.pChargingVector)?.contains("icid-generated-at=scscf.ims.test") == true)
            try await application.answer(third, 200)
            #expect(try await Self.register(outsider, expires: 0).statusCode == 200)
            third = try await application.next(.register)
            try await application.answer(third, 200)
            #expect(try await Self.register(phone, expires: 0).statusCode == 200)
            third = try await application.next(.register)
            #expect(third.firstValue(.expires) == "0", "de-registration reported")
            try await application.answer(third, 200)
            // The server refuses, and its DefaultHandling is SESSION_TERMINATED: the network de-registers alice.
            #expect(try await Self.register(phone).statusCode == 200)
            third = try await application.next(.register)
            try await application.answer(third, 500)
            try await RoutingEndToEndTests.until { server.server.location.bindings(for: "sip:alice@ims.example").isEmpty }
        }
    }

    @Test func anInitialRequestVisitsTheApplicationServerAndComesBack() async throws {
        try await Self.withIMS { server, _, profiles in
            let application = try await Self.trustedPeer(server, user: "as")
            profiles.put(Self.alice(with: InitialFilterCriteria(
                priority: 1,
                trigger: .init(conjunctive: true, triggers: [.init(.method("MESSAGE")), .init(group: 1, .sessionCase(.originating))]),
                applicationServer: .init(serverName: Self.uri("sip:127.0.0.2:\(application.port)")))))
            let alicePhone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(alicePhone).statusCode == 200)
            let bobPhone = try await Agent.connect(server, user: "bob")
            #expect(try await Self.register(bobPhone).statusCode == 200)
            try await Self.message(alicePhone, to: "sip:bob@ims.example", callID: "isc-1")
            let atServer = try await application.next(.message)
            #expect(atServer.firstValue(.pServedUser) == "<sip:alice@ims.example>;sescase=orig;regstate=reg")
            let routes = atServer.values(.route)
            #expect(routes.first == "<sip:127.0.0.2:\(application.port);lr>")
            #expect(routes.last?.contains("sip:odi-") == true && routes.last?.contains("@127.0.0.1:\(server.port(.udp))") == true)
            // The server proxies it back along the remaining Route (its own entry gone, its Via on top).
            var onward = atServer
            onward.removeFirstValue(.route)
            onward.prependHeader(.via, "SIP/2.0/UDP 127.0.0.2:\(application.port);branch=\(SIPIdentifiers.branch());rport")
            try await application.client.send(onward.serializedString)
            let delivered = try await bobPhone.next(.message)
            #expect(!delivered.contains(.route) && delivered.values(.pAssertedIdentity) == ["<sip:alice@ims.example>"])
            try await bobPhone.answer(delivered, 200)
            // The 200 comes back through the server, which passes it on.
            var answer = try await application.nextResponse()
            answer.removeFirstValue(.via)
            try await application.client.send(answer.serializedString)
            #expect(try await alicePhone.response(callID: "isc-1").statusCode == 200)
            // bob's own requests match no criterion of his: straight through.
            try await Self.message(bobPhone, from: "sip:bob@ims.example", to: "sip:alice@ims.example", callID: "isc-2")
            let direct = try await alicePhone.next(.message)
            try await alicePhone.answer(direct, 200)
            #expect(try await bobPhone.response(callID: "isc-2").statusCode == 200)
        }
    }

    /// I1 with I6: a P-CSCF (inside the trust domain) relays the UE's REGISTER adding its Path; the
    /// 200 OK echoes it, requests for the user leave through it, and the P-CSCF may watch `reg`.
    @Test func aPCSCFPathIsEchoedAndLeadsTheWayToTheDevice() async throws {
        try await Self.withIMS { server, _ in
            let pcscf = try await Self.trustedPeer(server, user: "pcscf")
            let path = "<sip:term@127.0.0.2:\(pcscf.port);lr>"
            let lines = ["REGISTER sip:ims.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.2:\(pcscf.port);branch=\(SIPIdentifiers.branch());rport",
                         "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK-ue1;received=192.0.2.10;rport=40000",
                         "Max-Forwards: 69", "From: <sip:alice@ims.example>;tag=ue1", "To: <sip:alice@ims.example>",
                         "Call-ID: pcscf-reg-1", "CSeq: 1 REGISTER", "Contact: <sip:alice@10.1.1.1:5060>", "Expires: 600",
                         "Path: \(path)", "Supported: path", "Require: path", "P-Visited-Network-ID: \"Visited Network Number 1\""]
            try await pcscf.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
            let ok = try await pcscf.response(callID: "pcscf-reg-1")
            #expect(ok.statusCode == 200)
            #expect(ok.values(.path) == [path], "RFC 3327 §5.3: echoed to a UA that supports path")
            #expect(ok.firstValue(.serviceRoute) == "<sip:orig@scscf.ims.test;lr>")
            // A MESSAGE for alice leaves toward her contact through the P-CSCF.
            let bob = try await Agent.connect(server, user: "bob")
            try await Self.message(bob, from: "sip:bob@ims.example", to: "sip:alice@ims.example", callID: "pcscf-msg-1")
            let atPCSCF = try await pcscf.next(.message)
            #expect(atPCSCF.requestURIString == "sip:alice@10.1.1.1:5060" && atPCSCF.values(.route) == [path])
            try await pcscf.answer(atPCSCF, 200)
            #expect(try await bob.response(callID: "pcscf-msg-1").statusCode == 200)
            // The P-CSCF on the stored Path may subscribe to alice's registration state (TS 24.229 5.2.3).
            let subscribed = try await Self.subscribeReg(pcscf, to: "alice", from: "sip:pcscf@127.0.0.2", callID: "pcscf-reg-sub")
            #expect(subscribed.statusCode == 200)
            let notify = try await pcscf.next(.notify)
            try await pcscf.answer(notify, 200)
            #expect(String(buffer: notify.body).contains("<uri>sip:alice@10.1.1.1:5060</uri>"))
        }
    }

    /// I2: the Service-Route the 200 OK gave is the way the UE's requests come back, and they are
    /// originating: the caller's originating criteria send them to its application server.
    @Test func requestsAlongTheServiceRouteAreOriginating() async throws {
        try await Self.withIMS { server, _, profiles in
            let application = try await Self.trustedPeer(server, user: "as")
            profiles.put(Self.alice(with: InitialFilterCriteria(
                priority: 1,
                trigger: .init(conjunctive: true, triggers: [.init(.method("MESSAGE")), .init(group: 1, .sessionCase(.originating))]),
                applicationServer: .init(serverName: Self.uri("sip:127.0.0.2:\(application.port)")))))
            let phone = try await Agent.connect(server, user: "alice")
            let ok = try await Self.register(phone)
            let serviceRoute = try #require(ok.firstValue(.serviceRoute))
            #expect(serviceRoute == "<sip:orig@scscf.ims.test;lr>")
            try await Self.message(phone, to: "sip:bob@ims.example", callID: "sr-1", headers: ["Route: " + serviceRoute])
            let atServer = try await application.next(.message)
            #expect(atServer.firstValue(.pServedUser) == "<sip:alice@ims.example>;sescase=orig;regstate=reg")
            #expect(!atServer.values(.route).contains(serviceRoute), "Tern took its own Service-Route off")
            try await application.answer(atServer, 200)
            #expect(try await phone.response(callID: "sr-1").statusCode == 200)
        }
    }

    /// A REGISTER for `user@ims.example` with extra header lines; returns the final response.
    static func register(_ agent: Agent, user: String? = nil, expires: Int = 600, headers: [String] = []) async throws -> SIPMessage {
        agent.cseq += 1
        let name = user ?? agent.user
        let lines = ["REGISTER sip:ims.example SIP/2.0", "Via: SIP/2.0/UDP \(agent.viaHost);branch=\(SIPIdentifiers.branch());rport",
                     "Max-Forwards: 70", "From: <sip:\(name)@ims.example>;tag=r\(agent.port)", "To: <sip:\(name)@ims.example>",
                     "Call-ID: ims-reg-\(agent.port)", "CSeq: \(agent.cseq) REGISTER", "Contact: <sip:\(agent.user)@\(agent.viaHost)>",
                     "Expires: \(expires)"] + headers
        try await agent.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
        return try await agent.nextResponse()
    }

    /// A MESSAGE from `sender` (as `from`) to `target` with extra header lines.
    static func message(_ sender: Agent, from: String = "sip:alice@ims.example", to target: String, callID: String,
                        headers: [String] = []) async throws {
        let lines = ["MESSAGE \(target) SIP/2.0", "Via: SIP/2.0/UDP \(sender.viaHost);branch=\(SIPIdentifiers.branch());rport",
                     "Max-Forwards: 70", "From: <\(from)>;tag=m\(sender.port)", "To: <\(target)>", "Call-ID: \(callID)",
                     "CSeq: 1 MESSAGE", "Content-Type: text/plain"] + headers
        try await sender.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 2\r\n\r\nhi")
    }

    @Test func registrationCoversTheImplicitSetAndSaysSo() async throws {
        try await Self.withIMS(visited: ["Visited Network Number 1"]) { server, _ in
            let phone = try await Agent.connect(server, user: "alice")
            let ok = try await Self.register(phone, headers: ["P-Visited-Network-ID: \"Visited Network Number 1\""])
            #expect(ok.statusCode == 200)
            #expect(ok.firstValue(.pAssociatedURI) == "<sip:alice@ims.example>, <tel:+4930123>", "default first, the barred one left out")
            #expect(ok.firstValue(.serviceRoute) == "<sip:orig@scscf.ims.test;lr>")
            let barred = try await Self.register(phone, user: "alice-barred")
            #expect(barred.statusCode == 403 && barred.reasonPhrase == "Public Identity Barred")
            let stranger = try await Agent.connect(server, user: "mallory")
            #expect(try await Self.register(stranger).statusCode == 403)
            let roaming = try await Self.register(phone, headers: ["P-Visited-Network-ID: \"Elsewhere\""])
            #expect(roaming.statusCode == 403 && roaming.reasonPhrase == "Visited Network Not Allowed")
        }
    }

    @Test func everyIdentityOfTheSetReachesTheDeviceWithTheCalledIdentity() async throws {
        try await Self.withIMS { server, _ in
            let phone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(phone).statusCode == 200)
            let caller = try await Agent.connect(server, user: "bob")
            for (index, target) in ["tel:+4930123", "sip:+49-30-123@ims.example;user=phone", "tel:123;phone-context=+4930"].enumerated() {
                try await Self.message(caller, from: "sip:bob@ims.example", to: target, callID: "set-\(index)")
                let delivered = try await phone.next(.message)
                #expect(delivered.firstValue(.pCalledPartyID) == "<\(target)>", "RFC 7315 §4.2: the identity that was called")
                try await phone.answer(delivered, 200)
                #expect(try await caller.response(callID: "set-\(index)").statusCode == 200)
            }
            // De-registration ends them all.
            #expect(try await Self.register(phone, expires: 0).statusCode == 200)
            try await Self.message(caller, from: "sip:bob@ims.example", to: "tel:+4930123", callID: "set-gone")
            #expect(try await caller.response(callID: "set-gone").statusCode == 404)
        }
    }

    /// A SUBSCRIBE to `user`'s registrations from `agent` (as `from`); returns the final response.
    static func subscribeReg(_ agent: Agent, to user: String, from: String, callID: String, expires: Int = 600,
                             toTag: String? = nil, cseq: Int = 1) async throws -> SIPMessage {
        let lines = ["SUBSCRIBE sip:\(user)@ims.example SIP/2.0", "Via: SIP/2.0/UDP \(agent.viaHost);branch=\(SIPIdentifiers.branch());rport",
                     "Max-Forwards: 70", "From: <\(from)>;tag=s\(agent.port)", "To: <sip:\(user)@ims.example>" + (toTag.map { ";tag=\($0)" } ?? ""),
                     "Call-ID: \(callID)", "CSeq: \(cseq) SUBSCRIBE", "Contact: <sip:\(agent.user)@\(agent.viaHost)>", "Event: reg",
                     "Accept: application/reginfo+xml", "Expires: \(expires)"]
        try await agent.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
        while true {
            let message = try await agent.client.receive()
            if message.isRequest {
                agent.parked.append(message)
                continue
            }
            if message.callID == callID, let code = message.statusCode, code >= 200 { return message }
        }
    }

    @Test func theRegEventPackageReportsFullThenPartialState() async throws {
        try await Self.withIMS { server, _ in
            let phone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(phone).statusCode == 200)
            let watcher = try await Agent.connect(server, user: "alice-watcher")
            let subscribed = try await Self.subscribeReg(watcher, to: "alice", from: "sip:alice@ims.example", callID: "reg-sub")
            #expect(subscribed.statusCode == 200)
            var notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            var body = String(buffer: notify.body)
            #expect(notify.firstValue(.contentType) == "application/reginfo+xml" && notify.firstValue(.event) == "reg")
            #expect(notify.firstValue(.subscriptionState)?.hasPrefix("active;expires=") == true)
            #expect(body.contains("version=\"0\" state=\"full\""))
            #expect(body.contains("<registration aor=\"sip:alice@ims.example\"") && body.contains("<registration aor=\"tel:+4930123\""))
            #expect(body.contains("state=\"active\" event=\"registered\"") && body.contains("<uri>sip:alice@\(phone.viaHost)</uri>"))
            // A refresh: partial, one version up.
            #expect(try await Self.register(phone).statusCode == 200)
            notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            body = String(buffer: notify.body)
            #expect(body.contains("version=\"1\" state=\"partial\"") && body.contains("event=\"refreshed\""))
            // A second device: registered.
            let tablet = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(tablet).statusCode == 200)
            notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            body = String(buffer: notify.body)
            #expect(body.contains("version=\"2\"") && body.contains("event=\"registered\"") && body.contains(tablet.viaHost))
            // Someone else may not watch alice.
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await Self.subscribeReg(bob, to: "alice", from: "sip:bob@ims.example", callID: "reg-bob").statusCode == 403)
            // Both devices go: unregistered, and with none left the subscription ends.
            #expect(try await Self.register(tablet, expires: 0).statusCode == 200)
            notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            #expect(String(buffer: notify.body).contains("event=\"unregistered\""))
            #expect(try await Self.register(phone, expires: 0).statusCode == 200)
            var last = try await watcher.next(.notify)
            try await watcher.answer(last, 200)
            if last.firstValue(.subscriptionState)?.hasPrefix("terminated") != true {
                last = try await watcher.next(.notify)
                try await watcher.answer(last, 200)
            }
            #expect(last.firstValue(.subscriptionState) == "terminated;reason=noresource")
            #expect(String(buffer: last.body).contains("<registration aor=\"sip:alice@ims.example\" id=") )
        }
    }

    @Test func networkInitiatedDeregistrationIsReportedToWatchersAndServers() async throws {
        try await Self.withIMS { server, _, profiles in
            let application = try await Self.trustedPeer(server, user: "as")
            profiles.put(Self.alice(with: InitialFilterCriteria(
                priority: 1, trigger: .init(conjunctive: true, triggers: [.init(.method("REGISTER")), .init(group: 1, .registrationType([2]))]),
                applicationServer: .init(serverName: Self.uri("sip:127.0.0.2:\(application.port)")))))
            let phone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(phone).statusCode == 200)
            let watcher = try await Agent.connect(server, user: "alice-watcher")
            #expect(try await Self.subscribeReg(watcher, to: "alice", from: "sip:alice@ims.example", callID: "dereg-sub").statusCode == 200)
            try await watcher.answer(try await watcher.next(.notify), 200)
            let control = try #require(Self.lastControl.withLockedValue { $0[server.port(.udp)] })
            #expect(control.deregister(identity: Self.uri("tel:+4930123")) == 1)
            #expect(server.server.location.bindings(for: "sip:alice@ims.example").isEmpty)
            var notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            #expect(String(buffer: notify.body).contains("event=\"deactivated\""))
            if notify.firstValue(.subscriptionState)?.hasPrefix("terminated") != true {
                notify = try await watcher.next(.notify)
                try await watcher.answer(notify, 200)
            }
            #expect(notify.firstValue(.subscriptionState) == "terminated;reason=noresource")
            let third = try await application.next(.register)
            #expect(third.firstValue(.expires) == "0" && third.firstValue(.to) == "<sip:alice@ims.example>")
            try await application.answer(third, 200)
            #expect(control.deregister(identity: Self.uri("sip:nobody@ims.example")) == nil)
        }
    }

    /// A profile change (the HSS's Push-Profile): watchers hear the identities that came and went;
    /// removing the subscriber de-registers its devices.
    @Test func aProfileChangeIsReportedToRegWatchersAndADeletionDeregisters() async throws {
        try await Self.withIMS { server, _, profiles in
            let phone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(phone).statusCode == 200)
            let watcher = try await Agent.connect(server, user: "alice-watcher")
            #expect(try await Self.subscribeReg(watcher, to: "alice", from: "sip:alice@ims.example", callID: "ppr-sub").statusCode == 200)
            try await watcher.answer(try await watcher.next(.notify), 200)
            let control = try #require(Self.lastControl.withLockedValue { $0[server.port(.udp)] })
            // tel:+4930123 goes, sip:alice.work joins.
            control.replaceProfile(privateID: "alice@ims.example", with: IMSSubscription(privateID: "alice@ims.example", serviceProfiles: [
                IMSServiceProfile(publicIdentities: [IMSPublicIdentity(uri: Self.uri("sip:alice@ims.example"), isDefault: true),
                                                     IMSPublicIdentity(uri: Self.uri("sip:alice.work@ims.example"))]),
            ]))
            var notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            var body = String(buffer: notify.body)
            #expect(body.contains("state=\"partial\"") && body.contains("version=\"1\""))
            #expect(body.contains("<registration aor=\"sip:alice.work@ims.example\"") && body.contains("event=\"created\""))
            #expect(body.contains("<registration aor=\"tel:+4930123\"") && body.contains("state=\"terminated\" event=\"deactivated\""))
            #expect(profiles.membership(of: Self.uri("tel:+4930123")) == nil)
            #expect(server.server.location.bindings(for: "sip:alice@ims.example").count == 1, "the device stays registered")
            // The subscriber is removed: the network de-registers the device.
            #expect(control.replaceProfile(privateID: "alice@ims.example", with: nil) == 1)
            #expect(server.server.location.bindings(for: "sip:alice@ims.example").isEmpty)
            notify = try await watcher.next(.notify)
            try await watcher.answer(notify, 200)
            body = String(buffer: notify.body)
            #expect(body.contains("event=\"deactivated\"") && body.contains("sip:alice.work@ims.example"))
        }
    }

    @Test func theNetworkAssertsTheCallersIdentity() async throws {
        try await Self.withIMS { server, _ in
            let alicePhone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(alicePhone).statusCode == 200)
            let bobPhone = try await Agent.connect(server, user: "bob")
            #expect(try await Self.register(bobPhone).statusCode == 200)
            // A forged assertion from an untrusted phone is replaced by its default identity.
            try await Self.message(alicePhone, to: "sip:bob@ims.example", callID: "pai-1",
                                   headers: ["P-Asserted-Identity: <sip:boss@evil.example>"])
            var received = try await bobPhone.next(.message)
            #expect(received.values(.pAssertedIdentity) == ["<sip:alice@ims.example>"])
            #expect(!received.contains(.pChargingVector), "charging data stays inside the trust domain")
            try await bobPhone.answer(received, 200)
            // A preferred identity of the caller's own set is asserted instead, and the preference goes.
            try await Self.message(alicePhone, to: "sip:bob@ims.example", callID: "pai-2",
                                   headers: ["P-Preferred-Identity: <tel:+4930123>"])
            received = try await bobPhone.next(.message)
            #expect(received.values(.pAssertedIdentity) == ["<tel:+4930123>"] && !received.contains(.pPreferredIdentity))
            try await bobPhone.answer(received, 200)
            // Privacy: id toward an untrusted phone: no identity at all.
            try await Self.message(alicePhone, to: "sip:bob@ims.example", callID: "pai-3", headers: ["Privacy: id"])
            received = try await bobPhone.next(.message)
            #expect(!received.contains(.pAssertedIdentity))
            try await bobPhone.answer(received, 200)
            // Someone not registered from that address gets no assertion.
            let stranger = try await Agent.connect(server, user: "eve")
            try await Self.message(stranger, to: "sip:bob@ims.example", callID: "pai-4", headers: ["P-Asserted-Identity: <sip:alice@ims.example>"])
            received = try await bobPhone.next(.message)
            #expect(!received.contains(.pAssertedIdentity))
            try await bobPhone.answer(received, 200)
        }
    }

    @Test func aTrustedPeerKeepsAndReceivesWhatTheTrustDomainAsserts() async throws {
        try await Self.withIMS { server, log in
            let alicePhone = try await Agent.connect(server, user: "alice")
            #expect(try await Self.register(alicePhone).statusCode == 200)
            let peer = try await Self.trustedPeer(server, user: "as")
            let route = "<sip:127.0.0.1:\(server.port(.udp));lr>"
            let target = "sip:service@127.0.0.2:\(peer.port)"
            try await Self.message(alicePhone, to: target, callID: "trusted-1",
                                   headers: ["Route: \(route)", "Privacy: id", "P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=262011234"])
            let atPeer = try await peer.next(.message)
            #expect(atPeer.values(.pAssertedIdentity) == ["<sip:alice@ims.example>"], "privacy is for untrusted peers")
            let vector = try #require(atPeer.firstValue(.pChargingVector))
            #expect(vector.hasPrefix("icid-value=") && vector.contains(";icid-generated-at=scscf.ims.test") && vector.hasSuffix(";orig-ioi=ims.test"))
            #expect(!atPeer.contains(.pAccessNetworkInfo), "an untrusted phone's access network info is not believed")
            try await peer.answer(atPeer, 200)
            // The trusted peer's own assertions, vector and access network info pass.
            try await Self.message(peer, from: "sip:carol@other.example", to: "sip:alice@ims.example", callID: "trusted-2",
                                   headers: ["P-Asserted-Identity: <sip:carol@other.example>", "P-Charging-Vector: icid-value=peer-icid-1",
                                             "P-Access-Network-Info: 3GPP-E-UTRAN-FDD; network-provided"])
            let atAlice = try await alicePhone.next(.message)
            #expect(atAlice.values(.pAssertedIdentity) == ["<sip:carol@other.example>"])
            #expect(!atAlice.contains(.pChargingVector) && !atAlice.contains(.pAccessNetworkInfo), "stripped toward an untrusted phone")
            try await alicePhone.answer(atAlice, 200)
            // The answer goes back to the trusted peer with the terminating side's term-ioi.
            let answered = try await peer.response(callID: "trusted-2")
            #expect(answered.firstValue(.pChargingVector) == "icid-value=peer-icid-1;term-ioi=ims.test")
            // Calls carry their icid into the call events; each gets its own.
            try await alicePhone.send("INVITE", to: "sip:bob@ims.example", callID: "icid-1")
            try await alicePhone.send("INVITE", to: "sip:bob@ims.example", callID: "icid-2")
            _ = try await alicePhone.response(callID: "icid-1")
            _ = try await alicePhone.response(callID: "icid-2")
            // (bob has no device: the calls fail with 404, and the failure carries the icid.)
            let icids = log.events.withLockedValue { $0 }.filter { $0.callID.hasPrefix("icid-") }.compactMap(\.icid)
            #expect(icids.count == 2 && Set(icids).count == 2)
        }
    }
}
