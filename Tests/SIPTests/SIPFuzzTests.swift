import Foundation
import NIOCore
import Testing
@testable import SIP

/// Deterministic fuzzing of the whole SIP read/write path (STYLE (d): peer bytes never reach a trap).
///
/// Every input goes through parse (datagram and exact framing), salvage, validateRequest /
/// validateResponse, every typed accessor, the edits a proxy makes, serialization and the stream
/// framer, each input inside a time bound. Set `TERN_FUZZ_ITERATIONS` for a longer run (default
/// 20,000 random inputs, well under 20 s in a debug build); `TERN_FUZZ_SEED` changes the seed.
@Suite struct SIPFuzzTests {
    // MARK: - Budget

    static let iterations: Int = {
        guard let text = ProcessInfo.processInfo.environment["TERN_FUZZ_ITERATIONS"], let value = Int(text), value > 0
        else { return 20_000 }
        return value
    }()

    static let seed: UInt64 = {
        guard let text = ProcessInfo.processInfo.environment["TERN_FUZZ_SEED"], let value = UInt64(text) else {
            return 0x5EED_7E12_0000_0001
        }
        return value
    }()

    /// The longest any single input may take; a hang or a quadratic blow-up trips it.
    static let perInputBound: Duration = .seconds(1)

    /// The bound for ``HugeInput`` cases: 10,000-element lists run through the whole harness three
    /// times (datagram, exact, salvage) take about 0.4 s each in a debug build on a loaded 2-core
    /// machine, and 20,000 Via lines about 4 s (5.1 s in one CI run); a quadratic path would take
    /// minutes.
    static let hugeInputBound: Duration = .seconds(10)

    // MARK: - Seeds

    static let register = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n"
        + "Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n"
        + "Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n"
        + "From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\nCall-ID: 843817637684230@998sdasdh09\r\n"
        + "CSeq: 1826 REGISTER\r\n"
        + "Contact: <sip:bob@192.0.2.4>;expires=7200;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n"
        + "Supported: path, gruu, outbound\r\nPath: <sip:edge.example.com;lr>\r\n"
        + "Authorization: Digest username=\"bob\", realm=\"biloxi, com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\","
        + " uri=\"sip:registrar.biloxi.example.com\", response=\"6629fae49393a05397450978507c4ef1\", qop=auth, nc=00000001\r\n"
        + "Expires: 7200\r\nContent-Length: 0\r\n\r\n"

    static let invite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        + "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP [2001:db8::9:1]:5070;branch=z9hG4bKa;received=[2001:db8::9:255]\r\n"
        + "Max-Forwards: 70\r\nt: Bob <sip:bob@biloxi.example.com>\r\n"
        + "f: \"Alice \\\"A\\\"\" <sip:alice@atlanta.example.com>;tag=1928301774\r\ni: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        + "CSeq: 314159 INVITE\r\nm: <sip:alice@pc33.atlanta.example.com>\r\nRoute: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
        + "Record-Route: <sip:p3.example.com;lr>\r\nP-Asserted-Identity: \"Alice\" <sip:alice@atlanta.example.com>, <tel:+14085264000>\r\n"
        + "Privacy: id\r\nEvent: presence;id=1\r\nAllow-Events: presence, dialog\r\nSubject: lunch\r\n at noon\r\n"
        + "Accept: application/sdp, text/plain;q=0.5\r\nAccept-Encoding: gzip\r\nAllow: INVITE, ACK, BYE\r\n"
        + "c: application/sdp\r\nContent-Disposition: session;handling=required\r\nl: 31\r\n\r\n"
        + "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"

    static let ok = "SIP/2.0 200 OK\r\n"
        + "Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n"
        + "Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\n"
        + "Record-Route: <sip:server10.biloxi.example.com;lr>, <sip:bigbox3.site3.atlanta.example.com;lr>\r\n"
        + "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        + "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:bob@192.0.2.4>\r\n"
        + "WWW-Authenticate: Digest realm=\"a, b\", qop=\"auth,auth-int\", nonce=\"x\", stale=FALSE\r\n"
        + "Subscription-State: active;expires=60\r\nSIP-ETag: abc\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"

    static let handWritten = [register, invite, ok]

    static let seeds: [[UInt8]] = {
        var seeds = handWritten.map { Array($0.utf8) }
        for name in Fixture.names(in: "rfc4475/valid") where !name.hasPrefix(".") {
            if let bytes = try? Fixture.bytes("rfc4475/valid/" + name) { seeds.append(Array(bytes.readableBytesView)) }
        }
        return seeds
    }()

    // MARK: - Tests

    @Test func seedsAreValid() throws {
        #expect(Self.seeds.count >= 16)
        for text in Self.handWritten {
            let message = try SIPMessageParser().parse(text)
            if message.isRequest { try message.validateRequest() } else { try message.validateResponse() }
            #expect(message.serializedString == text)
        }
    }

    @Test func truncationAtEveryLength() {
        var stats = Stats()
        for seed in [Array(Self.invite.utf8), Array(Self.ok.utf8)] {
            for length in 0...seed.count {
                stats.run(Array(seed[..<length]))
            }
        }
        stats.check()
    }

    @Test func byteMutations() {
        var rng = SplitMix64(seed: Self.seed)
        var stats = Stats()
        for _ in 0..<(Self.iterations * 2 / 5) {
            var bytes = Self.seeds[Int(rng.next() % UInt64(Self.seeds.count))]
            let operations = 1 + Int(rng.next() % 6)
            for _ in 0..<operations { Self.mutate(&bytes, &rng) }
            stats.run(bytes)
        }
        stats.check()
    }

    @Test func headerSoup() {
        var rng = SplitMix64(seed: Self.seed ^ 0xABCD)
        var stats = Stats()
        for _ in 0..<(Self.iterations * 3 / 10) {
            stats.run(Self.soup(&rng))
        }
        stats.check()
    }

    @Test func valueSoupThroughValueParsers() {
        var rng = SplitMix64(seed: Self.seed ^ 0x1234)
        var stats = Stats()
        for _ in 0..<(Self.iterations / 10) {
            let text = String(decoding: Self.value(&rng, maxPieces: 24), as: UTF8.self)
            stats.measure {
                if let uri = try? SIPURI(parsing: text) { Harness.touch(uri) }
                if let list = try? SIPAddress.parseList(text) { list.forEach(Harness.touch) }
                if let vias = try? SIPVia.parseList(text) { vias.forEach(Harness.touch) }
                _ = try? SIPAuthValue(parsing: text).description
                _ = try? SIPCSeq(parsing: text).description
                _ = try? SIPEvent(parsing: text).description
                _ = try? SIPSubscriptionState(parsing: text).description
                _ = try? SIPMediaType(parsing: text).description
                _ = try? SIPContentDisposition(parsing: text)
                _ = HeaderValueSplitter.splitList(text)
                _ = IPv6Address(text.utf8)
                _ = percentDecoded(text)
            }
        }
        stats.check()
    }

    /// Valid streams cut at random points give the same frames as the whole stream at once;
    /// mutated streams never trap.
    @Test func framerRandomSplits() throws {
        var rng = SplitMix64(seed: Self.seed ^ 0x5757)
        var stats = Stats()
        // What Tern writes always carries a correct Content-Length, so it frames on a stream.
        let framed = Self.seeds.compactMap { seed in
            (try? SIPMessageParser().parse(ByteBuffer(bytes: seed))).map { Array($0.serialized().readableBytesView) }
        }
        #expect(framed.count >= 5)
        for round in 0..<(Self.iterations / 5) {
            var stream: [UInt8] = []
            for _ in 0..<(1 + Int(rng.next() % 5)) {
                switch rng.next() % 4 {
                case 0: stream += Array("\r\n\r\n".utf8)
                case 1: stream += Array("\r\n".utf8)
                default: break
                }
                stream += framed[Int(rng.next() % UInt64(framed.count))]
            }
            if round % 2 == 1 {
                for _ in 0..<(1 + Int(rng.next() % 3)) { Self.mutate(&stream, &rng) }
            }
            let chunks = Self.randomSplit(stream, &rng)
            var whole: [SIPStreamFramer.Frame] = []
            var split: [SIPStreamFramer.Frame] = []
            var wholeFailed = false
            var splitFailed = false
            stats.measure {
                (whole, wholeFailed) = Harness.frame([stream])
                (split, splitFailed) = Harness.frame(chunks)
                for case .message(let bytes) in whole {
                    if let message = try? Harness.parser.parse(bytes, framing: .exact) { Harness.firstChecks(message) }
                }
            }
            if round % 2 == 0 {
                #expect(!wholeFailed && !splitFailed)
                #expect(whole == split, "round \(round): \(chunks.map(\.count))")
            } else if !wholeFailed && !splitFailed {
                #expect(whole == split, "round \(round): \(chunks.map(\.count))")
            }
        }
        stats.check()
    }

    /// Inputs at and beyond every limit, each within the time bound.
    @Test(arguments: HugeInput.allCases)
    func hugeInput(_ input: HugeInput) {
        var stats = Stats()
        let bytes = Array(input.text.utf8)
        stats.run(bytes, parser: Harness.parser)
        stats.run(bytes, parser: Harness.bigParser)
        stats.check(bound: Self.hugeInputBound)
    }

    // MARK: - Generators

    static let interesting: [UInt8] = [
        0x00, 0x0D, 0x0A, 0x20, 0x09, 0xFF, 0x7F, 0x80, UInt8(ascii: ":"), UInt8(ascii: ";"), UInt8(ascii: ","),
        UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "["),
        UInt8(ascii: "]"), UInt8(ascii: "%"), UInt8(ascii: "@"), UInt8(ascii: "="), UInt8(ascii: "?"),
        UInt8(ascii: "0"), UInt8(ascii: "9"), UInt8(ascii: "/"),
    ]

    static let fragments: [String] = [
        "\r\n", "\r\n ", "\r\n\t", "\r", "\n", "\0", "\u{FF}", " ", "\t", ",", ";", "=", ":", "\"", "\\", "<", ">",
        "[", "]", "::", "%", "%4", "%41", "@", "?", "&", "/", "*", "sip:", "sips:", "tel:", "urn:x", "user",
        "host.example.com", "192.0.2.1", "[2001:db8::1]", "[::ffff:1.2.3.4]", ":5060", ":99999", ":", "0",
        "4294967296", "99999999999999999999", "-1", "1.5", "SIP/2.0/UDP ", "SIP/2.0", "z9hG4bK", ";branch=",
        ";rport", ";received=", ";tag=", ";q=", ";expires=", ";lr", "Digest ", "realm=", "\"a,b\"", "INVITE",
        "REGISTER", "application/sdp", "presence", ";id=", "active", "*", "\u{00E9}", "\u{1F600}",
    ]

    static let names: [String] = {
        var names = SIPHeaderName.known.map(\.canonical)
        names += SIPHeaderName.known.compactMap { $0.compactForm.map(String.init) }
        names += ["X-Custom", "C%6Fntact", "Via ", "content-length", "L", "Bad Name", "", ":", "\u{FF}", "Via\0"]
        return names
    }()

    static func mutate(_ bytes: inout [UInt8], _ rng: inout SplitMix64) {
        let position = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count + 1))
        switch rng.next() % 6 {
        case 0, 1:
            guard position < bytes.count else { return }
            bytes[position] = rng.next() % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : interesting.randomElement(using: &rng)!
        case 2:
            bytes.insert(contentsOf: fragments.randomElement(using: &rng)!.utf8, at: position)
        case 3:
            let length = min(Int(rng.next() % 16) + 1, bytes.count - position)
            bytes.removeSubrange(position..<(position + length))
        case 4:
            let length = min(Int(rng.next() % 64) + 1, bytes.count - position)
            let copy = Array(bytes[position..<(position + length)])
            bytes.insert(contentsOf: copy, at: min(bytes.count, position + length))
        default:
            // Swap two header lines' worth of bytes around a line break.
            if let lineBreak = bytes[position...].firstIndex(of: 0x0A) {
                bytes.insert(contentsOf: Array(names.randomElement(using: &rng)!.utf8) + [UInt8(ascii: ":")], at: lineBreak + 1)
            }
        }
    }

    static func value(_ rng: inout SplitMix64, maxPieces: Int) -> [UInt8] {
        var out: [UInt8] = []
        for _ in 0..<Int(rng.next() % UInt64(maxPieces + 1)) {
            if rng.next() % 5 == 0 {
                out.append(UInt8(truncatingIfNeeded: rng.next()))
            } else {
                out += fragments.randomElement(using: &rng)!.utf8
            }
        }
        return out
    }

    static func soup(_ rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        switch rng.next() % 5 {
        case 0: out += "SIP/2.0 \(100 + rng.next() % 600) Reason\r\n".utf8
        case 1: out += value(&rng, maxPieces: 6) + Array("\r\n".utf8)
        default:
            let method = ["INVITE", "REGISTER", "ACK", "BYE", "SUBSCRIBE", "NOTIFY", "X-M"].randomElement(using: &rng)!
            let uri = rng.next() % 3 == 0 ? String(decoding: value(&rng, maxPieces: 4), as: UTF8.self) : "sip:a@b.example.com"
            out += "\(method) \(uri) SIP/2.0\r\n".utf8
        }
        for _ in 0..<Int(rng.next() % 40) {
            out += names.randomElement(using: &rng)!.utf8
            out += rng.next() % 8 == 0 ? Array(" :".utf8) : Array(": ".utf8)
            out += value(&rng, maxPieces: 12)
            out += "\r\n".utf8
        }
        if rng.next() % 3 == 0 {
            out += "Content-Length: \(rng.next() % 20)\r\n".utf8
        }
        out += "\r\n".utf8
        out += value(&rng, maxPieces: 4)
        return out
    }

    static func randomSplit(_ bytes: [UInt8], _ rng: inout SplitMix64) -> [[UInt8]] {
        var chunks: [[UInt8]] = []
        var index = 0
        while index < bytes.count {
            let size: Int
            switch rng.next() % 4 {
            case 0: size = 1
            case 1: size = 1 + Int(rng.next() % 8)
            default: size = 1 + Int(rng.next() % 200)
            }
            let end = min(bytes.count, index + size)
            chunks.append(Array(bytes[index..<end]))
            index = end
        }
        return chunks
    }

    // MARK: - Huge inputs

    enum HugeInput: String, CaseIterable, Sendable {
        case tenThousandViasOnOneLine, tenThousandAddrSpecContacts, tenThousandNameAddrContacts, tenThousandRoutes
        case threeHundredHeaderLines, twentyThousandHeaderLines, sixtyKilobyteValue, sixtyKilobyteViaParameters
        case hugeContentLength, nestedAngles, nestedQuotes, backslashRun, tenThousandAuthParameters
        case unterminatedQuotedChallenge, longEscapedURI, manyIPv6Brackets, longMethod, longRequestURI
        case onlyLineBreaks, commaStorm, foldStorm, longHeaderName, deepSemicolons, manyCSeqDigits

        static let head = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
            + "From: <sip:a@b.example.com>;tag=1\r\nTo: <sip:b@b.example.com>\r\nCall-ID: huge\r\nCSeq: 1 INVITE\r\n"

        static func with(_ lines: String...) -> String { head + lines.map { $0 + "\r\n" }.joined() + "\r\n" }

        var text: String {
            switch self {
            case .tenThousandViasOnOneLine:
                Self.with("Via: " + Array(repeating: "SIP/2.0/UDP h.example.com;branch=z9hG4bKx", count: 10_000).joined(separator: ","))
            case .tenThousandAddrSpecContacts:
                Self.with("Contact: " + Array(repeating: "sip:a@b", count: 10_000).joined(separator: ", "))
            case .tenThousandNameAddrContacts:
                Self.with("Contact: " + Array(repeating: "\"A\" <sip:a@b>;q=0.1", count: 10_000).joined(separator: ","))
            case .tenThousandRoutes:
                Self.with("Route: " + Array(repeating: "<sip:p.example.com;lr>", count: 10_000).joined(separator: ","))
            case .threeHundredHeaderLines:
                Self.head + (0..<300).map { "X-H\($0): v\r\n" }.joined() + "\r\n"
            case .twentyThousandHeaderLines:
                Self.head + String(repeating: "Via: SIP/2.0/UDP h;branch=z9hG4bK2\r\n", count: 20_000) + "\r\n"
            case .sixtyKilobyteValue:
                Self.with("Subject: " + String(repeating: "x", count: 60_000))
            case .sixtyKilobyteViaParameters:
                Self.head.replacingOccurrences(of: "branch=z9hG4bK1", with: "branch=z9hG4bK1" + String(repeating: ";a", count: 30_000)) + "\r\n"
            case .hugeContentLength:
                Self.with("Content-Length: 999999999") + "body"
            case .nestedAngles:
                Self.with("Contact: " + String(repeating: "<", count: 30_000) + "sip:a@b" + String(repeating: ">", count: 30_000))
            case .nestedQuotes:
                Self.with("Contact: " + String(repeating: "\"", count: 30_001) + " <sip:a@b>",
                          "Route: " + String(repeating: "\"<", count: 20_000))
            case .backslashRun:
                Self.with("From: \"" + String(repeating: "\\", count: 40_001) + "\" <sip:a@b>")
            case .tenThousandAuthParameters:
                Self.with("Authorization: Digest " + Array(repeating: "a=\"b,c\"", count: 10_000).joined(separator: ","))
            case .unterminatedQuotedChallenge:
                Self.with("WWW-Authenticate: Digest realm=\"" + String(repeating: "r, ", count: 20_000))
            case .longEscapedURI:
                Self.with("To: <sip:" + String(repeating: "%41", count: 20_000) + "@b.example.com>")
            case .manyIPv6Brackets:
                Self.with("Via: " + String(repeating: "SIP/2.0/UDP [", count: 5_000),
                          "Route: " + String(repeating: "<sip:[::1", count: 6_000))
            case .longMethod:
                String(repeating: "M", count: 60_000) + " sip:a@b SIP/2.0\r\n\r\n"
            case .longRequestURI:
                "INVITE sip:" + String(repeating: "a", count: 60_000) + "@b SIP/2.0\r\n\r\n"
            case .onlyLineBreaks:
                String(repeating: "\r\n", count: 32_000)
            case .commaStorm:
                Self.with("Supported: " + String(repeating: ",", count: 60_000),
                          "Via: " + String(repeating: ", ", count: 20_000))
            case .foldStorm:
                Self.with("Subject: a" + String(repeating: "\r\n b", count: 15_000))
            case .longHeaderName:
                Self.with(String(repeating: "X", count: 60_000) + ": v")
            case .deepSemicolons:
                Self.with("Event: presence" + String(repeating: ";id=1", count: 10_000),
                          "To: <sip:b@c" + String(repeating: ";p", count: 20_000) + ">")
            case .manyCSeqDigits:
                Self.with("CSeq: " + String(repeating: "9", count: 50_000) + " INVITE",
                          "Max-Forwards: " + String(repeating: "0", count: 50_000) + "1",
                          "Expires: " + String(repeating: "1", count: 30_000))
            }
        }
    }
}

// MARK: - Harness

/// A SplitMix64 generator: tiny, fast and the same on every platform, so a failing seed replays.

/// Counts inputs and keeps the slowest, so a suite reports one failure with its worst input.
struct Stats {
    var count = 0
    var total: Duration = .zero
    var slowest: Duration = .zero
    var slowestInput: [UInt8] = []

    mutating func run(_ bytes: [UInt8], parser: SIPMessageParser = Harness.parser) {
        let buffer = ByteBuffer(bytes: bytes)
        let elapsed = ContinuousClock().measure { Harness.exercise(buffer, parser: parser) }
        record(elapsed, bytes)
    }

    mutating func measure(_ body: () -> Void) {
        record(ContinuousClock().measure(body), [])
    }

    private mutating func record(_ elapsed: Duration, _ bytes: [UInt8]) {
        count += 1
        total += elapsed
        if elapsed > slowest {
            slowest = elapsed
            slowestInput = bytes
        }
    }

    func check(bound: Duration = SIPFuzzTests.perInputBound, sourceLocation: SourceLocation = #_sourceLocation) {
        let preview = String(decoding: slowestInput.prefix(200), as: UTF8.self)
        #expect(slowest < bound, "slowest input took \(slowest): \(preview.debugDescription)",
                sourceLocation: sourceLocation)
        if ProcessInfo.processInfo.environment["TERN_FUZZ_VERBOSE"] != nil {
            print("fuzz: \(count) inputs in \(total), slowest \(slowest)")
        }
    }
}

enum Harness {
    static let parser = SIPMessageParser()
    static let bigParser = SIPMessageParser(limits: .init(maxMessageSize: 4 << 20, maxHeaderLines: 30_000))
    /// List, single-value, compact-capable and extension names (every known name would triple the cost).
    static let sampleNames: [SIPHeaderName] = [
        .via, .contact, .route, .supported, .allow, .authorization, .wwwAuthenticate, .subject, .contentLength,
        .callID, .privacy, SIPHeaderName("Refer-To"), SIPHeaderName("X-Custom"), SIPHeaderName("C%6Fntact"),
    ]

    /// Re-parses what Tern writes, which may be larger than what it read (Content-Length added).
    static let roomyParser = SIPMessageParser(limits: .init(maxMessageSize: 8 << 20, maxHeaderLines: 40_000))

    /// Datagram framing gets the full treatment (accessors, edits, response, round trip); exact
    /// framing, salvage and stream framing get a parse and the checks a server runs first.
    static func exercise(_ bytes: ByteBuffer, parser: SIPMessageParser) {
        do {
            let message = try parser.parse(bytes, framing: .datagram)
            touch(message)
            checkRoundTrip(message, input: bytes)
        } catch {
            let status = SIPStatus(error)
            #expect((400...599).contains(status.code))
        }
        if let exact = try? parser.parse(bytes, framing: .exact) { firstChecks(exact) }
        if let salvaged = parser.salvage(bytes) {
            #expect(salvaged.isRequest)
            firstChecks(salvaged)
        }
        let (frames, _) = frame([Array(bytes.readableBytesView)], maxMessageSize: parser.limits.maxMessageSize)
        for case .message(let slice) in frames.prefix(4) {
            if let message = try? parser.parse(slice, framing: .exact) { firstChecks(message) }
        }
    }

    /// What a server reads before anything else: the sanity checks and the transaction keys.
    static func firstChecks(_ message: SIPMessage) {
        _ = try? message.validateRequest()
        _ = try? message.validateResponse()
        _ = (message.canBeAnswered, try? message.topVia()?.branch, try? message.cseq(), message.callID)
        _ = message.serialized()
    }

    /// Frames `chunks` fed one after another; stops at the first error.
    static func frame(_ chunks: [[UInt8]], maxMessageSize: Int = 65_535) -> ([SIPStreamFramer.Frame], failed: Bool) {
        let framer = SIPStreamFramer(maxMessageSize: maxMessageSize)
        var buffer = ByteBuffer()
        var frames: [SIPStreamFramer.Frame] = []
        var steps = 0
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while true {
                steps += 1
                guard steps < 1_000_000 else {
                    Issue.record("framer does not make progress")
                    return (frames, true)
                }
                let before = buffer.readableBytes
                do {
                    switch try framer.next(from: &buffer) {
                    case .needMoreData:
                        break
                    case .frame(let frame):
                        #expect(buffer.readableBytes < before, "a frame must consume bytes")
                        frames.append(frame)
                        continue
                    }
                } catch {
                    return (frames, true)
                }
                break
            }
        }
        return (frames, false)
    }

    /// What Tern writes parses again to the same headers and body, and writing is a fixed point.
    static func checkRoundTrip(_ message: SIPMessage, input: ByteBuffer) {
        let written = message.serialized()
        guard let again = try? roomyParser.parse(written, framing: .exact) else {
            Issue.record("serialized message does not parse: \(String(buffer: written).prefix(300).debugDescription)")
            return
        }
        let contentLength = SIPHeaderName.contentLength
        let before = message.headers.filter { SIPHeaderName($0.name) != contentLength }
        let after = again.headers.filter { SIPHeaderName($0.name) != contentLength }
        if before.map(\.name) != after.map(\.name) || before.map(\.value) != after.map(\.value) {
            Issue.record("headers changed on a round trip: \(String(buffer: input).prefix(300).debugDescription)")
        }
        #expect(again.body == message.body)
        #expect(again.serialized() == written, "serialization is not a fixed point")
    }

    static func touch(_ message: SIPMessage) {
        var errors: [SIPParseError] = []
        func attempt<T>(_ body: () throws(SIPParseError) -> T) -> T? {
            do { return try body() } catch {
                errors.append(error)
                return nil
            }
        }
        _ = attempt { () throws(SIPParseError) in try message.validateRequest() }
        _ = attempt { () throws(SIPParseError) in try message.validateResponse() }
        _ = (message.canBeAnswered, message.isRequest, message.method, message.statusCode)
        _ = (message.requestURIString, message.reasonPhrase, message.version, message.headers.count)
        if let uri = attempt({ () throws(SIPParseError) in try message.requestURI() }) { touch(uri) }
        attempt { () throws(SIPParseError) in try message.vias() }?.forEach(touch)
        if let via = attempt({ () throws(SIPParseError) in try message.topVia() }) ?? nil { touch(via) }
        for address in [attempt { () throws(SIPParseError) in try message.from() } ?? nil,
                        attempt { () throws(SIPParseError) in try message.to() } ?? nil] {
            if let address { touch(address) }
        }
        _ = message.callID
        _ = attempt { () throws(SIPParseError) in try message.cseq() }??.description
        _ = attempt { () throws(SIPParseError) in try message.maxForwards() }
        _ = attempt { () throws(SIPParseError) in try message.expires() }
        _ = attempt { () throws(SIPParseError) in try message.minExpires() }
        if case .addresses(let contacts) = attempt({ () throws(SIPParseError) in try message.contacts() }) ?? nil {
            contacts.forEach(touch)
        }
        for list in [
            attempt { () throws(SIPParseError) in try message.routes() },
            attempt { () throws(SIPParseError) in try message.recordRoutes() },
            attempt { () throws(SIPParseError) in try message.paths() },
            attempt { () throws(SIPParseError) in try message.serviceRoutes() },
            attempt { () throws(SIPParseError) in try message.pAssertedIdentities() },
        ] {
            list?.forEach(touch)
        }
        if let type = attempt({ () throws(SIPParseError) in try message.contentType() }) ?? nil {
            _ = (type.description, type.essence, type.admits(.sdp))
        }
        _ = attempt { () throws(SIPParseError) in try message.contentDisposition() }
        _ = message.contentEncodings
        _ = attempt { () throws(SIPParseError) in try message.accept() }?.map(\.description)
        _ = message.acceptEncodings
        if let event = attempt({ () throws(SIPParseError) in try message.event() }) ?? nil { _ = (event.id, event.description) }
        _ = attempt { () throws(SIPParseError) in try message.allowEvents() }?.map(\.description)
        if let state = attempt({ () throws(SIPParseError) in try message.subscriptionState() }) ?? nil {
            _ = (state.expires, state.reason, state.retryAfter, state.description)
        }
        _ = (message.sipETag, message.sipIfMatch, message.supported, message.require, message.proxyRequire)
        _ = (message.unsupported, message.allow, message.privacy)
        for name in [SIPHeaderName.authorization, .proxyAuthorization] {
            attempt { () throws(SIPParseError) in try message.credentials(name) }?.forEach { _ = ($0.description, $0["realm"]) }
        }
        for name in [SIPHeaderName.wwwAuthenticate, .proxyAuthenticate] {
            attempt { () throws(SIPParseError) in try message.challenges(name) }?.forEach { _ = ($0.description, $0["nonce"]) }
        }
        for name in Self.sampleNames {
            _ = (message.values(name).count, message.firstValue(name), message.lineCount(name), message.contains(name))
        }
        for error in errors {
            let status = SIPStatus(error)
            #expect((400...599).contains(status.code))
        }

        // The edits a proxy makes, then the response a server makes.
        var edited = message
        edited.prependHeader(.via, "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfuzz")
        edited.prependHeader(.recordRoute, "<sip:proxy.example.com;lr>")
        _ = edited.removeFirstValue(.route)
        edited.setHeader(.maxForwards, "69")
        if let uri = try? SIPURI(parsing: "sip:next@192.0.2.9") { edited.setRequestURI(uri) }
        _ = edited.removeFirstValue(.via)
        _ = edited.removeFirstValue(.via)
        edited.removeHeaders(.proxyAuthorization)
        _ = edited.serialized(options: .init(compactHeaders: true))
        edited.setBody(ByteBuffer(string: "x"), contentType: .textPlain)
        let editedBytes = edited.serialized()
        if (try? roomyParser.parse(editedBytes, framing: .exact)) == nil {
            Issue.record("edited message does not parse: \(String(buffer: editedBytes).prefix(300).debugDescription)")
        }
        if message.isRequest {
            let response = SIPMessage.response(to: message, status: SIPStatus(400), toTag: "fuzz", copyRecordRoute: true)
            let bytes = response.serialized()
            if (try? roomyParser.parse(bytes, framing: .exact)) == nil {
                Issue.record("response does not parse: \(String(buffer: bytes).prefix(300).debugDescription)")
            }
        }
    }

    static func touch(_ uri: SIPURI) {
        _ = (uri.description, uri.unescapedUser, uri.transportParameter, uri.hostWithoutBrackets, uri.hashValue)
        _ = uri.isEquivalent(to: uri)
        if let again = try? SIPURI(parsing: uri.description) {
            #expect(again.isEquivalent(to: uri), "\(uri.description.prefix(200))")
        }
    }

    static func touch(_ via: SIPVia) {
        _ = (via.branch, via.received, via.maddr, via.hasMagicCookie, via.rport, via.sentBy, via.description)
        if let again = try? SIPVia.parseList(via.description) {
            #expect(again.count == 1)
        } else {
            Issue.record("Via does not parse after rendering: \(via.description.prefix(200).debugDescription)")
        }
    }

    static func touch(_ address: SIPAddress) {
        _ = (address.tag, address.q, address.expires, address.instanceID, address.regID)
        _ = (address.publicGRUU, address.temporaryGRUU, address.description)
        touch(address.uri)
    }
}
