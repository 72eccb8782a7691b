import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A bare SIP phone on a UDP socket for tests of the `tern` binary: sends requests as text, takes
/// requests and responses as text, answers requests by copying their Vias, From, To, Call-ID and
/// CSeq (and Record-Route).
final class UDPPhone: @unchecked Sendable {
    let user: String
    private let socket: Int32
    let port: Int
    /// Where the last request came from (Tern's listener): answers go there.
    private var lastSource = sockaddr_in()

    init(user: String) throws {
        self.user = user
        let socket = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.socket = socket
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Int32 in
                guard bind(socket, raw, length) == 0 else { return -1 }
                return getsockname(socket, raw, &length)
            }
        }
        guard bound == 0 else {
            close(socket)
            throw TernTestFailure("cannot bind a UDP phone")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(socket) }

    var contact: String { "<sip:\(user)@127.0.0.1:\(port)>" }

    func send(_ text: String, toPort port: Int) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(socket, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// The next datagram that satisfies `accept` (others, such as retransmissions, are skipped).
    func receive(timeout: TimeInterval = 5, where accept: (String) -> Bool = { _ in true }) throws -> String {
        let deadline = Date(timeIntervalSinceNow: timeout)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            // poll rather than SO_RCVTIMEO: timeval is declared by several C modules of this target.
            var ready = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) == 1 else { break }
            var source = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let count = withUnsafeMutablePointer(to: &source) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(socket, &buffer, buffer.count, 0, $0, &length) }
            }
            guard count > 0 else { continue }
            let text = String(decoding: buffer[0..<count], as: UTF8.self)
            if accept(text) {
                if !text.hasPrefix("SIP/2.0") { lastSource = source }
                return text
            }
        }
        throw TernTestFailure("\(user): nothing within \(timeout) s")
    }

    /// The next request with this method.
    func request(_ method: String, timeout: TimeInterval = 5) throws -> String {
        try receive(timeout: timeout) { $0.hasPrefix(method + " ") }
    }

    /// The next final response (not 1xx) to a request with this Call-ID.
    func finalResponse(callID: String, timeout: TimeInterval = 5) throws -> String {
        try receive(timeout: timeout) { text in
            text.hasPrefix("SIP/2.0 ") && !text.hasPrefix("SIP/2.0 1") && Self.values("Call-ID", in: text).first == callID
        }
    }

    /// Answers a request received last, back to where it came from.
    func answer(_ request: String, status: Int, reason: String) {
        var lines = ["SIP/2.0 \(status) \(reason)"]
        lines += Self.lines(["Via", "Record-Route"], in: request)
        lines += Self.lines(["From", "Call-ID", "CSeq"], in: request)
        let to = Self.lines(["To"], in: request).first ?? "To: <sip:\(user)@tern.test>"
        lines.append(to.contains(";tag=") ? to : to + ";tag=\(user)-answer")
        if request.hasPrefix("INVITE "), status < 300 { lines.append("Contact: \(contact)") }
        lines.append("Content-Length: 0")
        let bytes = Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
        var destination = lastSource
        _ = withUnsafePointer(to: &destination) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(socket, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Header lines with these names, in order.
    static func lines(_ names: [String], in message: String) -> [String] {
        let head = message.components(separatedBy: "\r\n\r\n").first ?? message
        return head.components(separatedBy: "\r\n").dropFirst().filter { line in
            names.contains { line.lowercased().hasPrefix($0.lowercased() + ":") }
        }
    }

    static func values(_ name: String, in message: String) -> [String] {
        lines([name], in: message).map { line in
            String(line.drop { $0 != ":" }.dropFirst()).trimmingCharacters(in: .whitespaces)
        }
    }
}
