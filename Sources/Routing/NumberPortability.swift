import Foundation

/// Ported numbers and their routing numbers (RFC 4694 `rn`), for a dip before least-cost routing.
/// Numbers are kept as integers (one sentinel digit keeps leading zeros and the `+`), so a million
/// entries cost about 40 MB rather than hundreds.
public struct NumberPortability: Sendable {
    private var table: [UInt64: UInt64]

    public init() {
        table = [:]
    }

    public var count: Int { table.count }

    public mutating func add(number: String, routingNumber: String) -> Bool {
        guard let key = Self.encode(number), let value = Self.encode(routingNumber) else { return false }
        table[key] = value
        return true
    }

    /// The routing number of a ported number; nil when the number was not ported.
    public func routingNumber(for number: String) -> String? {
        guard let key = Self.encode(number), let value = table[key] else { return nil }
        return Self.decode(value)
    }

    /// Reads `number,routing_number` lines (a header line, blank lines and `#` comments are skipped).
    /// Parsed from the bytes as they are: a million lines load in well under a second (release).
    /// - Throws: ``LoadError`` naming the first bad line.
    public static func load(path: String) throws -> NumberPortability {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var portability = NumberPortability()
        portability.table.reserveCapacity(data.count / 24)
        var lineNumber = 0
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) throws in
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                lineNumber += 1
                let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                start = end + 1
                guard let fields = Self.fields(line) else { continue }
                guard let key = fields.0, let value = fields.1 else {
                    // A first line of column names is a header, not an error.
                    if lineNumber == 1, line.first.map({ $0 >= UInt8(ascii: "A") }) == true { continue }
                    throw LoadError(path: path, line: lineNumber, text: String(decoding: line, as: UTF8.self))
                }
                portability.table[key] = value
            }
        }
        return portability
    }

    /// The two encoded numbers of a line; nil for a line to skip (blank, comment), nil fields when bad.
    private static func fields(_ line: UnsafeRawBufferPointer) -> (UInt64?, UInt64?)? {
        var first = 0, last = line.count
        while first < last, line[first] == 32 || line[first] == 9 { first += 1 }
        while last > first, line[last - 1] == 32 || line[last - 1] == 9 || line[last - 1] == 13 { last -= 1 }
        guard first < last, line[first] != UInt8(ascii: "#") else { return nil }
        guard let comma = (first..<last).first(where: { line[$0] == UInt8(ascii: ",") }) else { return (nil, nil) }
        return (encode(line, first..<comma), encode(line, (comma + 1)..<last))
    }

    private static func encode(_ line: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper, line[lower] == 32 { lower += 1 }
        while upper > lower, line[upper - 1] == 32 { upper -= 1 }
        return encode(String(decoding: UnsafeRawBufferPointer(rebasing: line[lower..<upper]), as: UTF8.self))
    }

    public struct LoadError: Error, CustomStringConvertible {
        public var path: String
        public var line: Int
        public var text: String
        public var description: String { "\(path) line \(line): expected number,routing_number (digits, an optional +): \(text)" }
    }

    /// `+` and up to 17 digits as an integer: 1 (or 2 with `+`) then the digits.
    static func encode(_ number: String) -> UInt64? {
        var digits = Substring(number)
        var value: UInt64 = 1
        if digits.first == "+" {
            value = 2
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.count <= 17 else { return nil }
        for character in digits.utf8 {
            guard character >= 48, character <= 57 else { return nil }
            value = value * 10 + UInt64(character - 48)
        }
        return value
    }

    static func decode(_ value: UInt64) -> String {
        let text = String(value)
        return (text.first == "2" ? "+" : "") + text.dropFirst()
    }
}
