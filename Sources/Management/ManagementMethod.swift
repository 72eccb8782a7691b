public import EventBus

/// One operation of the management API. The same table serves JSON-RPC, XML-RPC and AMQP
/// commands, so the three cannot drift apart.
public struct ManagementMethod: Sendable {
    public var name: String
    public var summary: String
    /// Parameter names in positional order (XML-RPC and JSON-RPC by-position calls).
    public var parameters: [String]
    /// Methods that change state need the management token over HTTP.
    public var changesState: Bool
    public var run: @Sendable (ManagementParameters) async throws -> JSONValue

    public init(_ name: String, _ summary: String, parameters: [String] = [], changesState: Bool = false,
                run: @escaping @Sendable (ManagementParameters) async throws -> JSONValue) {
        self.name = name
        self.summary = summary
        self.parameters = parameters
        self.changesState = changesState
        self.run = run
    }
}

/// A call's parameters by name, with typed access whose errors name the parameter.
public struct ManagementParameters: Sendable {
    public var values: [String: JSONValue]

    public init(_ values: [String: JSONValue] = [:]) {
        self.values = values
    }

    /// Named (an object) or by position (an array, mapped onto the method's parameter names).
    init(_ params: JSONValue?, for method: ManagementMethod) throws(ManagementError) {
        switch params {
        case nil, .null?:
            values = [:]
        case .object(let fields)?:
            values = Dictionary(fields, uniquingKeysWith: { _, last in last })
        case .array(let list)?:
            guard list.count <= method.parameters.count else {
                throw .invalidParams("\(method.name) takes at most \(method.parameters.count) parameters, got \(list.count)")
            }
            values = Dictionary(uniqueKeysWithValues: zip(method.parameters, list))
        case let other?:
            throw .invalidParams("params must be an object or an array, not \(other.json)")
        }
        if let unknown = values.keys.sorted().first(where: { !method.parameters.contains($0) }) {
            throw .invalidParams("\(method.name) has no parameter '\(unknown)'")
        }
    }

    public func string(_ name: String) throws(ManagementError) -> String {
        guard let value = try optionalString(name) else { throw .invalidParams("missing parameter '\(name)'") }
        return value
    }

    public func optionalString(_ name: String) throws(ManagementError) -> String? {
        switch values[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw .invalidParams("parameter '\(name)' must be a string")
        }
    }

    public func int(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws(ManagementError) -> Int {
        let number: Int
        switch values[name] {
        case nil, .null?: return fallback
        case .int(let value)?: number = Int(value)
        case .double(let value)? where value.rounded() == value && abs(value) < 1e15: number = Int(value)
        default: throw .invalidParams("parameter '\(name)' must be an integer")
        }
        guard range.contains(number) else {
            throw .invalidParams("parameter '\(name)' must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return number
    }

    public func bool(_ name: String, default fallback: Bool) throws(ManagementError) -> Bool {
        switch values[name] {
        case nil, .null?: return fallback
        case .bool(let flag)?: return flag
        default: throw .invalidParams("parameter '\(name)' must be true or false")
        }
    }
}
