/// Encodes `basic.publish` as wire frames (AMQP 0-9-1 §4.2.3, §4.2.6), so that a batch of
/// events goes to the socket in one write. librabbitmq's `amqp_basic_publish` writes the method,
/// header and body frames of every message with a system call each; at thousands of events a
/// second those calls were most of the bus's cost.
struct AMQPPublishEncoder {
    let channel: UInt16
    /// The connection's negotiated frame size: bodies are split into frames no larger.
    let frameMax: Int

    /// The three (or more) frames of one persistent JSON message, with the message id written by
    /// `messageID` (an event spells its id straight into the frame).
    func appendPublish(into out: inout [UInt8], exchange: String, routingKey: String, messageID: (inout [UInt8]) -> Void, body: [UInt8]) {
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
        appendFrame(into: &out, type: 2) { payload in
            Self.append16(60, &payload)
            Self.append16(0, &payload)
            Self.append64(UInt64(body.count), &payload)
            Self.append16(0x8000 | 0x1000 | 0x0080, &payload)  // content-type, delivery-mode, message-id
            Self.appendShortString("application/json", &payload)
            payload.append(2)  // persistent
            Self.appendShortString(&payload, messageID)
        }
        var offset = 0
        let chunk = max(1, frameMax - 8)
        while offset < body.count {
            let end = min(body.count, offset + chunk)
            appendFrame(into: &out, type: 3) { payload in payload.append(contentsOf: body[offset..<end]) }
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
        let size = UInt32(out.count - sizeAt - 4)
        out[sizeAt] = UInt8(size >> 24)
        out[sizeAt + 1] = UInt8((size >> 16) & 0xFF)
        out[sizeAt + 2] = UInt8((size >> 8) & 0xFF)
        out[sizeAt + 3] = UInt8(size & 0xFF)
        out.append(0xCE)
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
