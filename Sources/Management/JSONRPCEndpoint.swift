import EventBus

/// JSON-RPC 2.0 (https://www.jsonrpc.org/specification) in front of the management API: single
/// calls and batches, by-name and by-position parameters, notifications (no `id`) answered with
/// nothing. The HTTP endpoint and the AMQP command queue both speak it.
public struct JSONRPCEndpoint: Sendable {
    public let api: ManagementAPI

    public init(api: ManagementAPI) {
        self.api = api
    }

    /// The response text, or nil when every call was a notification.
    public func handle(_ body: some Collection<UInt8>, authorized: Bool) async -> String? {
        let request: JSONValue
        do {
            request = try JSONValue.parse(body)
        } catch {
            return Self.response(id: .null, .failure(.parse(error.description))).json
        }
        guard case .array(let calls) = request else {
            return await handleCall(request, authorized: authorized)?.json
        }
        guard !calls.isEmpty else { return Self.response(id: .null, .failure(.invalidRequest("empty batch"))).json }
        var responses: [JSONValue] = []
        for call in calls {
            if let response = await handleCall(call, authorized: authorized) { responses.append(response) }
        }
        return responses.isEmpty ? nil : JSONValue.array(responses).json
    }

    private func handleCall(_ call: JSONValue, authorized: Bool) async -> JSONValue? {
        guard case .object = call else { return Self.response(id: .null, .failure(.invalidRequest("a call must be an object"))) }
        let id = call["id"]
        switch id {
        case nil, .null?, .string?, .int?, .double?: break
        default: return Self.response(id: .null, .failure(.invalidRequest("id must be a string, a number or null")))
        }
        guard call["jsonrpc"] == .string("2.0") else {
            return Self.response(id: id ?? .null, .failure(.invalidRequest("jsonrpc must be \"2.0\"")))
        }
        guard case .string(let method)? = call["method"] else {
            return Self.response(id: id ?? .null, .failure(.invalidRequest("method must be a string")))
        }
        let params = call["params"]
        switch params {
        case nil, .object?, .array?: break
        default: return Self.response(id: id ?? .null, .failure(.invalidRequest("params must be an object or an array")))
        }
        let result = await api.call(method, params: params, authorized: authorized)
        guard let id else { return nil }
        return Self.response(id: id, result)
    }

    static func response(id: JSONValue, _ result: Result<JSONValue, ManagementError>) -> JSONValue {
        switch result {
        case .success(let value):
            return .object([("jsonrpc", "2.0"), ("id", id), ("result", value)])
        case .failure(let error):
            return .object([("jsonrpc", "2.0"), ("id", id),
                            ("error", .object([("code", .int(Int64(error.code))), ("message", .string(error.message))]))])
        }
    }
}
