/// Encodes `basic.publish` as wire frames (AMQP 0-9-1 §4.2.3, §4.2.6), so that a batch of
/// events goes to the socket in one write. librabbitmq's `amqp_basic_publish` writes the method,
/// header and body frames of every message with a system call each; at thousands of events a
/// second those calls were most of the bus's cost.
struct AMQPPublishEncoder {
    let channel: UInt16
    /// The connection's negotiated frame size: bodies are split into frames no larger.
    let frameMax: Int

    /// The three (or more) frames of one persistent JSON message, with the message id written by
    /// `messageID` (an event spells its id straight into the frame) and the body by `body`, both
    /// in place: the body's size goes into the content header once it is written.
    func appendPublish(into out: inout [UInt8], exchange: String, routingKey: String, messageID: (inout [UInt8]) -> Void,
                       body: (inout [UInt8]) -> Void) {
        // Method frame: basic.publish (class 60, method 40), reserved short, exchange, routing key, flags.
        appendFrame(into: &out, type: 1) { payload in
            Self.append16(60, &payload)
            Self.append16(40, &payload)
            Self.append16(0, &payload)
            Self.appendShortString(exchange, &payload)
            Self.appendShortString(routingKey, &payload)
            payload.append(0)  // neither mandatory nor immediate
        }
        // Content header: class, weight, body size, property flags, then the properties in flag order.
        var bodySizeAt = 0
        appendFrame(into: &out, type: 2) { payload in
            Self.append16(60, &payload)
            Self.append16(0, &payload)
            bodySizeAt = payload.count
            Self.append64(0, &payload)
            Self.append16(0x8000 | 0x1000 | 0x0080, &payload)  // content-type, delivery-mode, message-id
            Self.appendShortString("application/json", &payload)
            payload.append(2)  // persistent
            Self.appendShortString(&payload, messageID)
        }
        // The body as one frame; the rare body larger than a frame is cut into more afterwards.
        var bodyAt = 0
        appendFrame(into: &out, type: 3) { payload in
            bodyAt = payload.count
            body(&payload)
        }
        let bodyCount = out.count - 1 - bodyAt
        Self.put64(UInt64(bodyCount), at: bodySizeAt, in: &out)
        let chunk = max(1, frameMax - 8)
        guard bodyCount > chunk else { return }
        let rest = Array(out[(bodyAt + chunk)..<(bodyAt + bodyCount)])
        out.removeLast(bodyCount - chunk + 1)
        Self.put32(UInt32(chunk), at: bodyAt - 4, in: &out)
        out.append(0xCE)
        var offset = 0
        while offset < rest.count {
            let end = min(rest.count, offset + chunk)
            appendFrame(into: &out, type: 3) { payload in payload.append(contentsOf: rest[offset..<end]) }
            offset = end
        }
    }

    /// type, channel, size, payload, frame-end; the size is filled in once the payload is written.
    private func appendFrame(into out: inout [UInt8], type: UInt8, _ payload: (inout [UInt8]) -> Void) {
        out.append(type)
        Self.append16(channel, &out)
        let sizeAt = out.count
        out.append(0)
        out.append(0)
        out.append(0)
        out.append(0)
        payload(&out)
        Self.put32(UInt32(out.count - sizeAt - 4), at: sizeAt, in: &out)
        out.append(0xCE)
    }

    private static func put32(_ value: UInt32, at index: Int, in out: inout [UInt8]) {
        for byte in 0..<4 { out[index + byte] = UInt8((value >> UInt32(24 - 8 * byte)) & 0xFF) }
    }

    private static func put64(_ value: UInt64, at index: Int, in out: inout [UInt8]) {
        for byte in 0..<8 { out[index + byte] = UInt8((value >> UInt64(56 - 8 * byte)) & 0xFF) }
    }

    private static func append16(_ value: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(value >> 8))
        out.append(UInt8(value & 0xFF))
    }

    private static func append64(_ value: UInt64, _ out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((value >> UInt64(shift)) & 0xFF)) }
    }

    /// A short string is at most 255 bytes; longer names are cut (exchange and routing key are
    /// configuration and event types, message ids are Tern's own: none comes near).
    private static func appendShortString(_ text: String, _ out: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            let kept = UnsafeBufferPointer(rebasing: bytes.prefix(255))
            out.append(UInt8(kept.count))
            out.append(contentsOf: kept)
        }
    }

    /// A short string written by `write`, cut at 255 bytes like the other.
    private static func appendShortString(_ out: inout [UInt8], _ write: (inout [UInt8]) -> Void) {
        let lengthAt = out.count
        out.append(0)
        write(&out)
        let length = out.count - lengthAt - 1
        if length > 255 { out.removeLast(length - 255) }
        out[lengthAt] = UInt8(min(length, 255))
    }
}
