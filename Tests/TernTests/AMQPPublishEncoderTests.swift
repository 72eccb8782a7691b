@testable import EventBus
import Testing

/// The frames a batch is written as (AMQP 0-9-1 §4.2.3, §4.2.6), read back field by field.
struct AMQPPublishEncoderTests {
    struct Frame: Equatable {
        var type: UInt8
        var channel: UInt16
        var payload: [UInt8]
    }

    static func frames(_ bytes: [UInt8]) -> [Frame]? {
        var frames: [Frame] = []
        var index = 0
        while index < bytes.count {
            guard index + 7 <= bytes.count else { return nil }
            let size = bytes[(index + 3)..<(index + 7)].reduce(0) { $0 << 8 | Int($1) }
            let end = index + 7 + size
            guard end < bytes.count, bytes[end] == 0xCE else { return nil }
            frames.append(Frame(type: bytes[index], channel: UInt16(bytes[index + 1]) << 8 | UInt16(bytes[index + 2]),
                                payload: Array(bytes[(index + 7)..<end])))
            index = end + 1
        }
        return frames
    }

    static func shortString(_ bytes: [UInt8], at index: inout Int) -> String {
        let count = Int(bytes[index])
        defer { index += 1 + count }
        return String(decoding: bytes[(index + 1)..<(index + 1 + count)], as: UTF8.self)
    }

    static func publish(body: String, frameMax: Int) -> [UInt8] {
        var out: [UInt8] = [0xAA]  // what earlier messages of the batch left stays as it is
        AMQPPublishEncoder(channel: 1, frameMax: frameMax).appendPublish(
            into: &out, exchange: "tern.events", routingKey: "registration.added",
            messageID: { $0.append(contentsOf: "id-7".utf8) }, body: { $0.append(contentsOf: body.utf8) })
        return out
    }

    @Test func aPublishIsMethodHeaderAndBodyFrames() throws {
        let body = #"{"id":"id-7","payload":{}}"#
        let bytes = Self.publish(body: body, frameMax: 131_072)
        #expect(bytes.first == 0xAA)
        let frames = try #require(Self.frames(Array(bytes.dropFirst())))
        #expect(frames.map(\.type) == [1, 2, 3])
        #expect(frames.allSatisfy { $0.channel == 1 })
        let method = frames[0].payload
        #expect(Array(method[0..<4]) == [0, 60, 0, 40])
        var index = 6
        #expect(Self.shortString(method, at: &index) == "tern.events")
        #expect(Self.shortString(method, at: &index) == "registration.added")
        let header = frames[1].payload
        #expect(Array(header[0..<4]) == [0, 60, 0, 0])
        #expect(header[4..<12].reduce(0) { $0 << 8 | Int($1) } == body.utf8.count)
        #expect(Array(header[12..<14]) == [0x90, 0x80])
        index = 14
        #expect(Self.shortString(header, at: &index) == "application/json")
        #expect(header[index] == 2)
        index += 1
        #expect(Self.shortString(header, at: &index) == "id-7")
        #expect(frames[2].payload == Array(body.utf8))
    }

    @Test func aBodyLargerThanAFrameIsCutIntoFrames() throws {
        let body = String(repeating: "0123456789", count: 7) + "xyz"
        let frames = try #require(Self.frames(Array(Self.publish(body: body, frameMax: 40).dropFirst())))
        // frame-max counts the 8 bytes of frame overhead: 32 bytes of body per frame.
        #expect(frames.map(\.type) == [1, 2, 3, 3, 3])
        #expect(frames[2...].map(\.payload.count) == [32, 32, 9])
        #expect(frames[1].payload[4..<12].reduce(0) { $0 << 8 | Int($1) } == 73)
        #expect(frames[2...].flatMap(\.payload) == Array(body.utf8))
    }
}
