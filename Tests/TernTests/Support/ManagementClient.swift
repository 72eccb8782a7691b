import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Calls a running tern's management API over HTTP (tests only).
struct ManagementClient {
    let port: Int
    var token: String?

    struct Reply {
        var status: Int
        var text: String
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8)) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
        var result: [String: Any] { object["result"] as? [String: Any] ?? [:] }
        var errorCode: Int? { (object["error"] as? [String: Any])?["code"] as? Int }
    }

    func get(_ path: String) async throws -> Reply {
        try await send("GET", path, body: nil, contentType: nil)
    }

    func post(_ path: String, _ body: String, contentType: String = "application/json", token: String? = nil) async throws -> Reply {
        try await send("POST", path, body: body, contentType: contentType, token: token)
    }

    /// One JSON-RPC call with named parameters.
    func call(_ method: String, _ params: [String: Any] = [:], token: String? = nil) async throws -> Reply {
        let request: [String: Any] = ["jsonrpc": "2.0", "id": 1, "method": method, "params": params]
        let body = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        return try await post("/jsonrpc", body, token: token ?? self.token)
    }

    private func send(_ method: String, _ path: String, body: String?, contentType: String?, token: String? = nil) async throws -> Reply {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { throw TernTestFailure("bad path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body { request.httpBody = Data(body.utf8) }
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let token { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return Reply(status: (response as? HTTPURLResponse)?.statusCode ?? 0, text: String(decoding: data, as: UTF8.self))
    }
}
