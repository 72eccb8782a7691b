public import NIOCore

/// Frames a stream into ``SIPStreamFramer/Frame`` values for the next handler.
///
/// A framing error is fired as an error and the bytes are discarded: the connection's own handler
/// decides to close it, which is the only safe answer once the message boundary is lost.
public struct SIPStreamDecoder: ByteToMessageDecoder {
    public typealias InboundOut = SIPStreamFramer.Frame

    private let framer: SIPStreamFramer

    public init(maxMessageSize: Int = 65_535) {
        self.framer = SIPStreamFramer(maxMessageSize: maxMessageSize)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch try framer.next(from: &buffer) {
        case .needMoreData:
            return .needMoreData
        case .frame(let frame):
            context.fireChannelRead(Self.wrapInboundOut(frame))
            return .continue
        }
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A half message at EOF can never complete; anything whole is still delivered.
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData { buffer.moveReaderIndex(to: buffer.writerIndex) }
        return state
    }
}
