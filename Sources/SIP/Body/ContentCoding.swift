internal import CZlib
public import NIOCore

/// The Content-Encoding codings Tern can apply to a SIP body (RFC 3261 §20.12, RFC 9110 §8.4.1).
///
/// `gzip` is RFC 1952 (zlib windowBits 31); `deflate` is the zlib format of RFC 1950 (windowBits
/// 15). Decoding `deflate` also accepts raw RFC 1951 data without the zlib header, as some peers
/// send it. Decoding stops at a maximum size so a small body cannot expand without bound.
public enum ContentCoding: String, Sendable, Hashable, CaseIterable {
    case gzip
    case deflate

    /// The decoded size limit when none is given: 1 MiB.
    public static let defaultMaximumDecodedSize = 1 << 20

    /// Reads a Content-Encoding token (`gzip`, `x-gzip` or `deflate`, ASCII case-insensitive).
    public init?(headerValue: some StringProtocol) {
        let token = String(decoding: headerValue.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
        switch token {
        case "gzip", "x-gzip": self = .gzip
        case "deflate": self = .deflate
        default: return nil
        }
    }

    // MARK: - Detection

    /// Guesses the coding of `body` from its first bytes: the gzip magic `1f 8b 08`
    /// (RFC 1952 §2.3.1) or a valid zlib header (RFC 1950 §2.2: method 8, window ≤ 32 KiB,
    /// and the header a multiple of 31). Nil means neither, which includes raw deflate and
    /// plain text.
    public static func detect(_ body: ByteBuffer) -> ContentCoding? {
        let view = body.readableBytesView
        guard view.count >= 2, let first = view.first else { return nil }
        let second = view[view.index(after: view.startIndex)]
        if first == 0x1F, second == 0x8B, view.count >= 3, view[view.index(view.startIndex, offsetBy: 2)] == 8 {
            return .gzip
        }
        return hasZlibHeader(first, second) ? .deflate : nil
    }

    /// Whether two bytes form a zlib header: CM 8, CINFO ≤ 7, and (CMF·256 + FLG) % 31 == 0.
    static func hasZlibHeader(_ cmf: UInt8, _ flg: UInt8) -> Bool {
        cmf & 0x0F == 8 && cmf >> 4 <= 7 && (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0
    }

    // MARK: - Encoding

    /// Compresses the readable bytes of `body`.
    /// - Parameters:
    ///   - coding: `.gzip` or `.deflate` (zlib-wrapped).
    ///   - level: zlib level from 0 (store) to 9 (smallest), clamped to that range; default 6.
    /// - Throws: ``ContentCoding/Error/zlib(code:)`` if zlib fails, which means no memory.
    public static func encode(
        _ body: ByteBuffer, coding: ContentCoding, level: Int = 6,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(ContentCoding.Error) -> ByteBuffer {
        guard body.readableBytes <= Int(UInt32.max) else { throw .inputTooLarge }
        var stream = z_stream()
        let initialized = tern_deflateInit2(&stream, Int32(min(max(level, 0), 9)), coding.windowBits)
        guard initialized == Z_OK else { throw .zlib(code: Int(initialized)) }
        defer { deflateEnd(&stream) }

        var output = allocator.buffer(capacity: Int(deflateBound(&stream, uLong(body.readableBytes))))
        let result: Result<Void, ContentCoding.Error> = body.withUnsafeReadableBytes { input in
            // zlib never writes through next_in; the pointer is mutable only in its C declaration.
            stream.next_in = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            while true {
                var code = Z_BUF_ERROR  // stays so if no output space could be had
                var produced = 0
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: 4096) { out in
                    guard let base = out.baseAddress else { return 0 }
                    let room = min(out.count, Int(UInt32.max))
                    stream.next_out = base.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(room)
                    code = CZlib.deflate(&stream, Z_FINISH)
                    produced = room - Int(stream.avail_out)
                    return produced
                }
                if code == Z_STREAM_END { return .success(()) }
                // Z_BUF_ERROR with nothing written means zlib cannot progress: never loop on it.
                guard code == Z_OK || (code == Z_BUF_ERROR && produced > 0) else {
                    return .failure(.zlib(code: Int(code)))
                }
            }
        }
        try result.get()
        return output
    }

    // MARK: - Decoding

    /// Decompresses the readable bytes of `body`.
    ///
    /// For `.deflate`, data that does not start with a zlib header is inflated as raw deflate.
    /// For `.gzip`, concatenated members are decoded one after another (RFC 1952 §2.2).
    /// - Parameters:
    ///   - coding: The coding named by Content-Encoding.
    ///   - maximumDecodedSize: The most bytes the result may hold; default
    ///     ``defaultMaximumDecodedSize`` (1 MiB). Decoding stops as soon as it would pass it.
    /// - Throws: ``ContentCoding/Error`` — ``Error/decodedSizeExceeded(limit:)`` past the limit,
    ///   ``Error/corruptData`` for bytes that are not the coding, ``Error/truncated`` if they end early.
    public static func decode(
        _ body: ByteBuffer, coding: ContentCoding,
        maximumDecodedSize: Int = ContentCoding.defaultMaximumDecodedSize,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(ContentCoding.Error) -> ByteBuffer {
        guard body.readableBytes <= Int(UInt32.max) else { throw .inputTooLarge }
        let limit = min(max(0, maximumDecodedSize), Int.max - 1)
        var windowBits = coding.windowBits
        if coding == .deflate {
            let view = body.readableBytesView
            let header = view.count >= 2
                ? hasZlibHeader(view[view.startIndex], view[view.index(after: view.startIndex)])
                : false
            if !header { windowBits = -15 }  // raw RFC 1951 data
        }
        var stream = z_stream()
        let initialized = tern_inflateInit2(&stream, windowBits)
        guard initialized == Z_OK else { throw .zlib(code: Int(initialized)) }
        defer { inflateEnd(&stream) }

        var output = allocator.buffer(capacity: min(limit, max(256, body.readableBytes * 4)))
        let result: Result<Void, ContentCoding.Error> = body.withUnsafeReadableBytes { input in
            // zlib never writes through next_in; the pointer is mutable only in its C declaration.
            stream.next_in = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            while true {
                // Room for at most limit + 1 bytes in all, so one byte too many is detected.
                let chunk = min(limit - output.readableBytes, 16_383) + 1
                var code = Z_BUF_ERROR  // stays so if no output space could be had
                var produced = 0
                let availableBefore = stream.avail_in
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { out in
                    guard let base = out.baseAddress else { return 0 }
                    stream.next_out = base.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(chunk)
                    code = inflate(&stream, Z_NO_FLUSH)
                    produced = chunk - Int(stream.avail_out)
                    return produced
                }
                if output.readableBytes > limit { return .failure(.decodedSizeExceeded(limit: limit)) }
                switch code {
                case Z_STREAM_END:
                    // RFC 1952 §2.2: a gzip file may be several members; anything else is garbage.
                    guard stream.avail_in > 0 else { return .success(()) }
                    guard coding == .gzip else { return .failure(.trailingData) }
                    let reset = inflateReset(&stream)
                    guard reset == Z_OK else { return .failure(.zlib(code: Int(reset))) }
                case Z_OK:
                    if produced == 0, stream.avail_in == availableBefore { return .failure(.corruptData) }
                case Z_BUF_ERROR:
                    // No progress possible: all input used but the stream has not ended.
                    if stream.avail_in == 0 { return .failure(.truncated) }
                    if produced == 0, stream.avail_in == availableBefore { return .failure(.corruptData) }
                case Z_DATA_ERROR, Z_NEED_DICT:
                    return .failure(.corruptData)
                default:
                    return .failure(.zlib(code: Int(code)))
                }
            }
        }
        try result.get()
        return output
    }

    private var windowBits: Int32 {
        switch self {
        case .gzip: 31  // 15 + 16 selects the gzip wrapper
        case .deflate: 15
        }
    }
}

// MARK: - Error

extension ContentCoding {
    /// Why a body could not be encoded or decoded.
    public enum Error: Swift.Error, Sendable, Hashable {
        /// Decoding would produce more than `limit` bytes.
        case decodedSizeExceeded(limit: Int)
        /// The bytes are not valid data of the coding (bad header, checksum or block).
        case corruptData
        /// The data ends before the compressed stream does.
        case truncated
        /// Bytes follow the end of a `deflate` stream.
        case trailingData
        /// The input is larger than zlib can take in one call (4 GiB).
        case inputTooLarge
        /// zlib reported another failure, such as `Z_MEM_ERROR` (-4).
        case zlib(code: Int)
    }
}
