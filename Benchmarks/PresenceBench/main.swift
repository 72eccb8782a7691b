// Presence load: watchers subscribe to presentities, publishers change the presentities several
// times a second, and every NOTIFY is answered and timed. One thread plays every watcher and
// publisher, over `--sockets` UDP sockets (watcher w uses socket w mod sockets): phones come from
// many addresses, and a server that spreads peers over its cores sees them so. Run against a
// release tern:
//   tern-presence-bench HOST:PORT [--presentities 100] [--watchers 1000] [--per-watcher 20]
//                       [--changes-per-second 4] [--seconds 20] [--pid TERN_PID] [--interval-ms 1000]
//                       [--sockets 64]
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import NIOPosix
import SIP

struct Options {
    var host = "127.0.0.1"
    var port = 5060
    var presentities = 100
    var watchers = 1000
    var perWatcher = 20
    var changesPerSecond = 4.0
    var seconds = 20.0
    var pid: Int32?
    /// Tern's management API port: live heap bytes come from its /metrics.
    var managementPort: Int?
    var intervalMilliseconds = 1000.0
    var sockets = 64

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--presentities": presentities = Int(iterator.next() ?? "") ?? presentities
            case "--watchers": watchers = Int(iterator.next() ?? "") ?? watchers
            case "--per-watcher": perWatcher = Int(iterator.next() ?? "") ?? perWatcher
            case "--changes-per-second": changesPerSecond = Double(iterator.next() ?? "") ?? changesPerSecond
            case "--seconds": seconds = Double(iterator.next() ?? "") ?? seconds
            case "--pid": pid = Int32(iterator.next() ?? "")
            case "--management-port": managementPort = Int(iterator.next() ?? "")
            case "--interval-ms": intervalMilliseconds = Double(iterator.next() ?? "") ?? intervalMilliseconds
            case "--sockets": sockets = max(1, Int(iterator.next() ?? "") ?? sockets)
            default:
                let parts = argument.split(separator: ":")
                if parts.count == 2, let port = Int(parts[1]) {
                    host = String(parts[0])
                    self.port = port
                }
            }
        }
    }
}

/// CPU seconds and resident memory of a process, from /proc.
/// `tern_process_heap_in_use_bytes` from tern's /metrics.
func heapInUse(port: Int) -> Int? {
    guard let url = URL(string: "http://127.0.0.1:\(port)/metrics"), let data = try? Data(contentsOf: url) else { return nil }
    let text = String(decoding: data, as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tern_process_heap_in_use_bytes ") }),
          let value = Double(line.split(separator: " ").last ?? "") else { return nil }
    return Int(value)
}

func processUsage(_ pid: Int32) -> (cpu: Double, rssKiB: Int) {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var cpu = 0.0
    if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
       let close = stat.lastIndex(of: ")") {
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) { cpu = (user + system) / ticks }
    }
    var rss = 0
    if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
    }
    return (cpu, rss)
}

/// One of the bench's sockets: hands what it reads to the bench.
final class BenchSocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let bench: Bench

    init(bench: Bench) { self.bench = bench }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bench.received(unwrapInboundIn(data), context: context)
    }

    /// Answers are written as they are built and flushed once per read burst: NIO sends them
    /// with one sendmmsg(2), as it reads the burst with recvmmsg(2).
    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

final class Bench: @unchecked Sendable {
    let options: Options
    let server: SocketAddress
    var channels: [any Channel] = []
    var localPorts: [Int] = []
    let parser = SIPMessageParser()
    var subscribed = 0
    var answeredSubscriptions = Set<String>()
    var initialNotifies = 0
    var notifies = 0
    var changesSent = 0
    var changesAnswered = 0
    var latencies: [Double] = []
    var measuring = false
    var etags: [String?]
    var publishInFlight: [Bool]
    /// When each presentity's PUBLISH in flight was sent: one unanswered for 2 s is taken as lost
    /// (UDP, and the bench does not retransmit) so that the presentity keeps changing.
    var publishSentAt: [NIODeadline]
    var publishesLost = 0
    var publishesSkipped = 0
    var publishCSeq: [Int]
    var errors: [Int: Int] = [:]
    let start = NIODeadline.now()

    init(options: Options) throws {
        self.options = options
        self.server = try SocketAddress(ipAddress: options.host, port: options.port)
        etags = Array(repeating: nil, count: options.presentities)
        publishInFlight = Array(repeating: false, count: options.presentities)
        publishSentAt = Array(repeating: .distantPast, count: options.presentities)
        publishCSeq = Array(repeating: 0, count: options.presentities)
    }

    func send(_ text: String, socket: Int) {
        guard !channels.isEmpty else { return }
        let channel = channels[socket % channels.count]
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: buffer), promise: nil)
    }

    static let notifyPrefix = Array("NOTIFY ".utf8)
    static let echoed: [[UInt8]] = ["via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:"].map { Array($0.utf8) }

    /// 200 OK to a NOTIFY, straight from its bytes: the response copies Via, From, To, Call-ID and
    /// CSeq (RFC 3261 §8.2.6.2), which is all a phone's answer needs. Parsing every NOTIFY as a
    /// whole message cost the generator as much CPU as Tern spent sending it, on the same 2 cores.
    func answerNotify(_ envelope: AddressedEnvelope<ByteBuffer>, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 512)
        out.writeStaticString("SIP/2.0 200 OK\r\n")
        // Plain loops over the raw bytes: the generic collection algorithms (firstRange, zip) ran
        // unspecialised here and took most of the generator's CPU.
        let (initial, stamp) = envelope.data.withUnsafeReadableBytes { bytes -> (Bool, UInt64) in
            var lineStart = 0
            var initial = false
            var bodyStart = bytes.count
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                guard lineEnd < bytes.count else { break }
                let length = lineEnd - lineStart
                if length == 0 || (length == 1 && bytes[lineStart] == UInt8(ascii: "\r")) {
                    bodyStart = lineEnd + 1
                    break
                }
                if Self.echoed.contains(where: { name in Self.hasPrefix(bytes, at: lineStart, length: length, name) }) {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[lineStart...lineEnd]))
                    if Self.hasPrefix(bytes, at: lineStart, length: length, Self.firstCSeq) { initial = true }
                }
                lineStart = lineEnd + 1
            }
            // The publisher's stamp: the digits after "t=" in the body.
            var stamp: UInt64 = 0
            var index = bodyStart
            while index + 1 < bytes.count {
                if bytes[index] == UInt8(ascii: "t"), bytes[index + 1] == UInt8(ascii: "=") {
                    index += 2
                    while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                        stamp = stamp * 10 + UInt64(bytes[index] - 48)
                        index += 1
                    }
                    break
                }
                index += 1
            }
            return (initial, stamp)
        }
        out.writeStaticString("Content-Length: 0\r\n\r\n")
        context.write(NIOAny(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: out)), promise: nil)
        if initial { initialNotifies += 1 }
        guard measuring else { return }
        notifies += 1
        let now = NIODeadline.now().uptimeNanoseconds
        if stamp > 0, now > stamp, latencies.count < 2_000_000 { latencies.append(Double(now - stamp) / 1_000_000) }
    }

    static let firstCSeq = Array("cseq: 1 ".utf8)

    /// Whether the line at `start` begins with `name` (lower case), ignoring ASCII case.
    static func hasPrefix(_ bytes: UnsafeRawBufferPointer, at start: Int, length: Int, _ name: [UInt8]) -> Bool {
        guard length > name.count else { return false }
        for offset in 0..<name.count where bytes[start + offset] | 0x20 != name[offset] && bytes[start + offset] != name[offset] {
            return false
        }
        return true
    }

    func port(_ socket: Int) -> Int { localPorts.isEmpty ? 0 : localPorts[socket % localPorts.count] }

    func subscribe(watcher: Int, presentity: Int) {
        let tag = "w\(watcher)p\(presentity)"
        let localPort = port(watcher)
        send("SUBSCRIBE sip:p\(presentity)@bench.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(localPort);branch=z9hG4bK\(tag)\r\n"
             + "Max-Forwards: 70\r\nFrom: <sip:w\(watcher)@bench.test>;tag=\(tag)\r\nTo: <sip:p\(presentity)@bench.test>\r\n"
             + "Call-ID: sub-\(tag)\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w\(watcher)@127.0.0.1:\(localPort)>\r\nEvent: presence\r\n"
             + "Expires: 3600\r\nAccept: application/pidf+xml\r\nContent-Length: 0\r\n\r\n", socket: watcher)
    }

    func publish(_ presentity: Int) {
        if publishInFlight[presentity] {
            guard NIODeadline.now() - publishSentAt[presentity] > .seconds(2) else {
                publishesSkipped += measuring ? 1 : 0
                return
            }
            publishesLost += 1
            etags[presentity] = nil
        }
        publishInFlight[presentity] = true
        publishSentAt[presentity] = .now()
        publishCSeq[presentity] += 1
        let stamp = NIODeadline.now().uptimeNanoseconds
        let localPort = port(presentity)
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:p\(presentity)@bench.test\">"
            + "<tuple id=\"t\"><status><basic>open</basic></status><note>t=\(stamp)</note></tuple></presence>"
        var text = "PUBLISH sip:p\(presentity)@bench.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(localPort);branch=z9hG4bKpub\(presentity)x\(publishCSeq[presentity])\r\n"
            + "Max-Forwards: 70\r\nFrom: <sip:p\(presentity)@bench.test>;tag=pub\(presentity)\r\nTo: <sip:p\(presentity)@bench.test>\r\n"
            + "Call-ID: pub-\(presentity)\r\nCSeq: \(publishCSeq[presentity]) PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n"
        if let etag = etags[presentity] { text += "SIP-If-Match: \(etag)\r\n" }
        text += "Content-Type: application/pidf+xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        changesSent += measuring ? 1 : 0
        send(text, socket: presentity)
    }

    func received(_ envelope: AddressedEnvelope<ByteBuffer>, context: ChannelHandlerContext) {
        if envelope.data.readableBytesView.starts(with: Self.notifyPrefix) {
            answerNotify(envelope, context: context)
            return
        }
        guard let message = try? parser.parse(envelope.data) else { return }
        guard let code = message.statusCode, code >= 200, let callID = message.callID else { return }
        if code >= 300 { errors[code, default: 0] += 1 }
        if callID.hasPrefix("sub-") {
            if answeredSubscriptions.insert(callID).inserted { subscribed += 1 }
        } else if callID.hasPrefix("pub-"), let index = Int(callID.dropFirst(4)), index < etags.count {
            publishInFlight[index] = false
            if code == 200 { etags[index] = message.sipETag } else { etags[index] = nil }
            changesAnswered += measuring ? 1 : 0
        }
    }
}

let options = Options(CommandLine.arguments)
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bench = try Bench(options: options)
let channels = try (0..<options.sockets).map { _ in
    try DatagramBootstrap(group: group)
        .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: (8 << 20) / options.sockets)
        .channelOption(ChannelOptions.socketOption(.so_sndbuf), value: (8 << 20) / options.sockets)
        .channelOption(ChannelOptions.datagramVectorReadMessageCount, value: 32)
        .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 4096))
        .channelInitializer { $0.pipeline.addHandler(BenchSocket(bench: bench)) }
        .bind(host: "127.0.0.1", port: 0).wait()
}
let loop = group.next()
try loop.submit {
    bench.channels = channels
    bench.localPorts = channels.map { $0.localAddress?.port ?? 0 }
}.wait()

func usage() -> (Double, Int) { options.pid.map(processUsage) ?? (0, 0) }
let total = options.watchers * options.perWatcher

// Presentities first publish once, so the first NOTIFYs carry a document. Memory is measured after
// that: what the subscriptions cost, not the publications or Tern's per-socket read buffers
// (allocated on a socket's first read).
try loop.submit {
    for presentity in 0..<options.presentities { bench.publish(presentity) }
}.wait()
Thread.sleep(forTimeInterval: 0.5)
let (_, rssBefore) = usage()
let heapBefore = options.managementPort.flatMap(heapInUse)

// Phase 1: every watcher subscribes to its presentities (at most 5,000 SUBSCRIBEs a second).
var sent = 0
let subscribeStart = Date()
while sent < total {
    let batch = min(50, total - sent)
    let first = sent
    try loop.submit {
        for index in first..<(first + batch) {
            let watcher = index / options.perWatcher
            let presentity = (watcher + (index % options.perWatcher) * max(1, options.presentities / options.perWatcher)) % options.presentities
            bench.subscribe(watcher: watcher, presentity: presentity)
        }
    }.wait()
    sent += batch
    Thread.sleep(forTimeInterval: 0.01)
}
// UDP may lose a datagram under this burst: SUBSCRIBEs still unanswered after a while are sent again.
var waited = 0.0
while try loop.submit({ bench.subscribed < total }).wait(), waited < 60 {
    Thread.sleep(forTimeInterval: 0.5)
    waited += 0.5
    if Int(waited * 2) % 4 == 0 {
        try loop.submit {
            for index in 0..<total {
                let watcher = index / options.perWatcher
                let presentity = (watcher + (index % options.perWatcher) * max(1, options.presentities / options.perWatcher)) % options.presentities
                if !bench.answeredSubscriptions.contains("sub-w\(watcher)p\(presentity)") { bench.subscribe(watcher: watcher, presentity: presentity) }
            }
        }.wait()
    }
}
let (subscribedCount, initialCount) = try loop.submit { (bench.subscribed, bench.initialNotifies) }.wait()
let subscribeSeconds = Date().timeIntervalSince(subscribeStart)
// Memory per subscription once the SUBSCRIBE and NOTIFY transactions have ended (Timer J, 32 s on UDP).
let settle = Double(ProcessInfo.processInfo.environment["SETTLE_SECONDS"] ?? "") ?? 34
Thread.sleep(forTimeInterval: settle)
let (_, rssSubscribed) = usage()
let heapSubscribed = options.managementPort.flatMap(heapInUse)

// Phase 2: each presentity changes `changesPerSecond` times a second for `seconds`.
let (cpuBefore, _) = usage()
try loop.submit { bench.measuring = true }.wait()
let tick = TimeAmount.milliseconds(10)
// Paced by the clock, not by ticks: a tick that runs late (the thread is busy answering NOTIFYs)
// sends what the clock says is due, so the offered rate is the one asked for.
let changesPerNanosecond = Double(options.presentities) * options.changesPerSecond / 1e9
let pacingStart = NIODeadline.now()
nonisolated(unsafe) var changesDue = 0
let changer = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
    let due = Int(Double((NIODeadline.now() - pacingStart).nanoseconds) * changesPerNanosecond)
    let count = due - changesDue
    changesDue = due
    for _ in 0..<max(0, count) { bench.publish(Int.random(in: 0..<options.presentities)) }
}
let measureStart = Date()
Thread.sleep(forTimeInterval: options.seconds)
changer.cancel()
let measured = Date().timeIntervalSince(measureStart)
Thread.sleep(forTimeInterval: options.intervalMilliseconds / 1000 + 0.5)
let (cpuAfter, rssAfter) = usage()
let (notifies, changes, latencies, errors) = try loop.submit { (bench.notifies, bench.changesAnswered, bench.latencies, bench.errors) }.wait()
let (publishesLost, publishesSkipped) = try loop.submit { (bench.publishesLost, bench.publishesSkipped) }.wait()

let sorted = latencies.sorted()
func percentile(_ p: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
let watchersPerPresentity = Double(total) / Double(options.presentities)
print("presence: \(options.presentities) presentities, \(options.watchers) watchers x \(options.perWatcher) = \(total) subscriptions, "
      + "\(options.changesPerSecond) changes/s per presentity, NOTIFY interval \(Int(options.intervalMilliseconds)) ms")
print(String(format: "  subscribed %d of %d (initial NOTIFYs %d) in %.1f s", subscribedCount, total, initialCount, subscribeSeconds))
print(String(format: "  changes %d (%.0f/s), NOTIFYs %d (%.0f/s sustained over %.1f s), coalescing %.2f changes per NOTIFY per watcher",
             changes, Double(changes) / measured, notifies, Double(notifies) / measured, measured,
             notifies > 0 ? Double(changes) * watchersPerPresentity / Double(notifies) : 0))
print(String(format: "  latency publish->NOTIFY: p50 %.1f ms, p99 %.1f ms, max %.1f ms", percentile(0.5), percentile(0.99), sorted.last ?? .nan))
if options.pid != nil {
    print(String(format: "  tern CPU %.2f s (%.1f us per NOTIFY), RSS %d -> %d KiB subscribed (%d bytes per subscription) -> %d KiB at the end",
                 cpuAfter - cpuBefore, notifies > 0 ? (cpuAfter - cpuBefore) * 1e6 / Double(notifies) : 0,
                 rssBefore, rssSubscribed, total > 0 ? (rssSubscribed - rssBefore) * 1024 / total : 0, rssAfter))
}
if let heapBefore, let heapSubscribed {
    print(String(format: "  live heap %.1f -> %.1f MiB subscribed: %d bytes per subscription", Double(heapBefore) / 1_048_576,
                 Double(heapSubscribed) / 1_048_576, total > 0 ? (heapSubscribed - heapBefore) / total : 0))
}
print("  changes not sent because the presentity's last PUBLISH was unanswered: \(publishesSkipped); PUBLISHes lost (no answer in 2 s): \(publishesLost)")
if !errors.isEmpty { print("  error responses: \(errors.sorted { $0.key < $1.key })") }
for channel in channels { try channel.close().wait() }
try group.syncShutdownGracefully()
