import CoreProxy
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import MongoSupport
import Presence
import SIP
import Testing

/// Presentities publishing and watchers subscribing over real sockets (RFC 3903, 3856, 6665,
/// 3857/3858, 5839, 6446).
@Suite(.timeLimit(.minutes(1)))
struct PresenceEndToEndTests {
    typealias Agent = ProxyEndToEndTests.Agent

    static func pidf(_ entity: String, tuple: String, basic: String = "open", note: String? = nil, extra: String = "") -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" "
            + "xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"\(entity)\">"
            + "<tuple id=\"\(tuple)\"><status><basic>\(basic)</basic></status>" + (note.map { "<note>\($0)</note>" } ?? "") + "</tuple>"
            + extra + "</presence>"
    }

    /// Runs a server with the presence service.
    static func withPresence<T: Sendable>(_ configuration: PresenceService.Configuration = PresenceService.Configuration(minNotifyInterval: .zero),
                                          timers: TransactionTimers = TransactionTimers(), store: (any PresenceStore)? = nil,
                                          udpPort: Int = 0,
                                          _ body: @Sendable (RunningServer, PresenceService) async throws -> T) async throws -> T {
        let box = NIOLockedValueBox<PresenceService?>(nil)
        let listeners = [ListenerSpec(transport: .udp, host: "127.0.0.1", port: udpPort), ListenerSpec(transport: .tcp, host: "127.0.0.1", port: 0)]
        return try await withTestServer(listeners: listeners, timers: timers, configure: { server in
            var logger = Logger(label: "tern.test")
            logger.logLevel = .critical
            let presence = PresenceService(configuration: configuration, proxy: server.proxy, location: server.location,
                                           identity: server.identity, group: MultiThreadedEventLoopGroup.singleton, store: store,
                                           logger: logger)
            server.pipeline.register(presence)
            server.addFeature(presence)
            box.withLockedValue { $0 = presence }
        }) { server in
            guard let presence = box.withLockedValue({ $0 }) else { throw TestFailure("no presence service") }
            try await presence.restore()
            return try await body(server, presence)
        }
    }

    /// Sends a request made of `lines` (start line first) with the body, and returns its final response.
    static func request(_ agent: Agent, _ lines: [String], body: String = "") async throws -> SIPMessage {
        let callID = lines.first { $0.hasPrefix("Call-ID: ") }.map { String($0.dropFirst(9)) } ?? ""
        let cseq = lines.first { $0.hasPrefix("CSeq: ") } ?? ""
        try await agent.client.send(lines.joined(separator: "\r\n") + "\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        while true {
            let message = try await agent.client.receive()
            if message.method == .notify {
                // A NOTIFY may overtake the SUBSCRIBE's 200: keep it for this agent's next(.notify).
                agent.parked.append(message)
                continue
            }
            if let code = message.statusCode, code >= 200, message.callID == callID, "CSeq: " + (message.firstValue(.cseq) ?? "") == cseq {
                return message
            }
        }
    }

    /// The next NOTIFY to `agent` (one that overtook a response first), answered with `status`.
    static func notify(_ agent: Agent, answer status: Int = 200, timeout: Duration = .seconds(5)) async throws -> SIPMessage {
        // next(.notify) reads what this agent parked first and skips retransmissions.
        let notify = try await agent.next(.notify, timeout: timeout)
        // The NOTIFY's To carries the watcher's own tag already; the answer keeps it.
        if status > 0 { try await agent.answer(notify, status, toTag: "unused") }
        return notify
    }

    static func publish(_ agent: Agent, _ user: String, body: String?, ifMatch: String? = nil, expires: Int = 600,
                        event: String = "presence", contentType: String = "application/pidf+xml", cseq: Int) async throws -> SIPMessage {
        var lines = [
            "PUBLISH sip:\(user)@tern.test SIP/2.0", "Via: SIP/2.0/UDP \(agent.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: <sip:\(user)@tern.test>;tag=pub\(agent.port)", "To: <sip:\(user)@tern.test>",
            "Call-ID: publish-\(agent.port)-\(UInt(bitPattern: ObjectIdentifier(agent).hashValue))", "CSeq: \(cseq) PUBLISH", "Event: \(event)", "Expires: \(expires)",
        ]
        if let ifMatch { lines.append("SIP-If-Match: \(ifMatch)") }
        if body != nil { lines.append("Content-Type: \(contentType)") }
        return try await request(agent, lines, body: body ?? "")
    }

    /// A new SUBSCRIBE that must be accepted; a refusal names what came back.
    static func expectSubscribed(_ watcher: Agent, to user: String) async throws {
        let answer = try await subscribe(watcher, to: user, callID: SIPIdentifiers.callID())
        #expect(answer.statusCode == 200, "SUBSCRIBE answered: \(answer.serializedString)")
    }

    /// A watcher's SUBSCRIBE: a new one (no `toTag`) or a refresh in its dialog.
    static func subscribe(_ watcher: Agent, to user: String, event: String = "presence", expires: Int = 600, cseq: Int = 1,
                          callID: String, toTag: String? = nil, extra: [String] = []) async throws -> SIPMessage {
        var lines = [
            "SUBSCRIBE sip:\(user)@tern.test SIP/2.0", "Via: SIP/2.0/UDP \(watcher.viaHost);branch=\(SIPIdentifiers.branch());rport",
            "Max-Forwards: 70", "From: <sip:\(watcher.user)@tern.test>;tag=w\(watcher.port)",
            "To: <sip:\(user)@tern.test>" + (toTag.map { ";tag=\($0)" } ?? ""), "Call-ID: \(callID)", "CSeq: \(cseq) SUBSCRIBE",
            "Contact: <sip:\(watcher.user)@\(watcher.viaHost)>", "Event: \(event)", "Expires: \(expires)",
        ]
        lines += extra
        return try await request(watcher, lines)
    }

    // MARK: - Tests

    @Test func twoDevicesPublishAndTheWatcherSeesOneComposedDocument() async throws {
        try await Self.withPresence { server, presence in
            let phone = try await Agent.connect(server, user: "alice")
            let desk = try await Agent.connect(server, user: "alice")
            let person = "<dm:person id=\"p1\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>"
            let first = try await Self.publish(phone, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "phone", extra: person), cseq: 1)
            #expect(first.statusCode == 200)
            #expect(first.firstValue(.sipETag) != nil && first.firstValue(.expires) == "600")
            #expect(try await Self.publish(desk, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "desk", basic: "closed"),
                                           cseq: 1).statusCode == 200)

            let bob = try await Agent.connect(server, user: "bob")
            let callID = SIPIdentifiers.callID()
            let accepted = try await Self.subscribe(bob, to: "alice", callID: callID)
            #expect(accepted.statusCode == 200 && accepted.firstValue(.expires) == "600")
            #expect(try accepted.to()?.tag != nil && accepted.contains(.contact))
            let notify = try await Self.notify(bob)
            #expect(notify.firstValue(.event) == "presence")
            #expect(notify.firstValue(.subscriptionState)?.hasPrefix("active;expires=") == true)
            #expect(try notify.callID == callID && notify.from()?.tag == accepted.to()?.tag)
            let document = String(buffer: notify.body)
            #expect(document.contains("<tuple id=\"phone\">") && document.contains("<tuple id=\"desk\">"))
            #expect(document.contains("rpid:on-the-phone") && document.contains("entity=\"sip:alice@tern.test\""))
            #expect(presence.watchers(of: "sip:alice@tern.test").first?.status == .active)
            for agent in [phone, desk, bob] { await agent.client.close() }
        }
    }

    @Test func publicationLifecycleAndItsErrors() async throws {
        try await Self.withPresence { server, presence in
            let phone = try await Agent.connect(server, user: "alice")
            let body = Self.pidf("sip:alice@tern.test", tuple: "t1", note: "at lunch")
            #expect(try await Self.publish(phone, "alice", body: body, event: "dialog", cseq: 1).statusCode == 489)
            let short = try await Self.publish(phone, "alice", body: body, expires: 5, cseq: 2)
            #expect(short.statusCode == 423 && short.firstValue(.minExpires) == "60")
            #expect(try await Self.publish(phone, "alice", body: body, contentType: "text/plain", cseq: 3).statusCode == 415)
            let broken = try await Self.publish(phone, "alice", body: "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"", cseq: 4)
            #expect(broken.statusCode == 400 && broken.reasonPhrase?.hasPrefix("Malformed PIDF") == true)
            let noID = try await Self.publish(phone, "alice", body: "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@tern.test\"><tuple><status><basic>open</basic></status></tuple></presence>", cseq: 5)
            #expect(noID.reasonPhrase == "Malformed PIDF: tuple without id")
            // Cut off in transit: XMLDocument alone would recover it into a whole document.
            let truncated = try await Self.publish(phone, "alice", body: body.replacingOccurrences(of: "</presence>", with: ""), cseq: 50)
            #expect(truncated.statusCode == 400 && truncated.reasonPhrase?.hasPrefix("Malformed PIDF: not well-formed XML") == true)

            let initial = try await Self.publish(phone, "alice", body: body, cseq: 6)
            let tag = try #require(initial.firstValue(.sipETag))
            #expect(presence.state(of: "sip:alice@tern.test")?.contains("at lunch") == true)
            let refreshed = try await Self.publish(phone, "alice", body: nil, ifMatch: tag, cseq: 7)
            #expect(refreshed.statusCode == 200 && refreshed.firstValue(.sipETag) != tag, "a refresh gets a new entity tag")
            #expect(try await Self.publish(phone, "alice", body: nil, ifMatch: tag, cseq: 8).statusCode == 412, "the old tag is stale")
            let newTag = try #require(refreshed.firstValue(.sipETag))
            let modified = try await Self.publish(phone, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: "back"),
                                                  ifMatch: newTag, cseq: 9)
            #expect(modified.statusCode == 200)
            #expect(presence.state(of: "sip:alice@tern.test")?.contains("back") == true)
            let removed = try await Self.publish(phone, "alice", body: nil, ifMatch: modified.firstValue(.sipETag), expires: 0, cseq: 10)
            #expect(removed.statusCode == 200 && removed.firstValue(.expires) == "0")
            #expect(presence.state(of: "sip:alice@tern.test") == nil, "no publication left: nothing to show")
            await phone.client.close()
        }
    }

    @Test func aPendingWatcherIsAllowedAndTheWatcherListFollows() async throws {
        try await Self.withPresence(PresenceService.Configuration(policy: .ask, minNotifyInterval: .zero)) { server, presence in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: "secret"),
                                           cseq: 1).statusCode == 200)
            // Alice watches her watchers: the first document is full and empty.
            let winfoCall = SIPIdentifiers.callID()
            #expect(try await Self.subscribe(alice, to: "alice", event: "presence.winfo", callID: winfoCall).statusCode == 200)
            let full = try await Self.notify(alice)
            #expect(full.firstValue(.contentType) == "application/watcherinfo+xml")
            #expect(String(buffer: full.body).contains("state=\"full\"") && String(buffer: full.body).contains("version=\"0\""))

            let bob = try await Agent.connect(server, user: "bob")
            try await Self.expectSubscribed(bob, to: "alice")
            let pending = try await Self.notify(bob)
            #expect(pending.firstValue(.subscriptionState)?.hasPrefix("pending") == true)
            #expect(!String(buffer: pending.body).contains("secret"), "a pending watcher sees a neutral document")
            let partial = String(buffer: try await Self.notify(alice).body)
            #expect(partial.contains("state=\"partial\"") && partial.contains("version=\"1\""))
            #expect(partial.contains("status=\"pending\"") && partial.contains("sip:bob@tern.test"))

            presence.authorize(presentity: "sip:alice@tern.test", watcher: "sip:bob@tern.test", .allowed)
            let active = try await Self.notify(bob)
            #expect(active.firstValue(.subscriptionState)?.hasPrefix("active") == true)
            #expect(String(buffer: active.body).contains("secret"))
            let approved = String(buffer: try await Self.notify(alice).body)
            #expect(approved.contains("event=\"approved\"") && approved.contains("status=\"active\""))

            // A stranger may not watch alice's watchers; a blocked watcher is refused.
            #expect(try await Self.subscribe(bob, to: "alice", event: "presence.winfo", callID: SIPIdentifiers.callID()).statusCode == 403)
            presence.authorize(presentity: "sip:alice@tern.test", watcher: "sip:bob@tern.test", .blocked)
            let ended = try await Self.notify(bob)
            #expect(ended.firstValue(.subscriptionState) == "terminated;reason=rejected")
            #expect(try await Self.subscribe(bob, to: "alice", callID: SIPIdentifiers.callID()).statusCode == 403)
            for agent in [alice, bob] { await agent.client.close() }
        }
    }

    @Test func fetchRefreshWithSuppressIfMatchGzipAndUnsubscribe() async throws {
        try await Self.withPresence { server, presence in
            let alice = try await Agent.connect(server, user: "alice")
            let note = String(repeating: "long note ", count: 40)
            #expect(try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: note),
                                           cseq: 1).statusCode == 200)
            let bob = try await Agent.connect(server, user: "bob")
            // A fetch: one NOTIFY with the state, terminated.
            #expect(try await Self.subscribe(bob, to: "alice", expires: 0, callID: SIPIdentifiers.callID()).statusCode == 200)
            let fetched = try await Self.notify(bob)
            #expect(fetched.firstValue(.subscriptionState) == "terminated;reason=timeout")
            #expect(String(buffer: fetched.body).contains("long note"))
            #expect(presence.subscriptionCount == 0)

            // gzip when the watcher accepts it.
            let callID = SIPIdentifiers.callID()
            let accepted = try await Self.subscribe(bob, to: "alice", callID: callID, extra: ["Accept-Encoding: gzip"])
            let toTag = try #require(try accepted.to()?.tag)
            let zipped = try await Self.notify(bob)
            #expect(zipped.firstValue(.contentEncoding) == "gzip")
            let plain = try ContentCoding.decode(zipped.body, coding: .gzip)
            #expect(String(buffer: plain).contains("long note"))
            #expect(zipped.body.readableBytes < plain.readableBytes)
            let etag = try #require(zipped.firstValue(.sipETag))

            // RFC 5839: a refresh saying it has this state gets a NOTIFY without body.
            #expect(try await Self.subscribe(bob, to: "alice", cseq: 2, callID: callID, toTag: toTag,
                                             extra: ["Suppress-If-Match: \(etag)"]).statusCode == 200)
            let suppressed = try await Self.notify(bob)
            #expect(suppressed.body.readableBytes == 0 && suppressed.firstValue(.sipETag) == etag)
            #expect(try await Self.subscribe(bob, to: "alice", cseq: 3, callID: "no-such-dialog", toTag: toTag).statusCode == 481)

            // Unsubscribe.
            #expect(try await Self.subscribe(bob, to: "alice", expires: 0, cseq: 4, callID: callID, toTag: toTag).statusCode == 200)
            #expect(try await Self.notify(bob).firstValue(.subscriptionState) == "terminated;reason=timeout")
            #expect(presence.subscriptionCount == 0)
            for agent in [alice, bob] { await agent.client.close() }
        }
    }

    @Test func aWatcherThatTakesPartialStateGetsFullStateThenDiffs() async throws {
        try await Self.withPresence { server, _ in
            let phone = try await Agent.connect(server, user: "alice")
            let desk = try await Agent.connect(server, user: "alice")
            var phoneTag = try #require(try await Self.publish(phone, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "phone", note: "hi"),
                                                               cseq: 1).firstValue(.sipETag))
            let bob = try await Agent.connect(server, user: "bob")
            let callID = SIPIdentifiers.callID()
            let accepted = try await Self.subscribe(bob, to: "alice", callID: callID,
                                                    extra: ["Accept: application/pidf+xml, application/pidf-diff+xml"])
            let toTag = try #require(try accepted.to()?.tag)
            let full = try await Self.notify(bob)
            #expect(full.firstValue(.contentType) == "application/pidf-diff+xml")
            let fullText = String(buffer: full.body)
            #expect(fullText.contains(":pidf-full") && fullText.contains("version=\"0\"") && fullText.contains("<tuple id=\"phone\">"))

            // A changed tuple is replaced, a new one added, a gone one removed; the version counts up.
            phoneTag = try #require(try await Self.publish(phone, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "phone", note: "busy"),
                                                           ifMatch: phoneTag, cseq: 2).firstValue(.sipETag))
            let replaced = String(buffer: try await Self.notify(bob).body)
            #expect(replaced.contains(":pidf-diff") && replaced.contains("version=\"1\""))
            #expect(replaced.contains(":replace sel=\"*/tuple[@id='phone']\"") && replaced.contains("busy") && !replaced.contains(":add"))
            let deskTag = try #require(try await Self.publish(desk, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "desk"),
                                                              cseq: 1).firstValue(.sipETag))
            let added = String(buffer: try await Self.notify(bob).body)
            #expect(added.contains(":add sel=\"presence\"><tuple id=\"desk\">") && added.contains("version=\"2\""))
            #expect(try await Self.publish(desk, "alice", body: nil, ifMatch: deskTag, expires: 0, cseq: 2).statusCode == 200)
            let removed = String(buffer: try await Self.notify(bob).body)
            #expect(removed.contains(":remove sel=\"*/tuple[@id='desk']\"/>") && removed.contains("version=\"3\""))
            #expect(removed.utf8.count < fullText.utf8.count, "a diff is smaller than the full state")

            // A refresh brings the full state again.
            #expect(try await Self.subscribe(bob, to: "alice", cseq: 2, callID: callID, toTag: toTag).statusCode == 200)
            #expect(String(buffer: try await Self.notify(bob).body).contains(":pidf-full"))
            for agent in [phone, desk, bob] { await agent.client.close() }
        }
    }

    @Test func rapidChangesReachAThrottledWatcherCoalescedEndingInTheLatest() async throws {
        let interval = TimeAmount.milliseconds(400)
        try await Self.withPresence(PresenceService.Configuration(minNotifyInterval: interval, basicStatusIsCritical: false)) { server, _ in
            let alice = try await Agent.connect(server, user: "alice")
            var tag = try #require(try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: "n0"),
                                                          cseq: 1).firstValue(.sipETag))
            let bob = try await Agent.connect(server, user: "bob")
            try await Self.expectSubscribed(bob, to: "alice")
            _ = try await Self.notify(bob)
            let started = ContinuousClock.now
            for change in 1...100 {
                let answer = try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: "n\(change)"),
                                                    ifMatch: tag, cseq: change + 1)
                tag = try #require(answer.firstValue(.sipETag))
            }
            let publishing = ContinuousClock.now - started
            var received: [String] = []
            while received.last?.contains("<note>n100</note>") != true {
                received.append(String(buffer: try await Self.notify(bob, timeout: .seconds(3)).body))
            }
            // At most one NOTIFY per interval while the changes went on, plus the one that closes it.
            let allowed = Int(publishing / .milliseconds(400)) + 2
            #expect(received.count <= allowed, "\(received.count) NOTIFYs for 100 changes in \(publishing)")
            #expect(received.count < 100)
            let late = await bob.somethingNew(within: .milliseconds(600))
            #expect(late == nil, "nothing after the latest state, got: \(late?.serializedString ?? "")")
            for agent in [alice, bob] { await agent.client.close() }
        }
    }

    @Test func aWatcherThatStopsAnsweringIsRetriedThenDropped() async throws {
        let configuration = PresenceService.Configuration(minNotifyInterval: .zero, notifyRetries: 1, notifyRetryDelay: .milliseconds(100))
        try await Self.withPresence(configuration, timers: TransactionTimers(t1: .milliseconds(20), t2: .milliseconds(80))) { server, presence in
            let alice = try await Agent.connect(server, user: "alice")
            #expect(try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1"), cseq: 1).statusCode == 200)
            let bob = try await Agent.connect(server, user: "bob")
            try await Self.expectSubscribed(bob, to: "alice")
            // Bob never answers: Timer F ends the first NOTIFY, one retry with a new CSeq, then the subscription goes.
            let first = try await Self.notify(bob, answer: 0)
            var cseqs: Set<UInt32> = [try #require(try first.cseq()?.sequence)]
            for parked in bob.parked where parked.method == .notify {
                if let cseq = try? parked.cseq()?.sequence { cseqs.insert(cseq) }
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while presence.subscriptionCount > 0, ContinuousClock.now < deadline {
                if let message = await bob.client.receiveIfAny(timeout: .milliseconds(100)), message.method == .notify,
                   let cseq = try? message.cseq()?.sequence {
                    cseqs.insert(cseq)
                }
            }
            #expect(presence.subscriptionCount == 0, "dropped after the retry failed too")
            #expect(cseqs.count == 2, "the state was sent again once before giving up")
            for agent in [alice, bob] { await agent.client.close() }
        }
    }

    @Test func aNotifyAnswered481EndsTheSubscription() async throws {
        try await Self.withPresence { server, presence in
            let alice = try await Agent.connect(server, user: "alice")
            let bob = try await Agent.connect(server, user: "bob")
            try await Self.expectSubscribed(bob, to: "alice")
            _ = try await Self.notify(bob, answer: 481)
            // Polled, not a fixed wait: a loaded full run once needed longer than 200 ms to read the 481.
            let deadline = ContinuousClock.now + .seconds(5)
            while presence.subscriptionCount > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(presence.subscriptionCount == 0)
            #expect(try await Self.publish(alice, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1"), cseq: 1).statusCode == 200)
            // Nothing new: at most a retransmission of the NOTIFY that was refused (our 481 was slow).
            await #expect(throws: (any Error).self) { try await bob.next(.notify, timeout: .milliseconds(400)) }
            for agent in [alice, bob] { await agent.client.close() }
        }
    }

    @Test func registrationAloneMakesAUserOpen() async throws {
        try await Self.withPresence { server, _ in
            let bob = try await Agent.connect(server, user: "bob")
            #expect(try await Self.subscribe(bob, to: "carol", callID: SIPIdentifiers.callID()).statusCode == 200)
            #expect(String(buffer: try await Self.notify(bob).body).contains("<basic>closed</basic>"))
            let carol = try await Agent.connect(server, user: "carol")
            #expect(try await carol.register().statusCode == 200)
            let open = String(buffer: try await Self.notify(bob).body)
            #expect(open.contains("<basic>open</basic>") && open.contains("sip:carol@127.0.0.1"))
            for agent in [bob, carol] { await agent.client.close() }
        }
    }

    enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case sqlite, mongodb
        var testDescription: String { rawValue }
    }

    static var kinds: [StoreKind] { TestServices.mongoEnabled ? [.sqlite, .mongodb] : [.sqlite] }

    @Test(arguments: kinds)
    func aRestartKeepsPublicationsSubscriptionsAndDecisions(_ kind: StoreKind) async throws {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .critical
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-presence-\(UUID().uuidString).sqlite").path
        let database = kind == .mongodb ? try TestServices.mongoDatabase() : nil
        func open() async throws -> (any PresenceStore, @Sendable () async -> Void) {
            if let database {
                let store = MongoPresenceStore(database: database, loop: MultiThreadedEventLoopGroup.singleton.next(), logger: logger)
                try await store.prepare()
                return (store, {})
            }
            let store = try await SQLitePresenceStore.open(path: path, logger: logger, group: MultiThreadedEventLoopGroup.singleton)
            return (store, { await store.close() })
        }
        let alice = NIOLockedValueBox<Agent?>(nil)
        let bob = NIOLockedValueBox<Agent?>(nil)
        let (first, closeFirst) = try await open()
        let (port, callID, lastCSeq) = try await Self.withPresence(store: first) { server, presence in
            let publisher = try await Agent.connect(server, user: "alice")
            #expect(try await Self.publish(publisher, "alice", body: Self.pidf("sip:alice@tern.test", tuple: "t1", note: "before"),
                                           cseq: 1).statusCode == 200)
            let watcher = try await Agent.connect(server, user: "bob")
            let callID = SIPIdentifiers.callID()
            #expect(try await Self.subscribe(watcher, to: "alice", callID: callID).statusCode == 200)
            let notify = try await Self.notify(watcher)
            presence.authorize(presentity: "sip:alice@tern.test", watcher: "sip:carol@tern.test", .blocked)
            try await presence.flush()
            alice.withLockedValue { $0 = publisher }
            bob.withLockedValue { $0 = watcher }
            return (server.port(.udp), callID, try notify.cseq()?.sequence ?? 0)
        }
        await closeFirst()
        let (second, closeSecond) = try await open()
        try await Self.withPresence(store: second, udpPort: port) { server, presence in
            #expect(presence.state(of: "sip:alice@tern.test")?.contains("before") == true)
            #expect(presence.subscriptionCount == 1)
            let watcher = try #require(bob.withLockedValue { $0 })
            let publisher = try #require(alice.withLockedValue { $0 })
            // The dialog goes on: a change reaches bob in the same dialog, with a higher CSeq.
            presence.publish(presentity: "sip:alice@tern.test",
                             document: try PIDFDocument(parsing: Array(Self.pidf("sip:alice@tern.test", tuple: "t2", note: "after").utf8)),
                             expires: 60)
            let notify = try await Self.notify(watcher)
            #expect(notify.callID == callID)
            #expect(try (notify.cseq()?.sequence ?? 0) > lastCSeq)
            let body = String(buffer: notify.body)
            #expect(body.contains("before") && body.contains("after"))
            let carol = try await Agent.connect(server, user: "carol")
            #expect(try await Self.subscribe(carol, to: "alice", callID: SIPIdentifiers.callID()).statusCode == 403, "the block survived")
            for agent in [publisher, watcher, carol] { await agent.client.close() }
        }
        await closeSecond()
        if let database {
            _ = try? await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
            await database.shutdown()
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }
}
