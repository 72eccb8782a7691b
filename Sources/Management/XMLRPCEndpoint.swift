import EventBus
import Presence
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// XML-RPC (http://xmlrpc.com/spec.md) in front of the same methods as JSON-RPC. Parameters come
/// by position, mapped onto the method's parameter names, or as one struct of named values.
/// Faults carry the JSON-RPC error code as faultCode.
public struct XMLRPCEndpoint: Sendable {
    public let api: ManagementAPI

    public init(api: ManagementAPI) {
        self.api = api
    }

    public func handle(_ body: some Collection<UInt8>, authorized: Bool) async -> String {
        let call: (method: String, params: JSONValue)
        do {
            call = try Self.parseCall(Data(body))
        } catch {
            return Self.fault(error)
        }
        switch await api.call(call.method, params: call.params, authorized: authorized) {
        case .success(let value):
            return "<?xml version=\"1.0\"?>\n<methodResponse><params><param>" + Self.encode(value) + "</param></params></methodResponse>\n"
        case .failure(let error):
            return Self.fault(error)
        }
    }

    // MARK: - Reading a methodCall

    static func parseCall(_ data: Data) throws(ManagementError) -> (method: String, params: JSONValue) {
        if let problem = XMLWellFormedness.problem(in: data) { throw .parse(problem) }
        let document: XMLDocument
        do {
            document = try XMLDocument(data: data, options: [.nodeLoadExternalEntitiesNever])
        } catch {
            throw .parse("not well-formed XML")
        }
        guard let root = document.rootElement(), root.name == "methodCall" else { throw .invalidRequest("root must be methodCall") }
        guard let name = root.elements(forName: "methodName").first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines),
              !name.isEmpty else {
            throw .invalidRequest("methodCall has no methodName")
        }
        var values: [JSONValue] = []
        for param in root.elements(forName: "params").first?.elements(forName: "param") ?? [] {
            guard let value = param.elements(forName: "value").first else { throw .invalidRequest("param without value") }
            values.append(try decode(value))
        }
        // One struct is the call's named parameters; anything else is positional.
        if values.count == 1, case .object = values[0] { return (name, values[0]) }
        return (name, .array(values))
    }

    static func decode(_ value: XMLElement) throws(ManagementError) -> JSONValue {
        guard let typed = value.children?.compactMap({ $0 as? XMLElement }).first else {
            return .string(value.stringValue ?? "")
        }
        let text = typed.stringValue ?? ""
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch typed.name {
        case "string": return .string(text)
        case "i4", "int", "i8":
            guard let number = Int64(trimmed) else { throw .invalidParams("\(typed.name ?? "int") value \(trimmed) is not an integer") }
            return .int(number)
        case "boolean":
            guard trimmed == "0" || trimmed == "1" else { throw .invalidParams("boolean value must be 0 or 1, not \(trimmed)") }
            return .bool(trimmed == "1")
        case "double":
            guard let number = Double(trimmed) else { throw .invalidParams("double value \(trimmed) is not a number") }
            return .double(number)
        case "dateTime.iso8601", "base64": return .string(trimmed)
        case "nil": return .null
        case "array":
            var items: [JSONValue] = []
            for item in typed.elements(forName: "data").first?.elements(forName: "value") ?? [] { items.append(try decode(item)) }
            return .array(items)
        case "struct":
            var fields: [(String, JSONValue)] = []
            for member in typed.elements(forName: "member") {
                guard let name = member.elements(forName: "name").first?.stringValue,
                      let memberValue = member.elements(forName: "value").first else {
                    throw .invalidParams("struct member needs a name and a value")
                }
                fields.append((name, try decode(memberValue)))
            }
            return .object(fields)
        default:
            throw .invalidParams("unknown XML-RPC type \(typed.name ?? "")")
        }
    }

    // MARK: - Writing a methodResponse

    static func encode(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return "<value><string>" + escaped(text) + "</string></value>"
        case .int(let number):
            return Int32(exactly: number) != nil ? "<value><int>\(number)</int></value>" : "<value><i8>\(number)</i8></value>"
        case .double(let number): return "<value><double>\(number.isFinite ? number : 0)</double></value>"
        case .bool(let flag): return "<value><boolean>\(flag ? 1 : 0)</boolean></value>"
        case .null: return "<value><nil/></value>"
        case .timestamp: return "<value><string>" + value.json.dropFirst().dropLast() + "</string></value>"
        case .array(let items): return "<value><array><data>" + items.map(encode).joined() + "</data></array></value>"
        case .object(let fields):
            return "<value><struct>" + fields.map { "<member><name>" + escaped($0.0) + "</name>" + encode($0.1) + "</member>" }.joined()
                + "</struct></value>"
        }
    }

    static func fault(_ error: ManagementError) -> String {
        "<?xml version=\"1.0\"?>\n<methodResponse><fault>"
            + encode(.object([("faultCode", .int(Int64(error.code))), ("faultString", .string(error.message))]))
            + "</fault></methodResponse>\n"
    }

    private static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }
}
