import CoreProxy
import Foundation
import Logging
import MongoSupport
import NIOCore
import NIOPosix
import SIP
import Testing

/// The MongoDB stores against a real MongoDB-wire server (started by `scripts/services.sh`):
/// the BSON layer, the shared location table and digest credentials.
@Suite(.enabled(if: TestServices.mongoEnabled, "needs TERN_TEST_MONGODB_URI (make test starts the server)"),
       .timeLimit(.minutes(1)))
struct MongoStoreEndToEndTests {
    static var logger: Logger {
        var logger = Logger(label: "tern.test")
        logger.logLevel = .critical
        return logger
    }

    static func store(_ database: MongoDatabase, node: String) async throws -> MongoBindingStore {
        let store = MongoBindingStore(database: database, node: node, loop: MultiThreadedEventLoopGroup.singleton.next(),
                                      logger: logger)
        try await store.prepare()
        return store
    }

    static func binding(aor: String = "sip:alice@tern.test", contact: String = "sip:alice@192.0.2.7:5070",
                        expiresIn seconds: Int64 = 600) throws -> Binding {
        let source = try SocketAddress(ipAddress: "198.51.100.4", port: 40_123)
        var binding = Binding(aor: aor, contact: try SIPURI(parsing: contact),
                              contactParameters: try SIPAddress(parsing: "<sip:x>;q=0.7;+sip.instance=\"<urn:uuid:1>\";reg-id=1").parameters,
                              expiresAt: SystemLocationClock().nowMilliseconds() + seconds * 1000, callID: "call-1", cseq: 42,
                              transport: .udp, flow: .datagram(listener: ListenerID(3), remote: source), source: source)
        binding.instanceID = "urn:uuid:1"
        binding.regID = 1
        binding.path = ["<sip:edge.tern.test;lr>"]
        binding.temporaryGRUUs = ["tgruu.1"]
        binding.userAgent = "Phone/1.0 (ünïcode)"
        binding.isBehindNAT = true
        return binding
    }

    // MARK: - BSON and the client

    @Test func everyBSONTypeRoundTripsThroughTheServer() async throws {
        let database = try TestServices.mongoDatabase()
        let document: BSONDocument = [
            "_id": .string("one"), "text": .string("héllo\u{0}world"), "small": .int32(-7), "large": .int64(1 << 40),
            "real": .double(2.5), "flag": .bool(true), "when": .date(1_790_000_000_123), "nothing": .null,
            "nested": .document(["a": .array([.int32(1), .string("two"), .document(["b": .bool(false)])])]),
            "bytes": .binary([0, 1, 2, 255]), "oid": .objectID("0123456789abcdef01234567"),
        ]
        let found = try await database.perform { session -> [BSONDocument] in
            try session.insert("things", document)
            return try session.find("things", filter: ["_id": .string("one")])
        }
        #expect(found == [document])

        // A duplicate key is the server's error 11000; bulk writes report their counts.
        let duplicate = try await database.perform { session -> Bool in
            do { try session.insert("things", document); return false } catch let error as MongoError { return error.isDuplicateKey }
        }
        #expect(duplicate)
        let counts = try await database.perform { session in
            try session.bulkWrite("things", [
                .insert(["_id": .string("two"), "n": .int32(2)]),
                .replaceOne(filter: ["_id": .string("three")], replacement: ["n": .int32(3)], upsert: true),
                .updateOne(filter: ["_id": .string("two")], update: ["$inc": .document(["n": .int32(10)])], upsert: false),
                .deleteOne(filter: ["_id": .string("one")]),
            ])
        }
        #expect(counts["nInserted"]?.int64 == 1 && counts["nUpserted"]?.int64 == 1)
        #expect(counts["nModified"]?.int64 == 1 && counts["nRemoved"]?.int64 == 1)
        let sorted = try await database.perform { session in
            try session.find("things", sort: ["n": .int32(-1)], projection: ["n": .int32(1)])
        }
        #expect(sorted.map { $0["n"]?.int64 } == [12, 3])
        #expect(try await database.perform { try $0.count("things") } == 2)
        try await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
        await database.shutdown()
    }

    @Test func unreachableServerIsAnErrorNotAHang() async throws {
        let database = try MongoDatabase(uri: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
                                         database: "none", threads: 1, logger: Self.logger)
        let started = ContinuousClock.now
        await #expect(throws: MongoError.self) { try await database.ping() }
        #expect(ContinuousClock.now - started < .seconds(5))
        await database.shutdown()
    }

    @Test func callsBeyondTheQueueFailAtOnce() async throws {
        // A server that is down keeps the one admitted call waiting for its selection timeout.
        let database = try MongoDatabase(uri: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
                                         database: "none", threads: 1, maxQueued: 1, logger: Self.logger)
        let waiting = Task { try await database.ping() }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        do {
            try await database.ping()
            Issue.record("a call beyond the queue was admitted")
        } catch let error as MongoError {
            #expect(error.message.hasPrefix("MongoDB queue full"))
        }
        #expect(ContinuousClock.now - started < .milliseconds(300), "refused without waiting for the server")
        _ = try? await waiting.value
        await database.shutdown()
    }

    // MARK: - Location

    @Test func bindingStoreRestoresItsOwnBindingsAndSharesThemWithOtherNodes() async throws {
        let database = try TestServices.mongoDatabase()
        let nodeA = try await Self.store(database, node: "node-a")
        let nodeB = try await Self.store(database, node: "node-b")
        let original = try Self.binding()
        nodeA.save(original)
        nodeA.save(try Self.binding(aor: "sip:lapsed@tern.test", expiresIn: -5))
        try await nodeA.flush()

        let now = SystemLocationClock().nowMilliseconds()
        let restored = try await nodeA.loadAll(validAt: now)
        #expect(restored.count == 1, "only unexpired bindings come back")
        let back = try #require(restored.first)
        #expect(back.aor == original.aor && back.key == original.key && back.contact == original.contact)
        #expect(back.expiresAt == original.expiresAt && back.callID == "call-1" && back.cseq == 42)
        #expect(back.q == 0.7 && back.instanceID == "urn:uuid:1" && back.regID == 1)
        #expect(back.path == original.path && back.temporaryGRUUs == ["tgruu.1"] && back.userAgent == original.userAgent)
        #expect(back.isBehindNAT && back.source == original.source && back.flow == original.flow)

        // Another node restores none of them, but finds them by AOR, without this node's flow.
        #expect(try await nodeB.loadAll(validAt: now).isEmpty)
        let seen = try await nodeB.bindings(for: original.aor, validAt: now, on: MultiThreadedEventLoopGroup.singleton.next()).get()
        #expect(seen.count == 1 && seen.first?.flow == nil && seen.first?.source == original.source)
        #expect(try await nodeA.bindings(for: original.aor, validAt: now, on: MultiThreadedEventLoopGroup.singleton.next()).get().isEmpty,
                "a node's own bindings are in its memory, not looked up")

        // A node removes only what it owns: a device that moved keeps its newer document.
        nodeB.delete(aor: original.aor, key: original.key)
        try await nodeB.flush()
        #expect(try await nodeA.loadAll(validAt: now).count == 1)
        nodeA.delete(aor: original.aor, key: original.key)
        try await nodeA.flush()
        #expect(try await nodeA.loadAll(validAt: now).isEmpty)

        // Lapsed documents are the server's to remove (TTL index on expires_at).
        let indexes = try await database.perform { try $0.command(["listIndexes": .string(MongoBindingStore.collection)]) }
        let batch = indexes["cursor"]?.document?["firstBatch"]?.array ?? []
        #expect(batch.contains { $0.document?["expireAfterSeconds"]?.int64 == 0 && $0.document?["name"]?.string == "expires_at_ttl" })
        try await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
        await database.shutdown()
    }

    @Test func twoNodesShareOneLocationTable() async throws {
        let database = try TestServices.mongoDatabase()
        let storeA = try await Self.store(database, node: "node-a")
        let storeB = try await Self.store(database, node: "node-b")
        try await withTestServer(bindingStore: storeA) { nodeA in
            try await withTestServer(bindingStore: storeB) { nodeB in
                typealias Agent = ProxyEndToEndTests.Agent
                let bob = try await Agent.connect(nodeA, user: "bob")
                #expect(try await bob.register().statusCode == 200)
                // Carol's phone sits behind NAT: its Contact is private, only its source address reaches it.
                let carol = try await Agent.connect(nodeA, user: "carol")
                carol.cseq += 1
                try await carol.client.send(
                    "REGISTER sip:tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=\(SIPIdentifiers.branch());rport\r\n"
                    + "Max-Forwards: 70\r\nFrom: <sip:carol@tern.test>;tag=c1\r\nTo: <sip:carol@tern.test>\r\nCall-ID: reg-carol\r\n"
                    + "CSeq: 1 REGISTER\r\nContact: <sip:carol@10.0.0.5:5060>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
                #expect(try await carol.next().statusCode == 200)
                try await storeA.flush()

                let alice = try await Agent.connect(nodeB, user: "alice")
                for callee in [bob, carol] {
                    let callID = SIPIdentifiers.callID()
                    try await alice.send("MESSAGE", to: "sip:\(callee.user)@tern.test", callID: callID, body: "hi \(callee.user)")
                    let delivered = try await callee.next(.message)
                    #expect(delivered.callID == callID)
                    #expect(String(buffer: delivered.body) == "hi \(callee.user)")
                    #expect(try delivered.vias().first?.port == nodeB.port(.udp), "node B forwarded it")
                    try await callee.answer(delivered, 200)
                    #expect(try await alice.next().statusCode == 200)
                }
                try await alice.send("MESSAGE", to: "sip:nobody@tern.test", callID: SIPIdentifiers.callID(), body: "x")
                #expect(try await alice.next().statusCode == 404)
                #expect(nodeB.server.location.bindingCount == 0, "node B reads the shared table, it does not copy it")
                for agent in [alice, bob, carol] { await agent.client.close() }
            }
        }
        try await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
        await database.shutdown()
    }

    @Test func restartKeepsBindingsInMongoDB() async throws {
        let database = try TestServices.mongoDatabase()
        // The binding's remaining time is 600 s less what passed since it was made (more than ten
        // seconds when the whole suite runs on two cores).
        let registering = ContinuousClock.now
        try await withTestServer(bindingStore: try await Self.store(database, node: "node-a")) { server in
            let phone = RegistrarEndToEndTests.Phone(try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp)))
            #expect(try await phone.register(contact: phone.contact(";+sip.instance=\"<urn:uuid:7>\""), expires: 600).statusCode == 200)
            #expect(try await phone.register(contact: "<sip:alice@192.0.2.9>", expires: 600).statusCode == 200)
            #expect(try await phone.register(contact: "<sip:alice@192.0.2.9>;expires=0").statusCode == 200)
            await phone.client.close()
        }
        try await withTestServer(bindingStore: try await Self.store(database, node: "node-a")) { server in
            let alice = server.server.location.bindings(for: "sip:alice@tern.test")
            #expect(alice.count == 1)
            #expect(alice.first?.instanceID == "urn:uuid:7")
            let passed = Int((ContinuousClock.now - registering).components.seconds) + 1
            #expect((600 - passed...600).contains(alice.first?.remainingSeconds(at: server.server.location.clock.nowMilliseconds()) ?? 0))
            guard case .datagram = alice.first?.flow else {
                Issue.record("a UDP binding keeps its flow across a restart")
                return
            }
        }
        try await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
        await database.shutdown()
    }

    // MARK: - Credentials

    @Test func digestAgainstCredentialsInMongoDB() async throws {
        let database = try TestServices.mongoDatabase()
        let store = MongoCredentialStore(database: database, logger: Self.logger)
        try await store.prepare()
        let realm = AuthenticationEndToEndTests.realm
        try await store.setCredentials(user: "alice", realm: realm,
                                       FileCredentialStore.credentials(user: "alice", realm: realm, password: "wonderland"))
        let auth = AuthenticationEndToEndTests()
        try await withTestServer(authentication: AuthenticationEndToEndTests.authentication(), credentials: store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            for (round, algorithm) in ["MD5", "SHA-256"].enumerated() {
                let base = round * 3
                let challenge = try await auth.register(phone, user: "alice", cseq: base + 1)
                #expect(challenge.statusCode == 401)
                var digest = AuthenticationEndToEndTests.DigestClient(user: "alice", password: "wonderland")
                digest.take(try #require(try challenge.challenges(.wwwAuthenticate).first { $0["algorithm"] == algorithm }))
                let accepted = try await auth.register(phone, user: "alice", cseq: base + 2,
                                                       authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
                #expect(accepted.statusCode == 200, "\(algorithm)")
                let wrong = try await auth.register(phone, user: "alice", cseq: base + 3,
                                                    authorization: digest.header(method: "REGISTER", uri: "sip:tern.test", password: "guess"))
                #expect(wrong.statusCode == 401)
            }
            // A user the store does not have is challenged again, like a wrong password.
            let stranger = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let challenge = try await auth.register(stranger, user: "mallory", cseq: 1)
            var digest = AuthenticationEndToEndTests.DigestClient(user: "mallory", password: "x")
            digest.take(try #require(try challenge.challenges(.wwwAuthenticate).first))
            #expect(try await auth.register(stranger, user: "mallory", cseq: 2,
                                            authorization: digest.header(method: "REGISTER", uri: "sip:tern.test")).statusCode == 401)
            await stranger.close()
            await phone.close()
        }
        try await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
        await database.shutdown()
    }

    @Test func credentialStoreDownGets503WithRetryAfter() async throws {
        let database = try MongoDatabase(uri: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
                                         database: "none", threads: 1, logger: Self.logger)
        let store = MongoCredentialStore(database: database, logger: Self.logger)
        let auth = AuthenticationEndToEndTests()
        try await withTestServer(authentication: AuthenticationEndToEndTests.authentication(), credentials: store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let challenge = try await auth.register(phone, user: "alice", cseq: 1)
            #expect(challenge.statusCode == 401, "a challenge needs no credentials")
            var digest = AuthenticationEndToEndTests.DigestClient(user: "alice", password: "wonderland")
            digest.take(try #require(try challenge.challenges(.wwwAuthenticate).first))
            let refused = try await auth.register(phone, user: "alice", cseq: 2,
                                                  authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
            #expect(refused.statusCode == 503)
            #expect(refused.firstValue(.retryAfter) == "5")
            await phone.close()
        }
        await database.shutdown()
    }
}
