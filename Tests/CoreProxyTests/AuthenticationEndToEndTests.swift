import CoreProxy
import NIOCore
import SIP
import Testing

/// Digest authentication over real sockets (RFC 3261 §22, RFC 7616).
@Suite(.timeLimit(.minutes(1)))
struct AuthenticationEndToEndTests {
    static let realm = "tern.test"
    static let store = FileCredentialStore(entries: [
        ("alice", realm, FileCredentialStore.credentials(user: "alice", realm: realm, password: "wonderland")),
        ("bob", realm, FileCredentialStore.credentials(user: "bob", realm: realm, password: "builder")),
    ])

    /// What a phone computes from a challenge (RFC 7616 §3.4.1).
    struct DigestClient {
        let user: String
        let password: String
        var nonce = ""
        var algorithm = "MD5"
        var nonceCount = 0

        mutating func take(_ challenge: SIPAuthValue) {
            nonce = challenge["nonce"] ?? ""
            algorithm = challenge["algorithm"] ?? "MD5"
            nonceCount = 0
        }

        mutating func header(method: String, uri: String, password override: String? = nil, upperCase: Bool = false) -> String {
            nonceCount += 1
            let kind: Hashing.Algorithm = algorithm == "SHA-256" ? .sha256 : .md5
            let nc = String(format8(nonceCount))
            let cnonce = "c0ffee"
            let ha1 = Hashing.hex(kind, "\(user):\(AuthenticationEndToEndTests.realm):\(override ?? password)")
            let ha2 = Hashing.hex(kind, "\(method):\(uri)")
            let hex = Hashing.hex(kind, "\(ha1):\(nonce):\(nc):\(cnonce):auth:\(ha2)")
            let response = upperCase ? hex.uppercased() : hex
            return "Digest username=\"\(user)\", realm=\"\(AuthenticationEndToEndTests.realm)\", nonce=\"\(nonce)\", "
                + "uri=\"\(uri)\", response=\"\(response)\", algorithm=\(algorithm), qop=auth, nc=\(nc), cnonce=\"\(cnonce)\""
        }

        private func format8(_ value: Int) -> String {
            let hex = String(value, radix: 16)
            return String(repeating: "0", count: 8 - hex.count) + hex
        }
    }

    static func authentication(lifetime: Int64 = 300, trustTLS: Bool = false) -> DigestAuthenticator.Configuration {
        DigestAuthenticator.Configuration(nonceLifetimeSeconds: lifetime, trustTLSConnections: trustTLS, maxFailuresPerMinute: 3)
    }

    func register(_ client: TestSIPClient, user: String, cseq: Int, authorization: String? = nil) async throws -> SIPMessage {
        var headers = ["Contact: <sip:\(user)@127.0.0.1:\(client.channel.localAddress?.port ?? 0)>", "Expires: 600"]
        if let authorization { headers.append("Authorization: \(authorization)") }
        let text = sipRequest("REGISTER", uri: "sip:tern.test", transport: client.transport.viaToken, callID: "auth-\(user)",
                              cseq: cseq, extraHeaders: headers)
            .replacingOccurrences(of: "<sip:bob@tern.test>", with: "<sip:\(user)@tern.test>")
            .replacingOccurrences(of: "<sip:alice@tern.test>", with: "<sip:\(user)@tern.test>")
        try await client.send(text)
        return try await client.receive()
    }

    @Test(arguments: ["MD5", "SHA-256"])
    func registerIsChallengedThenAccepted(_ algorithm: String) async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let challenge = try await register(phone, user: "alice", cseq: 1)
            #expect(challenge.statusCode == 401)
            let offered = try challenge.challenges(.wwwAuthenticate)
            #expect(offered.map { $0["algorithm"] } == ["SHA-256", "MD5"], "both offered, stronger first")
            #expect(offered.first?["qop"] == "auth" && offered.first?["realm"] == Self.realm)
            var digest = DigestClient(user: "alice", password: "wonderland")
            digest.take(try #require(offered.first { $0["algorithm"] == algorithm }))
            let accepted = try await register(phone, user: "alice", cseq: 2,
                                              authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
            #expect(accepted.statusCode == 200)
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").count == 1)
            await phone.close()
        }
    }

    /// The response is hex; one written in upper case is the same response (compared digit by digit
    /// with the expected digest, case folded), and a wrong one in upper case is still wrong.
    @Test func upperCaseResponseIsAcceptedAndAWrongOneIsNot() async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            let challenge = try await register(phone, user: "alice", cseq: 1)
            var digest = DigestClient(user: "alice", password: "wonderland")
            digest.take(try #require(try challenge.challenges(.wwwAuthenticate).first { $0["algorithm"] == "MD5" }))
            let wrong = try await register(phone, user: "alice", cseq: 2,
                                           authorization: digest.header(method: "REGISTER", uri: "sip:tern.test",
                                                                        password: "looking-glass", upperCase: true))
            #expect(wrong.statusCode == 401)
            digest.take(try #require(try wrong.challenges(.wwwAuthenticate).first { $0["algorithm"] == "MD5" }))
            let accepted = try await register(phone, user: "alice", cseq: 3,
                                              authorization: digest.header(method: "REGISTER", uri: "sip:tern.test", upperCase: true))
            #expect(accepted.statusCode == 200)
            await phone.close()
        }
    }

    @Test func wrongPasswordIsChallengedAgainThenRateLimited() async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            var digest = DigestClient(user: "alice", password: "guess")
            var cseq = 1
            var last = try await register(phone, user: "alice", cseq: cseq)
            for _ in 0..<3 {
                digest.take(try #require(try last.challenges(.wwwAuthenticate).last))
                cseq += 1
                last = try await register(phone, user: "alice", cseq: cseq,
                                          authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
                #expect(last.statusCode == 401)
            }
            cseq += 1
            let limited = try await register(phone, user: "alice", cseq: cseq)
            #expect(limited.statusCode == 403)
            #expect(limited.reasonPhrase == "Too Many Failed Authentications")
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").isEmpty)
            await phone.close()
        }
    }

    @Test func nonceReuseWithRisingCountSavesRoundTrips() async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            var digest = DigestClient(user: "alice", password: "wonderland")
            var roundTrips = 0
            let first = try await register(phone, user: "alice", cseq: 1)
            roundTrips += 1
            digest.take(try #require(try first.challenges(.wwwAuthenticate).last))
            #expect(try await register(phone, user: "alice", cseq: 2,
                                       authorization: digest.header(method: "REGISTER", uri: "sip:tern.test")).statusCode == 200)
            roundTrips += 1
            // The phone wakes up later and refreshes with the same nonce and nc=2: no new challenge.
            #expect(try await register(phone, user: "alice", cseq: 3,
                                       authorization: digest.header(method: "REGISTER", uri: "sip:tern.test")).statusCode == 200)
            roundTrips += 1
            #expect(roundTrips == 3, "a fresh challenge each time would have taken 4")
            // Replaying nc=2 is refused with a stale challenge (the password was right).
            digest.nonceCount = 1
            let replay = try await register(phone, user: "alice", cseq: 4,
                                            authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
            #expect(replay.statusCode == 401)
            #expect(try replay.challenges(.wwwAuthenticate).first?["stale"] == "true")
            await phone.close()
        }
    }

    /// REGISTER is answered without a transaction by default: a retransmission (its 200 OK was
    /// lost) reaches the authenticator again with the same nonce-count. It is the same request
    /// (Call-ID, CSeq, branch), so it is accepted, not met with a stale challenge that would cost
    /// the phone a round trip; the same count on another request is still a replay.
    @Test func retransmittedAuthenticatedRegisterIsNotAReplay() async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            var digest = DigestClient(user: "alice", password: "wonderland")
            digest.take(try #require(try await register(phone, user: "alice", cseq: 1).challenges(.wwwAuthenticate).last))
            let authorization = digest.header(method: "REGISTER", uri: "sip:tern.test")
            let text = sipRequest("REGISTER", uri: "sip:tern.test", callID: "auth-alice", cseq: 2,
                                  extraHeaders: ["Contact: <sip:alice@127.0.0.1:\(phone.channel.localAddress?.port ?? 0)>",
                                                 "Expires: 600", "Authorization: \(authorization)"])
                .replacingOccurrences(of: "<sip:bob@tern.test>", with: "<sip:alice@tern.test>")
            try await phone.send(text)
            let first = try await phone.receive()
            #expect(first.statusCode == 200)
            try await phone.send(text)
            let again = try await phone.receive()
            #expect(again.statusCode == 200, "a retransmission, not a replay")
            #expect((try again.to()?.tag) == (try first.to()?.tag))
            #expect(server.server.location.bindings(for: "sip:alice@tern.test").count == 1)
            // The same nonce-count on a new request (another branch) is a replay: stale.
            let replay = try await register(phone, user: "alice", cseq: 3, authorization: authorization)
            #expect(replay.statusCode == 401)
            #expect(try replay.challenges(.wwwAuthenticate).first?["stale"] == "true")
            await phone.close()
        }
    }

    @Test func expiredNonceGetsStaleChallenge() async throws {
        try await withTestServer(authentication: Self.authentication(lifetime: 1), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            var digest = DigestClient(user: "alice", password: "wonderland")
            digest.take(try #require(try await register(phone, user: "alice", cseq: 1).challenges(.wwwAuthenticate).last))
            try await Task.sleep(for: .milliseconds(2_100))
            let stale = try await register(phone, user: "alice", cseq: 2,
                                           authorization: digest.header(method: "REGISTER", uri: "sip:tern.test"))
            #expect(stale.statusCode == 401)
            #expect(try stale.challenges(.wwwAuthenticate).first?["stale"] == "true")
            await phone.close()
        }
    }

    @Test func proxiedRequestsFromLocalUsersGet407AndIdentityMustMatch() async throws {
        try await withTestServer(authentication: Self.authentication(), credentials: Self.store) { server in
            let phone = try await TestSIPClient.connect(.udp, host: "127.0.0.1", port: server.port(.udp))
            try await phone.send(sipRequest("MESSAGE", uri: "sip:bob@tern.test", body: "hi"))
            let challenge = try await phone.receive()
            #expect(challenge.statusCode == 407)
            #expect(try challenge.challenges(.proxyAuthenticate).count == 2)
            // bob's password, but the From says alice: refused.
            var digest = DigestClient(user: "bob", password: "builder")
            digest.take(try #require(try challenge.challenges(.proxyAuthenticate).last))
            try await phone.send(sipRequest("MESSAGE", uri: "sip:bob@tern.test", cseq: 2,
                                            extraHeaders: ["Proxy-Authorization: " + digest.header(method: "MESSAGE", uri: "sip:bob@tern.test")],
                                            body: "hi"))
            #expect(try await phone.receive().statusCode == 403)
            await phone.close()
        }
    }

    @Test func tlsConnectionTrustSkipsChallenges() async throws {
        let listeners = [ListenerSpec(transport: .tls, host: "127.0.0.1", port: 0)]
        try await withTestServer(listeners: listeners, tls: true, authentication: Self.authentication(trustTLS: true),
                                 credentials: Self.store) { server in
            let port = server.port(.tls)
            let bob = try await TestSIPClient.connect(.tls, host: "127.0.0.1", port: port)
            _ = try await register(bob, user: "bob", cseq: 1)  // challenged; bob does not complete it
            let alice = try await TestSIPClient.connect(.tls, host: "127.0.0.1", port: port)
            var digest = DigestClient(user: "alice", password: "wonderland")
            var sentBytes = 0
            var roundTrips = 0
            func send(_ text: String) async throws -> SIPMessage {
                sentBytes += text.utf8.count
                roundTrips += 1
                try await alice.send(text)
                return try await alice.receive()
            }
            let challenge = try await send(sipRequest("MESSAGE", uri: "sip:alice@tern.test", transport: "TLS", callID: "t1", body: "x"))
            #expect(challenge.statusCode == 407)
            digest.take(try #require(try challenge.challenges(.proxyAuthenticate).last))
            let authorization = "Proxy-Authorization: " + digest.header(method: "MESSAGE", uri: "sip:alice@tern.test")
            let first = try await send(sipRequest("MESSAGE", uri: "sip:alice@tern.test", transport: "TLS", callID: "t1", cseq: 2,
                                                  extraHeaders: [authorization], body: "x"))
            #expect(first.statusCode == 404, "authenticated; nobody is registered as alice")
            let before = (bytes: sentBytes, trips: roundTrips)
            // Five more requests on the trusted connection: no credentials, no challenge.
            for index in 0..<5 {
                let response = try await send(sipRequest("MESSAGE", uri: "sip:alice@tern.test", transport: "TLS",
                                                         callID: "t-\(index)", body: "x"))
                #expect(response.statusCode == 404)
            }
            let trustedTrips = roundTrips - before.trips
            let trustedBytes = sentBytes - before.bytes
            #expect(trustedTrips == 5, "one round trip per request")
            // The same five requests would otherwise each carry credentials (or take a challenge first).
            let withCredentials = 5 * (sipRequest("MESSAGE", uri: "sip:alice@tern.test", transport: "TLS", callID: "t-0",
                                                  extraHeaders: [authorization], body: "x").utf8.count)
            print("TLS trust: 5 requests, \(trustedTrips) round trips (10 with challenges), \(trustedBytes) bytes sent "
                  + "(\(withCredentials) with credentials reused, \(withCredentials - trustedBytes) saved)")
            #expect(withCredentials - trustedBytes > 5 * 200)
            // Another connection is not trusted.
            let other = try await TestSIPClient.connect(.tls, host: "127.0.0.1", port: port)
            try await other.send(sipRequest("MESSAGE", uri: "sip:alice@tern.test", transport: "TLS", callID: "t-other", body: "x"))
            #expect(try await other.receive().statusCode == 407)
            await other.close()
            await alice.close()
            await bob.close()
        }
    }
}

/// The HA1 credentials file as operators write it, Windows line endings included.
@Suite struct CredentialsFileTests {
    @Test func linesCommentsAndCRLF() throws {
        let md5 = String(repeating: "a", count: 32), sha = String(repeating: "b", count: 64)
        let store = try FileCredentialStore(text: "# users\r\nalice tern.test \(md5)\r\n\r\nbob tern.test \(md5) \(sha) # with SHA-256\r\n")
        #expect(store.count == 2)
        #expect(store.credentials(user: "bob", realm: "tern.test")?.ha1SHA256 == sha)
        #expect(throws: FileCredentialStore.ParseError.self) { try FileCredentialStore(text: "alice\r\ncarol tern.test short\r\n") }
        do {
            _ = try FileCredentialStore(text: "alice tern.test \(md5)\r\ncarol tern.test short\r\n")
        } catch {
            #expect(error.line == 2, "line numbers count CRLF lines")
        }
    }

    /// Realms compare without case (RFC 7616 §3.3 lets the server choose its realm string; clients
    /// echo it, and operators write it in any case); users keep theirs.
    @Test func realmsMatchWhateverTheirCaseAndUsersExactly() throws {
        let md5 = String(repeating: "a", count: 32), other = String(repeating: "c", count: 32)
        let store = try FileCredentialStore(text: "alice Tern.Test \(md5)\nalice other.test \(other)\nAlice tern.test \(other)\n")
        #expect(store.count == 3)
        #expect(store.credentials(user: "alice", realm: "tern.test")?.ha1MD5 == md5)
        #expect(store.credentials(user: "alice", realm: "TERN.TEST")?.ha1MD5 == md5)
        #expect(store.credentials(user: "Alice", realm: "tern.test")?.ha1MD5 == other)
        #expect(store.credentials(user: "alice", realm: "other.test")?.ha1MD5 == other)
        #expect(store.credentials(user: "carol", realm: "tern.test") == nil)
        #expect(store.credentials(user: "alice", realm: "nowhere.test") == nil)
    }
}
