public import EventBus
public import Logging

/// The management operations by name, and the one place a call is checked and run: the method
/// exists, the caller may change state if it does, the parameters are what it takes. JSON-RPC,
/// XML-RPC and AMQP commands are only encodings in front of ``call(_:params:authorized:)``.
public final class ManagementAPI: Sendable {
    public let methods: [String: ManagementMethod]
    private let logger: Logger

    public init(methods: [ManagementMethod], logger: Logger) {
        var table = Dictionary(methods.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let names = (Array(table.keys) + ["system.listMethods", "system.methodHelp"]).sorted()
        table["system.listMethods"] = ManagementMethod("system.listMethods", "The names of every method.") { _ in
            .array(names.map { .string($0) })
        }
        let summaries = table.mapValues(\.summary)
        table["system.methodHelp"] = ManagementMethod("system.methodHelp", "What a method does.", parameters: ["method"]) { params in
            let name = try params.string("method")
            guard let summary = summaries[name] ?? (name == "system.methodHelp" ? "What a method does." : nil) else {
                throw ManagementError.methodNotFound(name)
            }
            return .string(summary)
        }
        self.methods = table
        self.logger = logger
    }

    /// Runs a method. `authorized` says the caller showed the management token (or came through a
    /// channel that is trusted as a whole, like the broker's command queue).
    public func call(_ name: String, params: JSONValue?, authorized: Bool) async -> Result<JSONValue, ManagementError> {
        guard let method = methods[name] else { return .failure(.methodNotFound(name)) }
        if method.changesState, !authorized { return .failure(.unauthorized(name)) }
        do {
            let parameters = try ManagementParameters(params, for: method)
            let result = try await method.run(parameters)
            if method.changesState {
                logger.notice("management call", metadata: ["method": "\(name)", "params": "\(params?.json ?? "{}")"])
            }
            return .success(result)
        } catch let error as ManagementError {
            return .failure(error)
        } catch {
            logger.error("management call failed", metadata: ["method": "\(name)", "error": "\(error)"])
            return .failure(.internalError("\(error)"))
        }
    }
}
