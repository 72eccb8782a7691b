import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A push gateway for tests: an HTTP server on an ephemeral loopback port that records every POST
/// and answers it after `delay` with `status`.
final class TestPushGateway: Sendable {
    struct Received: Sendable {
        var path: String
        var authorization: String?
        var body: String
        /// Decoded JSON body (nil when it is not a JSON object).
        var json: [String: String]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: String]
        }
    }

    private let channel: any Channel
    private let state: NIOLockedValueBox<State>

    struct State {
        var received: [Received] = []
        var delay: TimeAmount = .zero
        var status: HTTPResponseStatus = .ok
    }

    var port: Int { channel.localAddress?.port ?? 0 }
    var url: String { "http://127.0.0.1:\(port)/push" }
    var received: [Received] { state.withLockedValue { $0.received } }

    func answer(after delay: TimeAmount, status: HTTPResponseStatus = .ok) {
        state.withLockedValue { state in
            state.delay = delay
            state.status = status
        }
    }

    private init(channel: any Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    static func start() async throws -> TestPushGateway {
        let state = NIOLockedValueBox(State())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestPushGateway(channel: channel, state: state)
    }

    /// Waits until `count` pushes arrived (or `timeout` passes) and returns what arrived.
    func waitFor(_ count: Int, timeout: Duration = .seconds(5)) async -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while received.count < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return received
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let state: NIOLockedValueBox<State>
        let partial = NIOLockedValueBox<(head: HTTPRequestHead?, body: ByteBuffer)>((nil, ByteBuffer()))

        init(state: NIOLockedValueBox<State>) {
            self.state = state
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                partial.withLockedValue { $0 = (head, ByteBuffer()) }
            case .body(var chunk):
                partial.withLockedValue { _ = $0.body.writeBuffer(&chunk) }
            case .end:
                let (head, body) = partial.withLockedValue { $0 }
                guard let head else { return }
                let (delay, status) = state.withLockedValue { state -> (TimeAmount, HTTPResponseStatus) in
                    state.received.append(Received(path: head.uri, authorization: head.headers.first(name: "Authorization"),
                                                   body: String(buffer: body)))
                    return (state.delay, state.status)
                }
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: delay) {
                    let context = loopBound.value
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Length", value: "2")
                    headers.add(name: "Content-Type", value: "application/json")
                    context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "{}")))), promise: nil)
                    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                }
            }
        }
    }
}
