/// Why a management call failed, with the JSON-RPC 2.0 error code it is reported under (XML-RPC
/// reports the same code as its faultCode, AMQP command replies the same error object).
public struct ManagementError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) (\(code))" }

    public static func parse(_ detail: String) -> ManagementError { ManagementError(code: -32700, message: "Parse error: " + detail) }
    public static func invalidRequest(_ detail: String) -> ManagementError {
        ManagementError(code: -32600, message: "Invalid request: " + detail)
    }
    public static func methodNotFound(_ name: String) -> ManagementError {
        ManagementError(code: -32601, message: "Method not found: " + name)
    }
    public static func invalidParams(_ detail: String) -> ManagementError {
        ManagementError(code: -32602, message: "Invalid params: " + detail)
    }
    public static func internalError(_ detail: String) -> ManagementError {
        ManagementError(code: -32603, message: "Internal error: " + detail)
    }
    /// A method that changes state was called without the management token.
    public static func unauthorized(_ name: String) -> ManagementError {
        ManagementError(code: -32001, message: "Unauthorized: \(name) changes state and needs the management token")
    }
    /// The module the method belongs to is not enabled in this node's configuration.
    public static func unavailable(_ detail: String) -> ManagementError {
        ManagementError(code: -32002, message: "Unavailable: " + detail)
    }
    public static func notFound(_ detail: String) -> ManagementError { ManagementError(code: -32004, message: "Not found: " + detail) }
}
