import Foundation

/// Reading JSON that arrives from outside (management calls, AMQP commands). Objects come back
/// with their keys sorted, so a value read twice compares equal.
extension JSONValue: Decodable {
    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let number = try? container.decode(Int64.self) {
            self = .int(number)
        } else if let number = try? container.decode(Double.self) {
            self = .double(number)
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else if let values = try? container.decode([JSONValue].self) {
            self = .array(values)
        } else {
            let fields = try container.decode([String: JSONValue].self)
            self = .object(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        }
    }

    /// Parses a JSON text; the error says where it went wrong.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ParseError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw ParseError(description: detail ?? context.debugDescription)
        } catch {
            throw ParseError(description: "\(error)")
        }
    }

    /// The value of a field of an object (nil for other kinds or a missing key).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }
}
