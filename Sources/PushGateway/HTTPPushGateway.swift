public import AsyncHTTPClient
public import CoreProxy
public import NIOCore
import NIOHTTP1
import Foundation
import EventBus

/// Posts each push as JSON to an HTTP or HTTPS push gateway (one that speaks to APNs, FCM or a web
/// push service); HTTP/2 is used when the gateway offers it over TLS.
public struct HTTPPushGateway: PushGateway {
    public struct Configuration: Sendable {
        public var url: String
        /// The Authorization header value, if the gateway wants one (`Bearer ...`, `key=...`).
        public var authorization: String?
        /// The body, with `${id}`, `${aor}`, `${provider}`, `${param}`, `${prid}`, `${reason}`,
        /// `${call_id}` and `${from}` replaced by JSON-escaped values.
        public var template: String
        /// How long one attempt may take.
        public var timeout: TimeAmount

        public static let defaultTemplate = """
            {"id":"${id}","to":"${prid}","provider":"${provider}","param":"${param}",\
            "type":"${reason}","aor":"${aor}","call_id":"${call_id}","from":"${from}"}
            """

        public init(url: String, authorization: String? = nil, template: String = Configuration.defaultTemplate,
                    timeout: TimeAmount = .seconds(5)) {
            self.url = url
            self.authorization = authorization
            self.template = template
            self.timeout = timeout
        }
    }

    public struct Refused: Error, CustomStringConvertible {
        public var status: UInt
        public var description: String { "push gateway answered \(status)" }
    }

    public let configuration: Configuration
    private let client: HTTPClient

    public init(configuration: Configuration, client: HTTPClient = .shared) {
        self.configuration = configuration
        self.client = client
    }

    public func send(_ push: PushRequest) async throws {
        var request = HTTPClientRequest(url: configuration.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let authorization = configuration.authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.body = .bytes(ByteBuffer(string: body(for: push)))
        let response = try await client.execute(request, timeout: configuration.timeout)
        // The body is read (and dropped) so the connection goes back to the pool.
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(response.status.code) else { throw Refused(status: response.status.code) }
    }

    /// The template with every placeholder replaced.
    public func body(for push: PushRequest) -> String {
        let values: [(String, String)] = [
            ("id", push.id), ("aor", push.aor), ("provider", push.contact.provider), ("param", push.contact.param ?? ""),
            ("prid", push.contact.prid), ("reason", push.reason.rawValue), ("call_id", push.callID), ("from", push.from),
        ]
        var text = configuration.template
        for (name, value) in values {
            text = text.replacingOccurrences(of: "${" + name + "}", with: String(JSONValue.quoted(value).dropFirst().dropLast()))
        }
        return text
    }
}
