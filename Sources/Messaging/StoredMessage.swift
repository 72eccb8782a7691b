import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// A MESSAGE (RFC 3428) kept for a user who could not take it when it arrived.
public struct StoredMessage: Sendable, Hashable {
    /// Sortable by time of storage: ordering by id is delivery order.
    public var id: String
    /// The recipient's address-of-record, `sip:user@domain`.
    public var recipient: String
    /// The original From header value (with its tag): the device sees who wrote.
    public var from: String
    /// The original To header value.
    public var to: String
    public var callID: String
    /// The original Date header value, or the time Tern stored the message (RFC 3261 §20.17).
    public var date: String
    public var contentType: String
    /// Content-Encoding when the body is compressed (kept as it came).
    public var contentEncoding: String?
    public var body: [UInt8]
    /// Unix milliseconds.
    public var storedAt: Int64
    public var expiresAt: Int64
    /// Delivery attempts that did not end in a 2xx.
    public var attempts: Int

    public init(id: String = StoredMessage.newID(), recipient: String, from: String, to: String, callID: String, date: String,
                contentType: String, contentEncoding: String? = nil, body: [UInt8], storedAt: Int64, expiresAt: Int64,
                attempts: Int = 0) {
        self.id = id
        self.recipient = recipient
        self.from = from
        self.to = to
        self.callID = callID
        self.date = date
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.body = body
        self.storedAt = storedAt
        self.expiresAt = expiresAt
        self.attempts = attempts
    }

    private static let sequence = NIOLockedValueBox<UInt32>(0)

    /// 13 hex digits of milliseconds, 8 of a per-process counter, 8 random: unique across nodes,
    /// and in storage order when compared as text.
    public static func newID() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        let milliseconds = UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
        let counter = sequence.withLockedValue { value -> UInt32 in
            value &+= 1
            return value
        }
        return hex(milliseconds, width: 13) + hex(UInt64(counter), width: 8) + hex(UInt64(UInt32.random(in: .min ... .max)), width: 8)
    }

    private static func hex(_ value: UInt64, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
