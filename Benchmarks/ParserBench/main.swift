// Parser throughput and allocations for typical messages, single core. Run in release:
//   swift build -c release && .build/release/tern-parser-bench [seconds-per-case]
import CAllocationCounter
import NIOCore
import SIP

let invite = """
INVITE sip:bob@biloxi.example.com SIP/2.0\r
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r
Max-Forwards: 70\r
To: "Bob" <sip:bob@biloxi.example.com>\r
From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
CSeq: 314159 INVITE\r
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"\r
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r
Supported: replaces, timer, gruu, outbound\r
User-Agent: Bench/1.0\r
Content-Type: application/sdp\r
Content-Length: 249\r
\r
v=0\r
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r
s=-\r
c=IN IP4 192.0.2.101\r
t=0 0\r
m=audio 49172 RTP/AVP 0 8 97 101\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:97 AMR/8000\r
a=rtpmap:101 telephone-event/8000\r
a=sendrecv\r

"""

let register = """
REGISTER sip:registrar.biloxi.example.com SIP/2.0\r
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r
Max-Forwards: 70\r
To: Bob <sip:bob@biloxi.example.com>\r
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r
Call-ID: 843817637684230@998sdasdh09\r
CSeq: 1826 REGISTER\r
Contact: <sip:bob@192.0.2.4;transport=udp>;expires=3600;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1\r
Supported: path, gruu, outbound\r
User-Agent: Bench/1.0\r
Content-Length: 0\r
\r

"""

let ok200 = """
SIP/2.0 200 OK\r
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3\r
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r
Record-Route: <sip:server10.biloxi.example.com;lr>, <sip:bigbox3.site3.atlanta.example.com;lr>\r
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
CSeq: 314159 INVITE\r
Contact: <sip:bob@192.0.2.4>\r
Content-Type: application/sdp\r
Content-Length: 129\r
\r
v=0\r
o=bob 2890844527 2890844527 IN IP4 192.0.2.4\r
s=-\r
c=IN IP4 192.0.2.4\r
t=0 0\r
m=audio 3456 RTP/AVP 0\r
a=rtpmap:0 PCMU/8000\r

"""

struct Measurement {
    var messagesPerSecond: Double
    var nanosecondsPerMessage: Double
    /// The fastest round of 1,000: on a shared machine, noise only ever adds, so the minimum is
    /// what compares between builds.
    var bestNanosecondsPerMessage: Double
    var allocationsPerMessage: Double
    var bytesPerMessage: Double
}

/// Runs `body` repeatedly for about `seconds`, then once more under the allocation counter.
func measure(seconds: Double, _ body: () -> Void) -> Measurement {
    for _ in 0..<10_000 { body() }  // warm up
    let clock = ContinuousClock()
    var iterations = 0
    let start = clock.now
    let budget = Duration.milliseconds(Int64(seconds * 1000))
    var best = Double.infinity
    while clock.now - start < budget {
        let roundStart = clock.now
        for _ in 0..<1_000 { body() }
        let round = clock.now - roundStart
        best = min(best, (Double(round.components.seconds) * 1e9 + Double(round.components.attoseconds) / 1e9) / 1_000)
        iterations += 1_000
    }
    let elapsed = clock.now - start
    let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    let counted = 10_000
    let allocationsBefore = tern_allocation_count()
    let bytesBefore = tern_allocated_bytes()
    for _ in 0..<counted { body() }
    let allocations = Double(tern_allocation_count() - allocationsBefore) / Double(counted)
    let bytes = Double(tern_allocated_bytes() - bytesBefore) / Double(counted)
    return Measurement(messagesPerSecond: Double(iterations) / (nanoseconds / 1e9),
                       nanosecondsPerMessage: nanoseconds / Double(iterations), bestNanosecondsPerMessage: best,
                       allocationsPerMessage: allocations, bytesPerMessage: bytes)
}

let seconds = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 2.0
let parser = SIPMessageParser()
var sink = 0

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func format(_ value: Double, _ decimals: Int = 0) -> String {
    let scale = pow10(decimals)
    let rounded = (value * scale).rounded() / scale
    return decimals == 0 ? String(Int(rounded)) : String(rounded)
}

func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { acc, _ in acc * 10 } }

print("tern-parser-bench: single thread, \(seconds) s per case")
print(pad("case", 50) + pad("msg/s", 12) + pad("ns/msg", 10) + pad("best ns", 10) + pad("allocs/msg", 12) + "bytes/msg")
for (name, text) in [("INVITE (SDP body)", invite), ("REGISTER", register), ("200 OK (3 Via, SDP)", ok200)] {
    let bytes = ByteBuffer(string: text)
    guard let check = try? parser.parse(bytes), check.body.readableBytes == Int(check.firstValue(.contentLength) ?? "") else {
        fatalError("benchmark message \(name) does not parse with a matching Content-Length")
    }
    let indexOnly = measure(seconds: seconds) {
        if let message = try? parser.parse(bytes) { sink &+= message.fields.count }
    }
    let withRouting = measure(seconds: seconds) {
        guard let message = try? parser.parse(bytes) else { return }
        // What routing reads on every message: top Via, Call-ID, CSeq, From/To tags, Max-Forwards.
        if let via = try? message.topVia() { sink &+= via.branch?.utf8.count ?? 0 }
        sink &+= message.callID?.utf8.count ?? 0
        if let cseq = try? message.cseq() { sink &+= Int(cseq.sequence) }
        if let from = try? message.from() { sink &+= from.tag?.utf8.count ?? 0 }
        if let to = try? message.to() { sink &+= to.tag?.utf8.count ?? 0 }
        if let maxForwards = try? message.maxForwards() { sink &+= maxForwards }
    }
    // What the server does with every request it accepts (InboundStage): the checks of RFC 3261
    // §8.2 and §16.3, keeping the typed headers they parsed.
    let validate = measure(seconds: seconds) {
        guard var message = try? parser.parse(bytes) else { return }
        if message.isRequest {
            do { try message.validateRequestKeepingParsed() } catch { return }
        } else {
            do { try message.validateResponseKeepingParsed() } catch { return }
        }
        sink &+= message.fields.count
    }
    let serialize = measure(seconds: seconds) {
        guard var message = try? parser.parse(bytes) else { return }
        message.prependHeader(.via, "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKbench")
        sink &+= message.serialized().readableBytes
    }
    for (label, result) in [("parse (index)", indexOnly), ("parse + routing views", withRouting), ("parse + validate", validate),
                            ("parse + add Via + serialize", serialize)] {
        print(pad("\(name): \(label)", 50)
              + pad(format(result.messagesPerSecond), 12)
              + pad(format(result.nanosecondsPerMessage), 10)
              + pad(format(result.bestNanosecondsPerMessage), 10)
              + pad(format(result.allocationsPerMessage, 1), 12)
              + format(result.bytesPerMessage))
    }
}
if sink == 42 { print("") }
