#if canImport(Glibc)
import Glibc
#endif

/// Splits and normalises raw header values: line folding, comma-separated lists.
package enum HeaderValueSplitter {
    /// Replaces each folded line break (optional whitespace, CRLF, whitespace) by one space and trims
    /// the ends, as RFC 3261 §7.3.1 says a folded value means the same as an unfolded one.
    package static func unfold(_ bytes: UnsafeRawBufferPointer) -> String {
        if !hasLineBreak(bytes) { return String(decoding: bytes, as: UTF8.self) }
        return String(decoding: unfoldedBytes(bytes), as: UTF8.self)
    }

    /// ``unfold(_:)`` as bytes, for parsers that scan bytes: no String between the message and them.
    package static func unfoldedBytes(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        if !hasLineBreak(bytes) {
            // One copy of the whole: `Array(bytes)` went byte by byte through the raw buffer.
            return [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
                count = bytes.count
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0D || byte == 0x0A {
                while let last = out.last, last == 0x20 || last == 0x09 { out.removeLast() }
                while index < bytes.count, isFoldingByte(bytes[index]) { index += 1 }
                out.append(0x20)
                continue
            }
            out.append(byte)
            index += 1
        }
        return out
    }

    private static func hasLineBreak(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // memchr reads many bytes at a time; every header value the typed parsers read comes here.
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
        return memchr(base, 0x0D, bytes.count) != nil || memchr(base, 0x0A, bytes.count) != nil
    }

    @inline(__always)
    private static func isFoldingByte(_ byte: UInt8) -> Bool {
        byte == 0x0D || byte == 0x0A || byte == 0x20 || byte == 0x09
    }

    /// Splits a list header value at commas that are outside quoted strings and `<...>`
    /// (RFC 3261 §7.3.1), trimming whitespace around each element and dropping empty ones. Elements
    /// are cut from the value by offsets; a value that is one element already trimmed (most Via,
    /// Route and Record-Route lines) is returned as it is, with no copy.
    package static func splitList(_ value: String) -> [String] {
        var contiguous = value
        return contiguous.withUTF8 { bytes in
            var elements: [String] = []
            var start = 0
            while let comma = firstListComma(in: UnsafeRawBufferPointer(bytes), from: start) {
                appendTrimmed(bytes, start..<comma, whole: value, to: &elements)
                start = comma + 1
            }
            appendTrimmed(bytes, start..<bytes.count, whole: value, to: &elements)
            return elements
        }
    }

    /// The offset of the first comma at or after `start` that separates list elements: outside
    /// quoted strings and `<...>` (RFC 3261 §7.3.1). A scan starts outside both.
    package static func firstListComma(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var inQuotes = false
        var inAngle = false
        var escaped = false
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            defer { index += 1 }
            if inQuotes {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inQuotes = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inQuotes = true
            case UInt8(ascii: "<"): inAngle = true
            case UInt8(ascii: ">"): inAngle = false
            case UInt8(ascii: ",") where !inAngle: return index
            default: break
            }
        }
        return nil
    }

    private static func appendTrimmed(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, whole: String,
                                      to elements: inout [String]) {
        var start = range.lowerBound
        var end = range.upperBound
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        guard start < end else { return }
        if start == 0, end == bytes.count {
            elements.append(whole)
        } else {
            elements.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
        }
    }
}
