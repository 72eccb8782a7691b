import CoreProxy
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Presence
import SIP
import Testing

/// Bytes on the wire to a phone for four typical messages, without and with the mobile tunings.
@Suite(.timeLimit(.minutes(1)))
struct WireSavingsTests {
    typealias Agent = ProxyEndToEndTests.Agent

    /// What a mobile operator would configure for its access network.
    static let mobileRule = MessageTuningRule(
        networks: [IPNetwork("127.0.0.1/32")].compactMap { $0 },
        tuning: MessageTuning(keepHeaders: [], sdpKeepCodecs: ["PCMU", "telephone-event"], sdpRemoveMedia: ["video"],
                              compactHeaders: true, gzip: .always, gzipMinimumBytes: 200))

    struct Sizes: Sendable, Equatable {
        var registerOK = 0
        var invite = 0
        var message = 0
        var notify = 0
    }

    /// Runs the scenario on a server with presence and returns the size of what the phone received.
    static func measure(tunings: [MessageTuningRule]) async throws -> Sizes {
        let box = NIOLockedValueBox<PresenceService?>(nil)
        return try await withTestServer(tunings: tunings, configure: { server in
            var logger = Logger(label: "tern.test")
            logger.logLevel = .critical
            let presence = PresenceService(configuration: PresenceService.Configuration(minNotifyInterval: .zero), proxy: server.proxy,
                                           location: server.location, identity: server.identity,
                                           group: MultiThreadedEventLoopGroup.singleton, store: nil, logger: logger)
            server.pipeline.register(presence)
            server.addFeature(presence)
            box.withLockedValue { $0 = presence }
        }) { server in
            var sizes = Sizes()
            let phone = try await Agent.connect(server, user: "bob")
            let ok = try await MessageTuningEndToEndTests.register(
                phone, contactParameters: ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
                headers: ["User-Agent: TernPhone/2.0 (Android 14)", "Supported: path, gruu, outbound",
                          "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY, REFER, UPDATE, INFO, PRACK"])
            #expect(ok.statusCode == 200)
            sizes.registerOK = ok.serialized().readableBytes

            let alice = try await Agent.connect(server, user: "alice")
            try await alice.client.send(MessageTuningEndToEndTests.invite(from: alice, to: "bob", callID: "size-invite"))
            let invite = try await phone.next(.invite)
            sizes.invite = invite.serialized().readableBytes
            try await phone.answer(invite, 486)
            _ = try await alice.response(callID: "size-invite")

            let text = "On my way, 10 minutes late. The train stopped between stations; I'll call when I'm out of the tunnel."
            var message = MessageTuningEndToEndTests.message(from: alice, to: "bob", callID: "size-message", body: ByteBuffer(string: text))
            message = ByteBuffer(string: String(buffer: message).replacingOccurrences(
                of: "Content-Type: text/plain", with: "User-Agent: TernPhone/1.0 (Linux; x86_64)\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\n"
                    + "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\nContent-Type: text/plain"))
            try await alice.client.send(message)
            let delivered = try await phone.next(.message)
            sizes.message = delivered.serialized().readableBytes
            try await phone.answer(delivered, 200)
            _ = try await alice.response(callID: "size-message")

            let carol = try await Agent.connect(server, user: "carol")
            let person = "<dm:person id=\"p1\"><rpid:activities><rpid:meeting/></rpid:activities>"
                + "<dm:note>In a meeting until 11:00, text me</dm:note></dm:person>"
                + "<dm:device id=\"d1\"><dm:deviceID>urn:uuid:00000000-0000-1000-8000-000A95A0E129</dm:deviceID></dm:device>"
            _ = try await PresenceEndToEndTests.publish(carol, "carol", body: PresenceEndToEndTests.pidf(
                "sip:carol@tern.test", tuple: "t-phone", basic: "open", note: "Busy", extra: person), cseq: 1)
            _ = try await PresenceEndToEndTests.subscribe(phone, to: "carol", callID: "size-subscribe")
            let notify = try await PresenceEndToEndTests.notify(phone)
            sizes.notify = notify.serialized().readableBytes
            return sizes
        }
    }

    @Test func tuningsShrinkWhatThePhoneReceives() async throws {
        let before = try await Self.measure(tunings: [])
        let after = try await Self.measure(tunings: [Self.mobileRule])
        func line(_ name: String, _ old: Int, _ new: Int) -> String {
            let saved = old > 0 ? Double(old - new) * 100 / Double(old) : 0
            return "\(name): \(old) -> \(new) bytes (\(String(format: "%.0f", saved))% saved)"
        }
        print("wire savings | " + [
            line("INVITE", before.invite, after.invite), line("REGISTER 200 OK", before.registerOK, after.registerOK),
            line("NOTIFY with PIDF", before.notify, after.notify), line("MESSAGE", before.message, after.message),
        ].joined(separator: " | "))
        #expect(after.invite < before.invite)
        #expect(after.registerOK < before.registerOK)
        #expect(after.notify < before.notify)
        #expect(after.message < before.message)
    }
}
