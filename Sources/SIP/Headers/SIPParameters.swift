/// An ordered list of `name[=value]` parameters with case-insensitive names (RFC 3261 §7.3.1).
public struct SIPParameters: Sendable, Hashable, Sequence, CustomStringConvertible {
    public struct Parameter: Sendable, Hashable {
        public var name: String
        /// The value as written (quoted values keep their quotes), or nil for a flag.
        public var value: String?
    }

    public private(set) var items: [Parameter] = []

    public init() {}

    public var isEmpty: Bool { items.isEmpty }
    public var count: Int { items.count }

    public func makeIterator() -> IndexingIterator<[Parameter]> { items.makeIterator() }

    public mutating func append(_ name: String, _ value: String?) {
        items.append(Parameter(name: name, value: value))
    }

    /// Room for `count` parameters, taken at once.
    public mutating func reserveCapacity(_ count: Int) {
        items.reserveCapacity(count)
    }

    /// Whether a parameter with this name is present (with or without a value).
    public func contains(_ name: String) -> Bool {
        items.contains { $0.name.caseInsensitiveEquals(name) }
    }

    /// The value of the first parameter with this name; `.some(nil)` for a flag without value.
    public subscript(name: String) -> String?? {
        get {
            guard let item = items.first(where: { $0.name.caseInsensitiveEquals(name) }) else { return nil }
            return .some(item.value)
        }
    }

    /// The value with surrounding quotes removed, or nil when absent or a flag.
    public func unquoted(_ name: String) -> String? {
        guard case .some(.some(let value)) = self[name] else { return nil }
        // Bytes, not Characters: counting and comparing Characters cost 1% of a proxied MESSAGE.
        let utf8 = value.utf8
        if utf8.count >= 2, utf8.first == UInt8(ascii: "\""), utf8.last == UInt8(ascii: "\"") {
            return String(value.dropFirst().dropLast())
                .replacingOccurrences(of: "\\\"", with: "\"")
        }
        return value
    }

    /// Sets (replacing every earlier one) or appends a parameter.
    /// Changed in place: rebuilding the list made a new array each time, two allocations per
    /// REGISTER's 200 OK (its `expires` on each Contact).
    public mutating func set(_ name: String, _ value: String?) {
        guard let first = items.firstIndex(where: { $0.name.caseInsensitiveEquals(name) }) else {
            append(name, value)
            return
        }
        items[first].value = value
        let later = first + 1
        if items[later...].contains(where: { $0.name.caseInsensitiveEquals(name) }) {
            let others = items[later...].filter { !$0.name.caseInsensitiveEquals(name) }
            items.replaceSubrange(later..., with: others)
        }
    }

    public mutating func remove(_ name: String) {
        items.removeAll { $0.name.caseInsensitiveEquals(name) }
    }

    /// `;a=b;c` as it appears on the wire.
    public var description: String {
        var out = ""
        append(to: &out)
        return out
    }

    /// Appends `;a=b;c` piece by piece: no temporary strings.
    package func append(to out: inout String) {
        for item in items {
            out.append(";")
            out.append(item.name)
            if let value = item.value {
                out.append("=")
                out.append(value)
            }
        }
    }

    /// About how many bytes ``description`` takes, to reserve them.
    package var estimatedLength: Int {
        var length = 0
        for item in items { length += item.name.utf8.count + (item.value?.utf8.count ?? 0) + 2 }
        return length
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality, for protocol names and tokens. Inlinable: other modules call
    /// it on every request, and an unspecialised generic call walked both strings through protocol
    /// witnesses (3% of a digest REGISTER).
    @inlinable
    package func caseInsensitiveEquals(_ other: some StringProtocol) -> Bool {
        let a = utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        // Native strings compare over their bytes; iterating two UTF8Views in step cost 1% of a
        // proxied MESSAGE (parameter lookups).
        let contiguous = a.withContiguousStorageIfAvailable { x in
            b.withContiguousStorageIfAvailable { y in
                x.count == y.count && !zip(x, y).contains { !asciiFoldedEqual($0, $1) }
            }
        }
        if let contiguous, let result = contiguous { return result }
        for (x, y) in zip(a, b) where !asciiFoldedEqual(x, y) { return false }
        return true
    }
}

/// Two bytes equal up to ASCII case.
@inlinable
package func asciiFoldedEqual(_ x: UInt8, _ y: UInt8) -> Bool {
    if x == y { return true }
    let lx = (x >= 0x41 && x <= 0x5A) ? x | 0x20 : x
    let ly = (y >= 0x41 && y <= 0x5A) ? y | 0x20 : y
    return lx == ly
}

extension String {
    /// Replaces every occurrence of `target`; a small stand-in so SIP does not need Foundation.
    package func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty, contains(target) else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}
