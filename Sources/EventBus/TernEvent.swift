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

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.json == rhs.json }
    public func hash(into hasher: inout Hasher) { hasher.combine(json) }

    /// Compact JSON, keys in the order given.
    public var json: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let text): JSONValue.writeString(text, into: &out)
        case .int(let number): out += String(number)
        case .double(let number): out += number.isFinite ? String(number) : "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .null: out += "null"
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(into: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, field) in fields.enumerated() {
                if index > 0 { out += "," }
                JSONValue.writeString(field.0, into: &out)
                out += ":"
                field.1.write(into: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ text: String, into out: inout String) {
        // Most values (AORs, ids, times) need no escaping: append them whole.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += "\""
            out += text
            out += "\""
            return
        }
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// One event for the bus (docs/events.md has every type and its payload). The envelope is the same
/// for all: `id` (consumers drop duplicates by it: delivery is at least once), `type` (also the
/// routing key), `time` (RFC 3339, UTC, milliseconds), `node`, `version` (of the schema) and `payload`.
public struct TernEvent: Sendable {
    public static let schemaVersion = 1

    public var id: String
    public var type: String
    /// Unix milliseconds.
    public var time: Int64
    public var payload: [(String, JSONValue)]

    public init(type: String, payload: [(String, JSONValue)], id: String = TernEvent.newID(), time: Int64 = TernEvent.now()) {
        self.id = id
        self.type = type
        self.time = time
        self.payload = payload
    }

    public static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    public static func newID() -> String {
        let high = UInt64.random(in: .min ... .max)
        let low = UInt64.random(in: .min ... .max)
        return String(high, radix: 16) + "-" + String(low, radix: 16)
    }

    /// The message body.
    public func json(node: String) -> String {
        JSONValue.object([
            ("id", .string(id)), ("type", .string(type)), ("time", .string(Self.rfc3339(time))), ("node", .string(node)),
            ("version", .int(Int64(Self.schemaVersion))), ("payload", .object(payload)),
        ]).json
    }

    /// RFC 3339 UTC with milliseconds, as the envelope's `time`.
    public static func rfc3339String(_ milliseconds: Int64) -> String { rfc3339(milliseconds) }

    static func rfc3339(_ milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0" + String(value) : String(value) }
        let millis = Int(milliseconds % 1000)
        let fraction = millis < 10 ? "00" + String(millis) : millis < 100 ? "0" + String(millis) : String(millis)
        return String(parts.tm_year + 1900) + "-" + two(parts.tm_mon + 1) + "-" + two(parts.tm_mday) + "T" + two(parts.tm_hour) + ":"
            + two(parts.tm_min) + ":" + two(parts.tm_sec) + "." + fraction + "Z"
    }
}
