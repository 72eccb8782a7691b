import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// A JSON value of an event's payload.
public enum JSONValue: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])
    /// Unix milliseconds, written as an RFC 3339 string: formatted by the publisher, not by the
    /// SIP thread that made the event.
    case timestamp(Int64)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.json == rhs.json }
    public func hash(into hasher: inout Hasher) { hasher.combine(json) }

    /// Compact JSON, keys in the order given.
    public var json: String {
        var out: [UInt8] = []
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends compact JSON as UTF-8 (the publisher writes events straight into its frame buffer).
    public func write(into out: inout [UInt8]) {
        switch self {
        case .string(let text): JSONValue.writeString(text, into: &out)
        case .int(let number): JSONValue.writeInteger(number, into: &out)
        case .double(let number): out.append(contentsOf: (number.isFinite ? String(number) : "null").utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            JSONValue.writeObject(fields, into: &out)
        case .timestamp(let milliseconds):
            out.append(UInt8(ascii: "\""))
            TernEvent.appendRFC3339(milliseconds, into: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    static func writeObject(_ fields: [(String, JSONValue)], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, field) in fields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(field.0, into: &out)
            out.append(UInt8(ascii: ":"))
            field.1.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func writeInteger(_ number: Int64, into out: inout [UInt8]) {
        if number < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = number.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for index in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[index]) }
        }
    }

    /// `text` as a JSON string literal, quotes included.
    public static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        writeString(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func writeString(_ text: String, into out: inout [UInt8]) {
        // Most values (AORs, ids, URIs) need no escaping: copied whole, read in place (a `var`
        // copy for `withUTF8` was a retain and a release of a string another core made).
        let plain = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: bytes)
            out.append(UInt8(ascii: "\""))
            return true
        }
        if plain == true { return }
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default:
                // UTF-8 passes through as it is: JSON text is UTF-8.
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// One event for the bus (docs/events.md has every type and its payload). The envelope is the same
/// for all: `id` (consumers drop duplicates by it: delivery is at least once), `type` (also the
/// routing key), `time` (RFC 3339, UTC, milliseconds), `node`, `version` (of the schema) and `payload`.
public struct TernEvent: Sendable {
    public static let schemaVersion = 1

    /// Unique across nodes and restarts: a random prefix per process, then a counter.
    public var id: String {
        get { givenID ?? TernEvent.idPrefix + String(serial, radix: 16) }
        set { givenID = newValue }
    }
    public var type: String
    /// Unix milliseconds.
    public var time: Int64
    /// The payload's fields (a deferred payload is written and parsed back).
    public var payload: [(String, JSONValue)] {
        get {
            guard let deferred else { return fields }
            guard case .object(let fields)? = try? JSONValue.parse(JSONObjectWriter.written(deferred)) else { return [] }
            return fields
        }
        set {
            fields = newValue
            deferred = nil
        }
    }

    /// The payload as JSON text.
    public var payloadJSON: String {
        guard let deferred else { return JSONValue.object(fields).json }
        return String(decoding: JSONObjectWriter.written(deferred), as: UTF8.self)
    }

    // The payload is a tree of values, or what the source already held, written by the publisher
    // straight into its frame buffer. A tree is a dozen allocations made on a SIP thread and
    // released one by one on the publisher's (a third of its time per event at 5,000 a second); a
    // registration event instead holds its binding (one reference), so the SIP thread neither
    // writes JSON nor allocates a buffer that the publisher's thread would free. Two stored
    // properties rather than an enum, and likewise for the id: reading a case's value out of an
    // enum copied the whole event on the publisher's thread.
    private var fields: [(String, JSONValue)]
    private var deferred: (any DeferredEventPayload)?
    /// This process's events keep the counter and are spelled out by the publisher, when it
    /// writes them (no string is built on the SIP thread that made the event); events read back
    /// from the spill store keep the id they had, in `givenID`.
    private var serial: UInt64
    private var givenID: String?

    /// - Parameter id: nil for a new one, unique across nodes and restarts.
    public init(type: String, payload: [(String, JSONValue)], id: String? = nil, time: Int64 = TernEvent.now()) {
        self.serial = id == nil ? Self.idCounter.wrappingIncrementThenLoad(ordering: .relaxed) : 0
        self.givenID = id
        self.type = type
        self.time = time
        self.fields = payload
        self.deferred = nil
    }

    /// A new event whose payload the publisher writes when it sends the event.
    public init(type: String, deferred payload: some DeferredEventPayload, time: Int64 = TernEvent.now()) {
        self.serial = Self.idCounter.wrappingIncrementThenLoad(ordering: .relaxed)
        self.givenID = nil
        self.type = type
        self.time = time
        self.fields = []
        self.deferred = payload
    }

    public static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    private static let idPrefix = String(UInt64.random(in: .min ... .max), radix: 16) + "-"
    private static let idPrefixBytes = Array(idPrefix.utf8)
    private static let idCounter = ManagedAtomic<UInt64>(0)

    /// The id's UTF-8 bytes, appended.
    public func appendID(into out: inout [UInt8]) {
        if let givenID {
            out.append(contentsOf: givenID.utf8)
            return
        }
        out.append(contentsOf: Self.idPrefixBytes)
        var shift = 60
        while shift > 0, (serial >> UInt64(shift)) & 0xF == 0 { shift -= 4 }
        while shift >= 0 {
            let digit = UInt8((serial >> UInt64(shift)) & 0xF)
            out.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            shift -= 4
        }
    }

    /// The message body.
    public func json(node: String) -> String {
        var out: [UInt8] = []
        appendJSON(node: node, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The message body appended as UTF-8 JSON.
    public func appendJSON(node: String, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"id":"#.utf8)
        if let givenID {
            JSONValue.writeString(givenID, into: &out)
        } else {
            out.append(UInt8(ascii: "\""))
            appendID(into: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: #","type":"#.utf8)
        JSONValue.writeString(type, into: &out)
        out.append(contentsOf: #","time":""#.utf8)
        Self.appendRFC3339(time, into: &out)
        out.append(contentsOf: #"","node":"#.utf8)
        JSONValue.writeString(node, into: &out)
        out.append(contentsOf: #","version":"#.utf8)
        JSONValue.writeInteger(Int64(Self.schemaVersion), into: &out)
        out.append(contentsOf: #","payload":"#.utf8)
        if let deferred { JSONObjectWriter.append(deferred, to: &out) } else { JSONValue.writeObject(fields, into: &out) }
        out.append(UInt8(ascii: "}"))
    }

    /// RFC 3339 UTC with milliseconds, as the envelope's `time`.
    public static func rfc3339String(_ milliseconds: Int64) -> String { rfc3339(milliseconds) }

    static func rfc3339(_ milliseconds: Int64) -> String {
        var out: [UInt8] = []
        appendRFC3339(milliseconds, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `2026-11-27T08:30:00.123Z`, written digit by digit. The date comes from the day count by
    /// integer arithmetic (the proleptic Gregorian calendar in 400-year eras), not `gmtime_r`:
    /// every registration event writes two of these, one on the SIP thread. The 24 characters go
    /// to a buffer on the stack and are appended at once, not one `append` each.
    static func appendRFC3339(_ milliseconds: Int64, into out: inout [UInt8]) {
        let (seconds, millisecond) = floorDivision(milliseconds, 1000)
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        let (year, month, day) = civilDate(daysSince1970: days)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { text in
            func two(_ value: Int64, at index: Int) {
                text[index] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value / 10 % 10)
                text[index + 1] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10)
            }
            two(year / 100, at: 0)
            two(year % 100, at: 2)
            text[4] = UInt8(ascii: "-")
            two(month, at: 5)
            text[7] = UInt8(ascii: "-")
            two(day, at: 8)
            text[10] = UInt8(ascii: "T")
            two(secondOfDay / 3600, at: 11)
            text[13] = UInt8(ascii: ":")
            two(secondOfDay / 60 % 60, at: 14)
            text[16] = UInt8(ascii: ":")
            two(secondOfDay % 60, at: 17)
            text[19] = UInt8(ascii: ".")
            text[20] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: millisecond / 100)
            two(millisecond % 100, at: 21)
            text[23] = UInt8(ascii: "Z")
            out.append(contentsOf: UnsafeBufferPointer(text))
        }
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = value % divisor
        return remainder < 0 ? (value / divisor - 1, remainder + divisor) : (value / divisor, remainder)
    }

    /// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01: the era of 146,097
    /// days, the year of era from the day of era with its leap days taken out, then the day of a
    /// year that starts in March (so that February's leap day comes last).
    static func civilDate(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let (era, dayOfEra) = floorDivision(days + 719_468, 146_097)
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// A payload kept as its source's own values until the event is published, then written as one
/// JSON object (see ``TernEvent/init(type:deferred:time:)``). What it holds must not change once
/// the event is made: it is read on the publisher's thread.
public protocol DeferredEventPayload: Sendable {
    func write(into payload: inout JSONObjectWriter)
}
