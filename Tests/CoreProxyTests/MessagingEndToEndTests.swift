import CoreProxy
import Foundation
import Logging
import Messaging
import MongoSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SIP
import Testing

/// Store and forward of MESSAGE (RFC 3428) over real sockets, against the embedded SQLite store
/// and a real MongoDB-wire server: the same tests for both.
@Suite(.timeLimit(.minutes(2)))
struct MessagingEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent

    enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case sqlite, mongodb
        var testDescription: String { rawValue }
    }

    /// The kinds whose server is there: SQLite always, MongoDB under `make test`.
    static var kinds: [StoreKind] { TestServices.mongoEnabled ? [.sqlite, .mongodb] : [.sqlite] }

    static var logger: Logger {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .critical
        return logger
    }

    /// Records messaging events for assertions.
    final class EventLog: MessagingObserver, Sendable {
        private let events = NIOLockedValueBox<[MessagingEvent]>([])
        func messagingEvent(_ event: MessagingEvent) { events.withLockedValue { $0.append(event) } }
        func count(_ kind: MessagingEvent.Kind) -> Int { events.withLockedValue { $0.filter { $0.kind == kind }.count } }
        func all(_ kind: MessagingEvent.Kind) -> [MessagingEvent] { events.withLockedValue { $0.filter { $0.kind == kind } } }
    }

    /// A store of the kind asked for, empty, and what closes it.
    static func makeStore(_ kind: StoreKind, sqlitePath: String? = nil) async throws -> (any MessageStore, @Sendable () async -> Void) {
        switch kind {
        case .sqlite:
            let path = sqlitePath ?? FileManager.default.temporaryDirectory.appendingPathComponent("tern-msg-\(UUID().uuidString).sqlite").path
            let store = try await SQLiteMessageStore.open(path: path, logger: logger, group: MultiThreadedEventLoopGroup.singleton)
            return (store, {
                await store.close()
                if sqlitePath == nil { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            })
        case .mongodb:
            let database = try TestServices.mongoDatabase()
            let store = MongoMessageStore(database: database)
            try await store.prepare()
            return (store, {
                _ = try? await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
                await database.shutdown()
            })
        }
    }

    /// Quick settings for tests: fast sweeps and retries, generous rates.
    static func settings(_ change: (inout MessagingService.Configuration) -> Void = { _ in }) -> MessagingService.Configuration {
        var configuration = MessagingService.Configuration(perDeviceRate: 0, totalRate: 0, retryAfterFailure: .seconds(60),
                                                           expirySweepInterval: .milliseconds(200))
        change(&configuration)
        return configuration
    }

    /// Runs a server with offline messaging over `store`.
    static func withMessaging<T: Sendable>(store: any MessageStore, configuration: MessagingService.Configuration = settings(),
                                           events: EventLog = EventLog(), proxy: StatefulProxy.Configuration = StatefulProxy.Configuration(),
                                           _ body: @Sendable (RunningServer, MessagingService) async throws -> T) async throws -> T {
        let box = NIOLockedValueBox<MessagingService?>(nil)
        return try await withTestServer(proxy: proxy, configure: { server in
            let messaging = MessagingService(configuration: configuration, store: store, proxy: server.proxy, location: server.location,
                                             identity: server.identity, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
            messaging.addObserver(events)
            server.addFeature(messaging)
            box.withLockedValue { $0 = messaging }
        }) { server in
            guard let messaging = box.withLockedValue({ $0 }) else { throw TestFailure("no messaging service") }
            return try await body(server, messaging)
        }
    }

    /// Sends a MESSAGE from `sender` to `user@tern.test` and returns the final status.
    static func message(from sender: Agent, to user: String, _ text: String, contentType: String = "text/plain",
                        extra: [String] = []) async throws -> SIPMessage {
        let callID = SIPIdentifiers.callID()
        var lines = [
            "MESSAGE sip:\(user)@tern.test SIP/2.0",
            "Via: SIP/2.0/UDP \(sender.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: <sip:\(sender.user)@tern.test>;tag=\(callID.prefix(8))", "To: <sip:\(user)@tern.test>",
            "Call-ID: \(callID)", "CSeq: 1 MESSAGE", "Content-Type: \(contentType)",
        ]
        lines += extra
        lines.append("Content-Length: \(text.utf8.count)")
        try await sender.client.send(lines.joined(separator: "\r\n") + "\r\n\r\n" + text)
        while true {
            let response = try await sender.next()
            if response.callID == callID { return response }
        }
    }

    /// Waits until `condition` holds (the store follows deliveries asynchronously).
    static func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("timed out waiting: \(what)")
    }

    // MARK: - Tests

    @Test(arguments: kinds)
    func offlineUserGetsStoredMessagesOnRegistrationInOrder(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        let events = EventLog()
        try await Self.withMessaging(store: store, events: events) { server, messaging in
            let alice = try await Agent.connect(server, user: "alice")
            let texts = ["one", "two", "three"]
            for (index, text) in texts.enumerated() {
                let type = index == 2 ? "message/cpim" : "text/plain"
                let answer = try await Self.message(from: alice, to: "bob", text, contentType: type,
                                                    extra: index == 0 ? ["Date: Sat, 13 Nov 2010 23:29:00 GMT"] : [])
                #expect(answer.statusCode == 202, "stored for an offline user")
            }
            #expect(try await messaging.storedMessages(for: "sip:bob@tern.test").count == 3)
            #expect(events.count(.stored) == 3)

            let bob = try await Agent.connect(server, user: "bob")
            let registered = try await bob.register()
            #expect(registered.statusCode == 200)
            #expect(bob.parked.isEmpty, "the REGISTER's 200 OK leaves before any stored message")
            for (index, text) in texts.enumerated() {
                let delivered = try await bob.next(.message)
                #expect(String(buffer: delivered.body) == text)
                #expect(try delivered.from()?.uri.user == "alice")
                #expect(try delivered.from()?.tag != nil, "the original From, tag included")
                #expect(delivered.firstValue(.contentType) == (index == 2 ? "message/cpim" : "text/plain"))
                if index == 0 { #expect(delivered.firstValue(.date) == "Sat, 13 Nov 2010 23:29:00 GMT") }
                #expect(delivered.firstValue(.date) != nil)
                #expect(try delivered.requestURI().port == bob.port, "sent to the device that registered")
                try await bob.answer(delivered, 200)
            }
            try await Self.eventually("store emptied") { try await messaging.storedMessages(for: "sip:bob@tern.test").isEmpty }
            // The event follows the delete's completion, a moment after the store is seen empty.
            try await Self.eventually("delivered events") { events.count(.delivered) == 3 }
            #expect(events.count(.delivered) == 3)
            // Nothing else arrives.
            await #expect(throws: (any Error).self) { try await bob.next(.message, timeout: .milliseconds(400)) }
            await alice.client.close()
            await bob.client.close()
        }
        await close()
    }

    @Test(arguments: kinds)
    func everyDeviceFailedSoItIsStoredThenBothDevicesGetIt(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        try await Self.withMessaging(store: store) { server, messaging in
            let desk = try await Agent.connect(server, user: "bob")
            let mobile = try await Agent.connect(server, user: "bob")
            #expect(try await desk.register(instance: "urn:uuid:desk").statusCode == 200)
            #expect(try await mobile.register(instance: "urn:uuid:mobile").statusCode == 200)
            let alice = try await Agent.connect(server, user: "alice")
            let sending = Task { try await Self.message(from: alice, to: "bob", "are you there?") }
            // Both devices ring and refuse for now: temporarily unavailable.
            try await desk.answer(try await desk.next(.message), 480)
            try await mobile.answer(try await mobile.next(.message), 480)
            #expect(try await sending.value.statusCode == 202, "every branch failed with 480: stored, not 480")
            #expect(try await messaging.storedMessages(for: "sip:bob@tern.test").count == 1)

            // The desk phone registers again: the message goes to every device of the user.
            #expect(try await desk.register(instance: "urn:uuid:desk").statusCode == 200)
            let atDesk = try await desk.next(.message)
            let atMobile = try await mobile.next(.message)
            #expect(String(buffer: atDesk.body) == "are you there?" && String(buffer: atMobile.body) == "are you there?")
            try await mobile.answer(atMobile, 200)
            try await desk.answer(atDesk, 200)
            try await Self.eventually("store emptied") { try await messaging.storedMessages(for: "sip:bob@tern.test").isEmpty }
            for agent in [desk, mobile, alice] { await agent.client.close() }
        }
        await close()
    }

    @Test(arguments: kinds)
    func aFailedDeliveryKeepsTheMessageUntilTheNextRegistration(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        let events = EventLog()
        try await Self.withMessaging(store: store, events: events) { server, messaging in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await Self.message(from: alice, to: "bob", "first").statusCode == 202)
            #expect(try await Self.message(from: alice, to: "bob", "second").statusCode == 202)
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            let refused = try await bob.next(.message)
            #expect(String(buffer: refused.body) == "first")
            try await bob.answer(refused, 500)
            try await Self.eventually("attempt counted") {
                try await messaging.storedMessages(for: "sip:bob@tern.test").first?.attempts == 1
            }
            #expect(try await messaging.storedMessages(for: "sip:bob@tern.test").count == 2, "nothing was lost")
            // Order is kept: the second waits behind the first (a retransmission of the first is no new message).
            await #expect(throws: (any Error).self) { try await bob.next(.message, timeout: .milliseconds(400)) }
            #expect(events.count(.failed) == 1)

            #expect(try await bob.register().statusCode == 200)
            for text in ["first", "second"] {
                let delivered = try await bob.next(.message)
                #expect(String(buffer: delivered.body) == text)
                try await bob.answer(delivered, 200)
            }
            try await Self.eventually("store emptied") { try await messaging.storedMessages(for: "sip:bob@tern.test").isEmpty }
            await alice.client.close()
            await bob.client.close()
        }
        await close()
    }

    @Test(arguments: kinds)
    func fiveHundredStoredMessagesArriveAtTheThrottledRate(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        let rate = 250.0
        try await Self.withMessaging(store: store, configuration: Self.settings { $0.perDeviceRate = rate; $0.totalRate = 1000 }) { server, messaging in
            let alice = try await Agent.connect(server, user: "alice")
            for number in 0..<500 {
                let answer = try await Self.message(from: alice, to: "bob", "n\(number)")
                guard answer.statusCode == 202 else { throw TestFailure("message \(number) got \(answer.statusCode ?? 0)") }
            }
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            var first: ContinuousClock.Instant?
            var expected = 0
            while expected < 500 {
                let delivered = try await bob.next(.message)
                try await bob.answer(delivered, 200)
                let text = String(buffer: delivered.body)
                if text == "n\(expected - 1)" { continue }  // a retransmission of the one just answered
                guard text == "n\(expected)" else { throw TestFailure("expected n\(expected), got \(text)") }
                if first == nil { first = .now }
                expected += 1
            }
            let elapsed = ContinuousClock.now - (first ?? .now)
            // 499 gaps of at least 1/rate each.
            #expect(elapsed >= .milliseconds(Int64(499 / rate * 1000 * 0.95)), "took \(elapsed)")
            try await Self.eventually("store emptied") { try await messaging.storedMessages(for: "sip:bob@tern.test").isEmpty }
            await alice.client.close()
            await bob.client.close()
        }
        await close()
    }

    @Test(arguments: kinds)
    func limitsAndManagement(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        let configuration = Self.settings { $0.maxPerUser = 2; $0.maxBodyBytes = 20 }
        try await Self.withMessaging(store: store, configuration: configuration) { server, messaging in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await Self.message(from: alice, to: "carol", "this body is longer than twenty bytes").statusCode == 413)
            #expect(try await Self.message(from: alice, to: "carol", "1").statusCode == 202)
            #expect(try await Self.message(from: alice, to: "carol", "2").statusCode == 202)
            let over = try await Self.message(from: alice, to: "carol", "3")
            #expect(over.statusCode == 486 && over.reasonPhrase == "Mailbox Full")
            let kept = try await messaging.storedMessages(for: "sip:carol@tern.test")
            #expect(kept.map { String(decoding: $0.body, as: UTF8.self) } == ["1", "2"], "nothing stored is dropped for the limit")

            // Management: delete one, send one from the server.
            let first = try #require(kept.first)
            #expect(try await messaging.deleteStoredMessage(id: first.id))
            #expect(try await messaging.deleteStoredMessage(id: first.id) == false)
            #expect(try await messaging.sendMessage(from: "sip:operator@tern.test", to: "sip:carol@tern.test", body: Array("hi".utf8)) == 202)
            #expect(try await messaging.storedMessages(for: "sip:carol@tern.test").map { String(decoding: $0.body, as: UTF8.self) } == ["2", "hi"])
            await alice.client.close()
        }
        await close()
    }

    @Test(arguments: kinds)
    func lapsedMessagesAreSweptAsEvents(_ kind: StoreKind) async throws {
        let (store, close) = try await Self.makeStore(kind)
        let events = EventLog()
        try await Self.withMessaging(store: store, configuration: Self.settings { $0.maxAgeSeconds = 1 }, events: events) { server, messaging in
            let alice = try await Agent.connect(server, user: "alice")
            for text in ["1", "2"] { #expect(try await Self.message(from: alice, to: "carol", text).statusCode == 202) }
            // The sweep's delete on the Python MongoDB-wire test server has taken over 8 s in a loaded run.
            try await Self.eventually("expired", timeout: .seconds(20)) { events.count(.expired) == 2 }
            #expect(try await messaging.storedMessages(for: "sip:carol@tern.test").isEmpty)
            await alice.client.close()
        }
        await close()
    }

    @Test(arguments: kinds)
    func aRestartDeliversWhatWaitsAndNeverRepeatsWhatWasDelivered(_ kind: StoreKind) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-msg-restart-\(UUID().uuidString).sqlite").path
        let database = kind == .mongodb ? try TestServices.mongoDatabase() : nil
        func open() async throws -> (any MessageStore, @Sendable () async -> Void) {
            if let database {
                let store = MongoMessageStore(database: database)
                try await store.prepare()
                return (store, {})
            }
            return try await Self.makeStore(.sqlite, sqlitePath: path)
        }
        let (first, closeFirst) = try await open()
        try await Self.withMessaging(store: first) { server, _ in
            let alice = try await Agent.connect(server, user: "alice")
            for text in ["a", "b"] { #expect(try await Self.message(from: alice, to: "bob", text).statusCode == 202) }
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            let delivered = try await bob.next(.message)
            #expect(String(buffer: delivered.body) == "a")
            try await bob.answer(delivered, 200)
            // "b" is refused: it stays for after the restart.
            let refused = try await bob.next(.message)
            try await bob.answer(refused, 480)
            await alice.client.close()
            await bob.client.close()
        }
        await closeFirst()
        let (second, closeSecond) = try await open()
        try await Self.withMessaging(store: second) { server, messaging in
            let pending = try await messaging.storedMessages(for: "sip:bob@tern.test")
            #expect(!pending.map { String(decoding: $0.body, as: UTF8.self) }.contains("a"), "a delivered message stays delivered")
            #expect(pending.first.map { String(decoding: $0.body, as: UTF8.self) } == "b")
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            let again = try await bob.next(.message)
            #expect(String(buffer: again.body) == "b")
            try await bob.answer(again, 200)
            await bob.client.close()
        }
        await closeSecond()
        if let database {
            _ = try? await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
            await database.shutdown()
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    @Test(.enabled(if: TestServices.mongoEnabled, "needs the MongoDB test server"))
    func mongoDBStoppedAndStartedAgainLosesNothing() async throws {
        let server = try await OwnMongoServer()
        let database = try MongoDatabase(uri: server.uri, database: "outage", threads: 2, logger: Self.logger)
        let store = MongoMessageStore(database: database)
        // The server takes TCP connections a little before it answers; the URI allows 500 ms to
        // find it, which a loaded CI machine can exceed once.
        try await Self.eventually("store prepared", timeout: .seconds(20)) { (try? await store.prepare()) != nil }
        try await Self.withMessaging(store: store) { sip, messaging in
            let alice = try await Agent.connect(sip, user: "alice")
            #expect(try await Self.message(from: alice, to: "bob", "before").statusCode == 202)

            try await server.stop()
            let refused = try await Self.message(from: alice, to: "bob", "during")
            #expect(refused.statusCode == 500, "never a false 202")
            #expect(refused.firstValue(.retryAfter) != nil)
            // The SIP core keeps serving meanwhile.
            try await alice.client.send(sipRequest("OPTIONS", uri: "sip:tern.test"))
            #expect(try await alice.next().statusCode == 200)

            try await server.start()
            try await Self.eventually("MongoDB back", timeout: .seconds(20)) { (try? await database.ping()) != nil }
            #expect(try await Self.message(from: alice, to: "bob", "after").statusCode == 202)
            let bob = try await Agent.connect(sip, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            for text in ["before", "after"] {
                let delivered = try await bob.next(.message)
                #expect(String(buffer: delivered.body) == text)
                try await bob.answer(delivered, 200)
            }
            // Right after the restart a read can still miss the 500 ms server selection: asked again.
            try await Self.eventually("store emptied") { (try? await messaging.storedMessages(for: "sip:bob@tern.test"))?.isEmpty == true }
            await alice.client.close()
            await bob.client.close()
        }
        await database.shutdown()
        await server.remove()
    }

    @Test func onlyTheNewestDeviceGetsAMessageWhenConfigured() async throws {
        let (store, close) = try await Self.makeStore(.sqlite)
        try await Self.withMessaging(store: store, proxy: StatefulProxy.Configuration(newestDeviceOnly: [.message])) { server, _ in
            let desk = try await Agent.connect(server, user: "bob")
            let mobile = try await Agent.connect(server, user: "bob")
            #expect(try await desk.register(instance: "urn:uuid:desk").statusCode == 200)
            try await Task.sleep(for: .milliseconds(5))
            #expect(try await mobile.register(instance: "urn:uuid:mobile").statusCode == 200)
            let alice = try await Agent.connect(server, user: "alice")
            let sending = Task { try await Self.message(from: alice, to: "bob", "to the phone in use") }
            let atMobile = try await mobile.next(.message)
            try await mobile.answer(atMobile, 200)
            #expect(try await sending.value.statusCode == 200)
            await #expect(throws: (any Error).self) { try await desk.next(.message, timeout: .milliseconds(400)) }
            // The desk phone registers again: it is now the one in use.
            try await Task.sleep(for: .milliseconds(5))
            #expect(try await desk.register(instance: "urn:uuid:desk").statusCode == 200)
            let next = Task { try await Self.message(from: alice, to: "bob", "now the desk") }
            try await desk.answer(try await desk.next(.message), 200)
            #expect(try await next.value.statusCode == 200)
            for agent in [desk, mobile, alice] { await agent.client.close() }
        }
        await close()
    }

    @Test func aLapsedMessageIsReportedToItsSenderWhenConfigured() async throws {
        let (store, close) = try await Self.makeStore(.sqlite)
        let configuration = Self.settings { $0.maxAgeSeconds = 1; $0.reportExpired = true }
        try await Self.withMessaging(store: store, configuration: configuration) { server, _ in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await alice.register().statusCode == 200)
            #expect(try await Self.message(from: alice, to: "bob", "hello?").statusCode == 202)
            let report = try await alice.next(.message)
            #expect(try report.from()?.uri.user == "postmaster")
            #expect(String(buffer: report.body).contains("sip:bob@tern.test"))
            try await alice.answer(report, 200)
            await alice.client.close()
        }
        await close()
    }

    /// The documented at-least-once window: a device's 2xx arrived, but the delete did not reach
    /// the store (here: MongoDB killed in between). The message is delivered again; never lost.
    /// Tern as the messaging application server of another S-CSCF (../shared/ims-and-sipi.md I14): the
    /// S-CSCF's third-party REGISTER for a user is the sign that the user is back, and the stored
    /// messages (an IMDN among them) go to the contact it gave, which leads to the user.
    @Test func aThirdPartyRegisterFromAnSCSCFFlushesStoredMessages() async throws {
        let (store, close) = try await Self.makeStore(.sqlite)
        defer { Task { await close() } }
        try await Self.withMessaging(store: store) { sip, _ in
            let alice = try await Agent.connect(sip, user: "alice")
            #expect(try await Self.message(from: alice, to: "bob", "are you there?").statusCode == 202)
            let imdn = "<?xml version=\"1.0\"?><imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>1</message-id></imdn>"
            #expect(try await Self.message(from: alice, to: "bob", imdn, contentType: "message/imdn+xml").statusCode == 202)
            let scscf = try await Agent.connect(sip, user: "scscf")
            let original = "REGISTER sip:ims.example SIP/2.0\r\nTo: <sip:bob@tern.test>\r\nContent-Length: 0\r\n\r\n"
            let register = ["REGISTER sip:tern.test SIP/2.0", "Via: SIP/2.0/UDP \(scscf.viaHost);branch=\(SIPIdentifiers.branch());rport",
                            "Max-Forwards: 70", "From: <sip:scscf.ims.example>;tag=3rd", "To: <sip:bob@tern.test>", "Call-ID: third-party-1",
                            "CSeq: 1 REGISTER", "Contact: <sip:scscf@\(scscf.viaHost)>", "Expires: 600", "Event: registration",
                            "Content-Type: message/sip", "Content-Length: \(original.utf8.count)", "", original].joined(separator: "\r\n")
            try await scscf.client.send(register)
            #expect(try await scscf.response(callID: "third-party-1").statusCode == 200)
            var bodies: [String] = []
            for _ in 0..<2 {
                let delivered = try await scscf.next(.message)
                bodies.append(String(buffer: delivered.body))
                try await scscf.answer(delivered, 200)
            }
            #expect(bodies.contains("are you there?") && bodies.contains(imdn), "both, the IMDN as any other message")
        }
    }

    @Test(.enabled(if: TestServices.mongoEnabled, "needs the MongoDB test server"))
    func aDeliveryWhoseDeleteWasLostIsDeliveredAgain() async throws {
        let server = try await OwnMongoServer()
        let database = try MongoDatabase(uri: server.uri, database: "window", threads: 2, logger: Self.logger)
        let store = MongoMessageStore(database: database)
        // As in the outage test: the server takes connections a little before it answers.
        try await Self.eventually("MongoDB up", timeout: .seconds(20)) { (try? await database.ping()) != nil }
        try await store.prepare()
        try await Self.withMessaging(store: store) { sip, messaging in
            let alice = try await Agent.connect(sip, user: "alice")
            #expect(try await Self.message(from: alice, to: "bob", "once or twice").statusCode == 202)
            let bob = try await Agent.connect(sip, user: "bob")
            #expect(try await bob.register().statusCode == 200)
            let first = try await bob.next(.message)
            try await server.stop()
            try await bob.answer(first, 200)
            try await Task.sleep(for: .seconds(1))
            try await server.start()
            try await Self.eventually("MongoDB back", timeout: .seconds(20)) { (try? await database.ping()) != nil }
            #expect(try await messaging.storedMessages(for: "sip:bob@tern.test").count == 1, "the delete was lost, not the message")
            #expect(try await bob.register().statusCode == 200)
            let second = try await bob.next(.message)
            #expect(String(buffer: second.body) == "once or twice")
            try await bob.answer(second, 200)
            // Right after the restart a read can still miss the 500 ms server selection: asked again.
            try await Self.eventually("store emptied") { (try? await messaging.storedMessages(for: "sip:bob@tern.test"))?.isEmpty == true }
            await alice.client.close()
            await bob.client.close()
        }
        await database.shutdown()
        await server.remove()
    }
}
