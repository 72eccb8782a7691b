public import NIOCore

/// A JSON object written field by field as UTF-8, in the order given: how a deferred payload
/// (``DeferredEventPayload``) is written into the publisher's frame buffer without a tree of
/// ``JSONValue``s.
public struct JSONObjectWriter: Sendable {
    private var bytes: [UInt8]
    private var empty = true

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// A string field; nil is written as `null`.
    public mutating func add(_ key: StaticString, _ value: String?) {
        appendKey(key)
        if let value { JSONValue.writeString(value, into: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
    }

    public mutating func add(_ key: StaticString, _ value: Int64) {
        appendKey(key)
        JSONValue.writeInteger(value, into: &bytes)
    }

    /// Unix milliseconds as an RFC 3339 string, like ``JSONValue/timestamp(_:)``.
    public mutating func add(_ key: StaticString, timestamp milliseconds: Int64) {
        appendKey(key)
        bytes.append(UInt8(ascii: "\""))
        TernEvent.appendRFC3339(milliseconds, into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// `192.0.2.1:5060` or `[2001:db8::1]:5060`; nil is written as `null`. Written in place: no
    /// joined string on the SIP thread (an IPv4 address alone fits in a small string).
    public mutating func add(_ key: StaticString, hostPort address: SocketAddress?) {
        guard let address else { return add(key, nil as String?) }
        appendKey(key)
        bytes.append(UInt8(ascii: "\""))
        if case .v4(let v4) = address {
            // The octets and port straight from the sockaddr_in's bytes (family, port, address, in
            // network order): `ipAddress` formats a string first, and `withSockAddr` is a generic
            // call that looked its type metadata up every time. Bytes, not fields: which C module
            // a field is visible through varies by build.
            withUnsafeBytes(of: v4.address) { raw in
                for index in 4..<8 {
                    JSONValue.writeInteger(Int64(raw[index]), into: &bytes)
                    bytes.append(index == 7 ? UInt8(ascii: ":") : UInt8(ascii: "."))
                }
                JSONValue.writeInteger(Int64(raw[2]) << 8 | Int64(raw[3]), into: &bytes)
            }
            bytes.append(UInt8(ascii: "\""))
            return
        }
        let host = address.ipAddress ?? "?"
        let bracketed = host.utf8.contains(UInt8(ascii: ":"))
        if bracketed { bytes.append(UInt8(ascii: "[")) }
        bytes.append(contentsOf: host.utf8)
        if bracketed { bytes.append(UInt8(ascii: "]")) }
        bytes.append(UInt8(ascii: ":"))
        JSONValue.writeInteger(Int64(address.port ?? 0), into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// `payload` written as an object at the end of `out`, with no buffer of its own: the
    /// writer works in `out`'s storage, moved in and out of it.
    static func append(_ payload: any DeferredEventPayload, to out: inout [UInt8]) {
        var writer = JSONObjectWriter(bytes: [])
        swap(&writer.bytes, &out)
        writer.bytes.append(UInt8(ascii: "{"))
        payload.write(into: &writer)
        writer.bytes.append(UInt8(ascii: "}"))
        swap(&writer.bytes, &out)
    }

    /// `payload` written as an object on its own.
    static func written(_ payload: any DeferredEventPayload) -> [UInt8] {
        var out: [UInt8] = []
        append(payload, to: &out)
        return out
    }

    /// Keys are the source's own literals: plain ASCII, never escaped.
    private mutating func appendKey(_ key: StaticString) {
        if !empty { bytes.append(UInt8(ascii: ",")) }
        empty = false
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }
}
