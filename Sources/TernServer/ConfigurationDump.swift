import EventBus
import Yams

/// `config.dump` for the management API: the effective configuration (the same keys and values
/// `--check-config` prints, secrets left out) as JSON, keys in file order.
enum ConfigurationDump {
    static func json(_ configuration: TernConfiguration) -> JSONValue {
        guard let node = try? Yams.compose(yaml: configuration.yamlDescription(redactingSecrets: true)) else { return .object([]) }
        return json(node)
    }

    static func json(_ node: Node) -> JSONValue {
        switch node {
        case .mapping(let mapping):
            return .object(mapping.map { ($0.key.string ?? "", json($0.value)) })
        case .sequence(let sequence):
            return .array(sequence.map(json))
        case .scalar(let scalar):
            // Quoted values are text; plain ones are what they read as.
            guard scalar.style == .plain else { return .string(scalar.string) }
            let text = scalar.string
            if let number = Int64(text) { return .int(number) }
            if let number = Double(text) { return .double(number) }
            switch text {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "", "~", "null": return .null
            default: return .string(text)
            }
        case .alias:
            return .null
        }
    }
}
