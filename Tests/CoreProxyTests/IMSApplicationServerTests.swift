import CoreProxy
import Foundation
import IMS
import Messaging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Tern as a presence and IM application server behind another registrar, and at the edge of the
/// home network (TS 24.229; ../shared/ims-and-sipi.md I13, I14), over real sockets.
@Suite(.timeLimit(.minutes(1)))
struct IMSApplicationServerTests {
    typealias Agent = ProxyEndToEndTests.Agent

    /// A `reg` NOTIFY from `registrar` (inside the trust domain) saying `contact` of `aor` is `state`.
    static func regNotify(_ registrar: Agent, server: RunningServer, aor: String, contact: String, state: String, version: Int,
                          callID: String, body: String? = nil, contactHost: String = "127.0.0.2") async throws -> SIPMessage {
        let document = body ?? """
            <?xml version="1.0"?>
            <reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="\(version)" state="full">
              <registration aor="\(aor)" id="r1" state="\(state)">
                <contact id="c1" state="\(state)" event="\(state == "active" ? "registered" : "unregistered")" expires="600">
                  <uri>\(contact)</uri>
                </contact>
              </registration>
            </reginfo>
            """
        let lines = ["NOTIFY sip:127.0.0.1:\(server.port(.udp)) SIP/2.0",
                     "Via: SIP/2.0/UDP \(registrar.viaHost);branch=\(SIPIdentifiers.branch());rport", "Max-Forwards: 70",
                     "From: <sip:bob@ims.example>;tag=scscf", "To: <sip:as@ims.example>;tag=as", "Call-ID: \(callID)",
                     "CSeq: \(version + 1) NOTIFY", "Event: reg", "Subscription-State: active;expires=600",
                     "Contact: <sip:\(contactHost):\(registrar.port)>", "Content-Type: application/reginfo+xml"]
        try await registrar.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: \(document.utf8.count)\r\n\r\n" + document)
        while true {
            let message = try await registrar.client.receive()
            if message.isRequest {
                // A stored message may set off before the NOTIFY's answer: kept for next(.message).
                registrar.parked.append(message)
                continue
            }
            if message.callID == callID, let code = message.statusCode, code >= 200 { return message }
        }
    }

    @Test(arguments: MessagingEndToEndTests.kinds)
    func aRegistrarsRegNotifyBringsAUserOnlineAndStoredMessagesFollow(_ kind: MessagingEndToEndTests.StoreKind) async throws {
        let (store, close) = try await MessagingEndToEndTests.makeStore(kind)
        let events = MessagingEndToEndTests.EventLog()
        try await IMSEndToEndTests.withIMS(configure: { server, policy in
            server.pipeline.register(RegInfoNotifyHandler(policy: policy, location: server.location, logger: PushEndToEndTests.logger))
            let messaging = MessagingService(configuration: MessagingEndToEndTests.settings(), store: store, proxy: server.proxy,
                                             location: server.location, identity: server.identity,
                                             group: MultiThreadedEventLoopGroup.singleton, logger: PushEndToEndTests.logger)
            messaging.addObserver(events)
            server.addFeature(messaging)
        }) { server, _, _ in
            // bob is offline: an IM (linphone's delivery notification format) waits in the store.
            let alice = try await Agent.connect(server, user: "alice")
            let imdn = "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>m1</message-id></imdn>"
            let lines = ["MESSAGE sip:bob@ims.example SIP/2.0", "Via: SIP/2.0/UDP \(alice.viaHost);branch=\(SIPIdentifiers.branch());rport",
                         "Max-Forwards: 70", "From: <sip:alice@ims.example>;tag=a1", "To: <sip:bob@ims.example>", "Call-ID: as-im-1",
                         "CSeq: 1 MESSAGE", "Content-Type: message/imdn+xml"]
            try await alice.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: \(imdn.utf8.count)\r\n\r\n" + imdn)
            #expect(try await alice.response(callID: "as-im-1").statusCode == 202)
            #expect(events.count(.stored) == 1)
            #expect(events.all(.stored).first?.icid?.isEmpty == false, "I9: the icid the network gave the MESSAGE is in its event")

            // The registrar (S-CSCF) in front of Tern says bob registered: he is online, reached through it.
            let registrar = try await IMSEndToEndTests.trustedPeer(server, user: "scscf")
            let device = "sip:bob@10.20.30.40:5070"
            #expect(try await Self.regNotify(registrar, server: server, aor: "sip:bob@ims.example", contact: device, state: "active",
                                             version: 0, callID: "reginfo-1").statusCode == 200)
            let delivered = try await registrar.next(.message)
            #expect(delivered.requestURIString == device)
            #expect(delivered.values(.route) == ["<sip:127.0.0.2:\(registrar.port);lr>"], "through the registrar that reported the device")
            #expect(delivered.firstValue(.contentType) == "message/imdn+xml" && String(buffer: delivered.body) == imdn)
            try await registrar.answer(delivered, 200)
            try await RoutingEndToEndTests.until { events.count(.delivered) == 1 }
            let left = try await store.pending(for: "sip:bob@ims.example", now: SystemLocationClock().nowMilliseconds(), limit: 10,
                                               on: MultiThreadedEventLoopGroup.singleton.next()).get()
            #expect(left.isEmpty, "deleted from the store once bob's device took it")

            // bob goes offline: the binding the registrar's state made is gone.
            #expect(try await Self.regNotify(registrar, server: server, aor: "sip:bob@ims.example", contact: device, state: "terminated",
                                             version: 1, callID: "reginfo-2").statusCode == 200)
            #expect(server.server.location.bindings(for: "sip:bob@ims.example").isEmpty)

            // Only the trust domain may say who is online, and only in reginfo that parses.
            let phone = try await Agent.connect(server, user: "mallory")
            #expect(try await Self.regNotify(phone, server: server, aor: "sip:bob@ims.example", contact: device, state: "active",
                                             version: 0, callID: "reginfo-3", contactHost: "127.0.0.1").statusCode == 403)
            let broken = try await Self.regNotify(registrar, server: server, aor: "", contact: "", state: "", version: 2,
                                                  callID: "reginfo-4", body: "<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" state=\"full\"/>")
            #expect(broken.statusCode == 400 && broken.reasonPhrase == "Malformed reginfo: version missing or not a number")
            #expect(server.server.location.bindings(for: "sip:bob@ims.example").isEmpty)
        }
        await close()
    }

    @Test func numbersNoSubscriberHasBreakOutOrGet404() async throws {
        // Without a breakout route: 404.
        try await IMSEndToEndTests.withIMS { server, _, _ in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await IMSEndToEndTests.register(alice).statusCode == 200)
            try await IMSEndToEndTests.message(alice, to: "tel:+4989000111", callID: "pstn-0")
            let refused = try await alice.response(callID: "pstn-0")
            #expect(refused.statusCode == 404 && refused.reasonPhrase == "Unknown Number")
        }
        // With one: the request leaves for the gateway with the number as its Request-URI. (The
        // gateway's port must be known before the server starts: a free one is found first.)
        let probe = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.3", port: 0).get()
        let gatewayPort = probe.localAddress?.port ?? 0
        try await probe.close()
        try await IMSEndToEndTests.withIMS(breakout: IMSEndToEndTests.uri("sip:127.0.0.3:\(gatewayPort)")) { server, _, _ in
            let gateway = Agent(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp), localHost: "127.0.0.3",
                                                                localPort: gatewayPort), user: "bgcf")
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await IMSEndToEndTests.register(alice).statusCode == 200)
            for (index, number) in ["tel:+4989000111", "sip:+49-89-000111@ims.example;user=phone"].enumerated() {
                try await IMSEndToEndTests.message(alice, to: number, callID: "pstn-\(index + 1)")
                let atGateway = try await gateway.next(.message)
                #expect(atGateway.requestURIString == number, "the number stays the Request-URI")
                #expect(atGateway.values(.route) == ["<sip:127.0.0.3:\(gatewayPort);lr>"])
                #expect(atGateway.values(.pAssertedIdentity) == ["<sip:alice@ims.example>"])
                try await gateway.answer(atGateway, 200)
                #expect(try await alice.response(callID: "pstn-\(index + 1)").statusCode == 200)
            }
            // A subscriber's own number, in any of its forms, stays home.
            try await IMSEndToEndTests.message(alice, to: "tel:30123;phone-context=+49", callID: "pstn-home")
            let home = try await alice.next(.message)
            #expect(home.firstValue(.pCalledPartyID) == "<tel:30123;phone-context=+49>")
            try await alice.answer(home, 200)
            #expect(try await alice.response(callID: "pstn-home").statusCode == 200)
        }
    }

    @Test func aRequiredBodyTheServerCannotReadGets415AndAProxyPassesIt() async throws {
        try await withTestServer { server in
            let agent = try await Agent.connect(server, user: "gw")
            let isup = ISUPMessageTestsVectors.iamA
            func request(_ method: String, to target: String, callID: String, disposition: String?) -> ByteBuffer {
                var head = ["\(method) \(target) SIP/2.0", "Via: SIP/2.0/UDP \(agent.viaHost);branch=\(SIPIdentifiers.branch());rport",
                            "Max-Forwards: 70", "From: <sip:gw@tern.test>;tag=g1", "To: <\(target)>", "Call-ID: \(callID)",
                            "CSeq: 1 \(method)", "Contact: <sip:gw@\(agent.viaHost)>", "Content-Type: application/ISUP; version=itu-t92+"]
                if let disposition { head.append("Content-Disposition: " + disposition) }
                head.append("Content-Length: \(isup.count)")
                var out = ByteBuffer(string: head.joined(separator: "\r\n") + "\r\n\r\n")
                out.writeBytes(isup)
                return out
            }
            // The server itself answers OPTIONS: an ISUP it must understand and cannot is refused.
            try await agent.client.send(request("OPTIONS", to: "sip:tern.test", callID: "ua-1", disposition: "signal; handling=required"))
            let refused = try await agent.response(callID: "ua-1")
            #expect(refused.statusCode == 415 && refused.reasonPhrase == "Required Body Not Understood: application/isup")
            #expect(refused.firstValue(.accept) == "application/sdp")
            // ISUP without a disposition is required too (RFC 3204); marked optional, it is ignored.
            try await agent.client.send(request("OPTIONS", to: "sip:tern.test", callID: "ua-2", disposition: nil))
            #expect(try await agent.response(callID: "ua-2").statusCode == 415)
            try await agent.client.send(request("OPTIONS", to: "sip:tern.test", callID: "ua-3", disposition: "signal; handling=optional"))
            #expect(try await agent.response(callID: "ua-3").statusCode == 200)
            // A proxied request carries it on untouched, whatever its handling.
            let callee = try await Agent.connect(server, user: "carol")
            #expect(try await callee.register().statusCode == 200)
            try await agent.client.send(request("INVITE", to: "sip:carol@tern.test", callID: "ua-4", disposition: "signal; handling=required"))
            let relayed = try await callee.next(.invite)
            #expect(Array(relayed.body.readableBytesView) == isup && relayed.firstValue(.contentLength) == String(isup.count))
            try await callee.answer(relayed, 486)
            #expect(try await agent.response(callID: "ua-4").statusCode == 486)
        }
    }
}
