public import Routing
import CoreProxy
import SIP
import Foundation
import Yams

/// The routing file (`routing.file`): dialplan, dispatcher sets, least-cost routes, the number
/// portability table and the shared cache's tables. Read at start and by `routing.reload`; an error
/// names the key and line, and a reload that fails keeps the tables in use.
public enum RoutingFile {
    public struct Contents: Sendable {
        public var tables: RoutingTables
        /// Shared-cache tables to declare, with their default entry lifetime in seconds.
        public var cacheTables: [(name: String, lifetime: Int64?)]
        /// The MongoDB collection of ported numbers (`number`, `rn`), read by whoever holds the database.
        public var portabilityCollection: String?
    }

    public static func load(path: String) throws(ConfigurationError) -> Contents {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(key: "routing.file", line: nil, message: "\(path): \(error.localizedDescription)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try parse(text, directory: directory.isEmpty ? "." : directory)
    }

    /// Reads the file's text; relative paths inside it are taken from `directory`.
    public static func parse(_ text: String, directory: String) throws(ConfigurationError) -> Contents {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: "(routing file)", line: nil, message: "not valid YAML: \(error)")
        }
        var contents = Contents(tables: RoutingTables(), cacheTables: [], portabilityCollection: nil)
        guard let root else { return contents }
        var reader = try MappingReader(root, path: "")
        if let node = reader.take("probe") {
            var probe = try MappingReader(node, path: "probe")
            contents.tables.probeInterval = try probe.int("interval", in: 0...3600) ?? contents.tables.probeInterval
            contents.tables.probeFailures = try probe.int("failures", in: 1...100) ?? contents.tables.probeFailures
            try probe.finish()
        }
        if let node = reader.take("dispatcher") {
            let sets = try MappingReader(node, path: "dispatcher")
            for entry in sets.entries {
                contents.tables.dispatcherSets[entry.key] = try dispatcherSet(entry.key, entry.value)
            }
        }
        if let node = reader.take("lcr") { contents.tables.lcr = try leastCostRouting(node) }
        if let node = reader.take("portability") {
            var section = try MappingReader(node, path: "portability")
            if let collection = try section.string("mongodb_collection") {
                contents.portabilityCollection = collection
            }
            if let file = try section.string("file") {
                guard contents.portabilityCollection == nil else {
                    throw section.error("file", node, "either file or mongodb_collection, not both")
                }
                let path = file.hasPrefix("/") ? file : directory + "/" + file
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw section.error("file", node, "\(path): no such file, or not readable")
                }
                do {
                    contents.tables.portability = try NumberPortability.load(path: path)
                } catch {
                    throw section.error("file", node, "\(error)")
                }
            }
            try section.finish()
        }
        if let node = reader.take("tables") {
            guard let items = node.sequence else { throw reader.error("tables", node, "expected a list of { name, lifetime }") }
            for (index, item) in items.enumerated() {
                var table = try MappingReader(item, path: "tables[\(index)]")
                guard let name = try table.string("name"), !name.isEmpty else { throw table.error("name", item, "needed") }
                let lifetime = try table.int("lifetime", in: 1...31_536_000).map(Int64.init)
                try table.finish()
                contents.cacheTables.append((name, lifetime))
            }
        }
        if let node = reader.take("dialplan") {
            guard let items = node.sequence else { throw reader.error("dialplan", node, "expected a list of rules") }
            for (index, item) in items.enumerated() {
                contents.tables.dialplan.append(try dialplanRule(item, path: "dialplan[\(index)]", tables: contents.tables))
            }
        }
        try reader.finish()
        return contents
    }

    private static func uri(_ text: String, _ reader: MappingReader, _ key: String, _ node: Node) throws(ConfigurationError) -> SIPURI {
        do {
            return try SIPURI(parsing: text)
        } catch {
            throw reader.error(key, node, "\(text): not a SIP URI")
        }
    }

    private static func codes(_ reader: inout MappingReader, _ key: String, default fallback: Set<Int>) throws(ConfigurationError) -> Set<Int> {
        guard let node = reader.take(key) else { return fallback }
        guard let items = node.sequence else { throw reader.error(key, node, "expected a list of status codes") }
        var codes: Set<Int> = []
        for item in items {
            guard let code = item.string.flatMap({ Int($0) }), (300...699).contains(code) else {
                throw reader.error(key, item, "expected status codes from 300 to 699")
            }
            codes.insert(code)
        }
        return codes
    }

    private static func dispatcherSet(_ name: String, _ node: Node) throws(ConfigurationError) -> DispatcherSet {
        var reader = try MappingReader(node, path: "dispatcher." + name)
        let algorithmText = try reader.string("algorithm") ?? "round_robin"
        guard let algorithm = DispatcherSet.Algorithm(rawValue: algorithmText) else {
            throw reader.error("algorithm", node, "\(algorithmText): expected "
                               + DispatcherSet.Algorithm.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let failover = try codes(&reader, "failover", default: [408, 500, 502, 503, 504])
        guard let list = reader.take("destinations"), let items = list.sequence, !items.isEmpty else {
            throw reader.error("destinations", node, "needs at least one destination")
        }
        var destinations: [DispatcherSet.Destination] = []
        for (index, item) in items.enumerated() {
            var destination = try MappingReader(item, path: "dispatcher.\(name).destinations[\(index)]")
            guard let text = try destination.string("uri") else { throw destination.error("uri", item, "needed") }
            let parsed = try uri(text, destination, "uri", item)
            let weight = try destination.int("weight", in: 0...1_000_000) ?? 1
            let priority = try destination.int("priority", in: 0...1000) ?? 0
            try destination.finish()
            destinations.append(.init(uri: parsed, weight: weight, priority: priority))
        }
        try reader.finish()
        return DispatcherSet(name: name, algorithm: algorithm, destinations: destinations, failoverCodes: failover)
    }

    private static func leastCostRouting(_ node: Node) throws(ConfigurationError) -> LeastCostRouting {
        var reader = try MappingReader(node, path: "lcr")
        let failover = try codes(&reader, "failover", default: [408, 480, 500, 502, 503, 504])
        var gateways: [LeastCostRouting.Gateway] = []
        if let list = reader.take("gateways") {
            guard let items = list.sequence else { throw reader.error("gateways", list, "expected a list of gateways") }
            for (index, item) in items.enumerated() {
                var gateway = try MappingReader(item, path: "lcr.gateways[\(index)]")
                guard let name = try gateway.string("name") else { throw gateway.error("name", item, "needed") }
                guard let text = try gateway.string("uri") else { throw gateway.error("uri", item, "needed") }
                let parsed = try uri(text, gateway, "uri", item)
                let strip = try gateway.int("strip", in: 0...32) ?? 0
                let prefix = try gateway.string("prefix") ?? ""
                try gateway.finish()
                gateways.append(.init(name: name, uri: parsed, strip: strip, prefix: prefix))
            }
        }
        let names = Set(gateways.map(\.name))
        var routes: [String: [LeastCostRouting.Choice]] = [:]
        if let list = reader.take("routes") {
            guard let items = list.sequence else { throw reader.error("routes", list, "expected a list of routes") }
            for (index, item) in items.enumerated() {
                var route = try MappingReader(item, path: "lcr.routes[\(index)]")
                let prefix = try route.string("prefix") ?? ""
                guard let choicesNode = route.take("gateways"), let choices = choicesNode.sequence, !choices.isEmpty else {
                    throw route.error("gateways", item, "needs at least one gateway")
                }
                var parsed: [LeastCostRouting.Choice] = []
                for choice in choices {
                    if let name = choice.string {
                        guard names.contains(name) else { throw route.error("gateways", choice, "\(name): no such gateway") }
                        parsed.append(.init(gateway: name))
                        continue
                    }
                    var fields = try MappingReader(choice, path: "lcr.routes[\(index)].gateways")
                    guard let name = try fields.string("gateway"), names.contains(name) else {
                        throw fields.error("gateway", choice, "expected the name of a gateway")
                    }
                    let priority = try fields.int("priority", in: 0...1000) ?? 0
                    let weight = try fields.int("weight", in: 0...1_000_000) ?? 1
                    try fields.finish()
                    parsed.append(.init(gateway: name, priority: priority, weight: weight))
                }
                try route.finish()
                routes[prefix, default: []] += parsed
            }
        }
        try reader.finish()
        return LeastCostRouting(gateways: gateways, routes: routes, failoverCodes: failover)
    }

    private static func dialplanRule(_ node: Node, path: String, tables: RoutingTables) throws(ConfigurationError) -> DialplanRule {
        var reader = try MappingReader(node, path: path)
        let name = try reader.string("name") ?? path
        let match: DialplanRule.Match
        if let pattern = try reader.string("match") {
            do {
                match = .regex(try NSRegularExpressionBox(pattern))
            } catch {
                throw reader.error("match", node, "\(pattern): not a regular expression")
            }
        } else if let prefix = try reader.string("prefix") {
            match = .prefix(prefix)
        } else {
            throw reader.error("match", node, "a rule needs match (a regular expression) or prefix")
        }
        let rewrite = try reader.string("rewrite")
        var condition: DialplanRule.TableCondition?
        for (key, present) in [("if_in_table", true), ("unless_in_table", false)] {
            guard let conditionNode = reader.take(key) else { continue }
            var fields = try MappingReader(conditionNode, path: path + "." + key)
            guard let table = try fields.string("table") else { throw fields.error("table", conditionNode, "needed") }
            let keyText = try fields.string("key") ?? "from_user"
            guard let parsedKey = DialplanRule.TableCondition.Key(rawValue: keyText) else {
                throw fields.error("key", conditionNode, "\(keyText): expected "
                                   + DialplanRule.TableCondition.Key.allCases.map(\.rawValue).joined(separator: ", "))
            }
            try fields.finish()
            condition = .init(table: table, key: parsedKey, present: present)
        }
        let (isupConditions, isupEdits) = try isupRules(&reader, path: path)
        var store: DialplanRule.TableWrite?
        if let storeNode = reader.take("store") {
            var fields = try MappingReader(storeNode, path: path + ".store")
            guard let table = try fields.string("table") else { throw fields.error("table", storeNode, "needed") }
            let keyText = try fields.string("key") ?? "from_user"
            guard let parsedKey = DialplanRule.TableCondition.Key(rawValue: keyText) else {
                throw fields.error("key", storeNode, "\(keyText): expected "
                                   + DialplanRule.TableCondition.Key.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let value = try fields.string("value") ?? "$user"
            try fields.finish()
            store = .init(table: table, key: parsedKey, value: value)
        }
        var headers: [(SIPHeaderName, String)] = []
        for line in try reader.strings("add_headers") ?? [] {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else { throw reader.error("add_headers", node, "\(line): expected Name: value") }
            headers.append((SIPHeaderName(String(parts[0]).trimmingCharacters(in: .whitespaces)),
                            String(parts[1]).trimmingCharacters(in: .whitespaces)))
        }
        let actionNode = reader.take("action")
        let actionText = actionNode?.string ?? "continue"
        let action: DialplanRule.Action
        switch actionText {
        case "continue": action = .continue
        case "local": action = .local
        case "lcr":
            guard tables.lcr != nil else { throw reader.error("action", actionNode ?? node, "lcr, but the file has no lcr section") }
            action = .lcr
        default:
            if actionText.hasPrefix("dispatcher:") {
                let set = String(actionText.dropFirst("dispatcher:".count))
                guard tables.dispatcherSets[set] != nil else { throw reader.error("action", actionNode ?? node, "no dispatcher set \(set)") }
                action = .dispatcher(set)
            } else if actionText.hasPrefix("uri:") {
                action = .uri(try uri(String(actionText.dropFirst(4)), reader, "action", actionNode ?? node))
            } else if actionText.hasPrefix("reject:") {
                let rest = actionText.dropFirst("reject:".count).split(separator: " ", maxSplits: 1)
                guard let code = rest.first.flatMap({ Int($0) }), (400...699).contains(code) else {
                    throw reader.error("action", actionNode ?? node, "\(actionText): expected reject:CODE [reason]")
                }
                action = .reject(code, rest.count > 1 ? String(rest[1]) : SIPStatus.defaultReason(for: code))
            } else {
                throw reader.error("action", actionNode ?? node,
                                   "\(actionText): expected continue, local, lcr, dispatcher:SET, uri:SIP-URI or reject:CODE")
            }
        }
        try reader.finish()
        return DialplanRule(name: name, match: match, rewrite: rewrite, condition: condition, isupConditions: isupConditions,
                            isupEdits: isupEdits, addHeaders: headers, store: store, action: action)
    }

    /// A rule's SIP-I part: `isup` (each `$sipt` field with the expression its whole value must
    /// match) and the sipt functions `isup_set_destination`, `isup_set_calling`, `isup_set_forwarding`.
    private static func isupRules(_ reader: inout MappingReader, path: String) throws(ConfigurationError)
        -> ([DialplanRule.ISUPCondition], [DialplanRule.ISUPEdit]) {
        var conditions: [DialplanRule.ISUPCondition] = []
        if let node = reader.take("isup") {
            let fields = try MappingReader(node, path: path + ".isup")
            for entry in fields.entries {
                guard let text = entry.value.string else { throw fields.error(entry.key, entry.value, "expected a regular expression") }
                do {
                    conditions.append(.init(field: entry.key, pattern: try NSRegularExpressionBox(text)))
                } catch {
                    throw fields.error(entry.key, entry.value, "\(text): not a regular expression")
                }
            }
        }
        var edits: [DialplanRule.ISUPEdit] = []
        if let node = reader.take("isup_set_destination") {
            var fields = try MappingReader(node, path: path + ".isup_set_destination")
            // The number is the routed one: the Called Party Number follows the Request-URI anyway
            // (SIPIInterworking), so only its nature and the hop count are the rule's to say.
            let nature = try fields.int("nature", in: 0...127) ?? 4
            let hops = try fields.int("hops", in: 1...31) ?? 31
            try fields.finish()
            edits.append(.destination(number: "$user", nature: UInt8(nature), hops: hops))
        }
        if let node = reader.take("isup_set_calling") {
            var fields = try MappingReader(node, path: path + ".isup_set_calling")
            guard let number = try fields.string("number") else { throw fields.error("number", node, "needed") }
            let nature = try fields.int("nature", in: 0...127) ?? 4
            let presentation = try fields.int("presentation", in: 0...3) ?? 0
            let screening = try fields.int("screening", in: 0...3) ?? 3
            try fields.finish()
            edits.append(.calling(number: number, nature: UInt8(nature), presentation: UInt8(presentation), screening: UInt8(screening)))
        }
        if let node = reader.take("isup_set_forwarding") {
            var fields = try MappingReader(node, path: path + ".isup_set_forwarding")
            guard let number = try fields.string("number") else { throw fields.error("number", node, "needed") }
            let nature = try fields.int("nature", in: 0...127) ?? 4
            try fields.finish()
            edits.append(.forwarding(number: number, nature: UInt8(nature)))
        }
        return (conditions, edits)
    }
}
