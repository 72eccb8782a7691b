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

    /// Reads `number,routing_number` lines (a header line and `#` comments are skipped).
    /// - Throws: ``LoadError`` naming the first bad line.
    public static func load(path: String) throws -> NumberPortability {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var portability = NumberPortability()
        portability.table.reserveCapacity(data.count / 24)
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty || text.hasPrefix("#") || (lineNumber == 1 && text.lowercased().hasPrefix("number")) { continue }
            let fields = text.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 2, portability.add(number: fields[0], routingNumber: fields[1]) else {
                throw LoadError(path: path, line: lineNumber, text: text)
            }
        }
        return portability
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
