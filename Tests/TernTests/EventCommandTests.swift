import Foundation
import Testing

/// Commands over RabbitMQ through the `tern` binary (the management methods, answered on
/// reply_to), and the example pika scripts in `examples/` run against the same broker. Part of
/// EventBusTests's serialized suite: its tests stop and freeze the broker, which would cut these
/// tests' own connections if they ran beside them.
extension EventBusTests {

    /// A tern publishing to its own exchange and taking commands from its own queue.
    static func startCommandTern(uri: String) async throws -> (tern: TernBinaryTests.TernProcess, sip: Int, exchange: String, queue: String,
                                                        directory: URL) {
        let suffix = UUID().uuidString.prefix(8)
        let exchange = "tern.events.commands.\(suffix)"
        let queue = "tern.commands.test.\(suffix)"
        let started = try await TernBinaryTests.startTern(node: "command-node", """
        events:
          brokers: ["\(uri)"]
          exchange: \(exchange)
          commands:
            queue: \(queue)
        """)
        let tern = started.process
        // A command published before the queue is bound would be unroutable: wait for the consumer.
        let deadline = ContinuousClock.now + .seconds(15)
        while !tern.output.contains("command queue connected"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        guard tern.output.contains("command queue connected") else { throw TernTestFailure("no command queue: \(tern.output)") }
        return (tern, started.sipPort, exchange, queue, started.directory)
    }

    static func result(_ reply: [String: Any]) -> [String: Any] { reply["result"] as? [String: Any] ?? [:] }
    static func errorCode(_ reply: [String: Any]) -> Int? { (reply["error"] as? [String: Any])?["code"] as? Int }

    @Test func commandsRoundTripWithReplies() async throws {
        let uri = try #require(AMQPTestService.uri)
        let (tern, sip, exchange, queue, directory) = try await Self.startCommandTern(uri: uri)
        defer { try? FileManager.default.removeItem(at: directory) }
        let client = try AMQPTestConsumer(uri: uri, queue: "replies-" + UUID().uuidString, exchange: exchange, bindingKey: nil)
        #expect(try await ManagementAPITests.register("alice", port: sip).hasPrefix("SIP/2.0 200"))

        func call(_ method: String, _ params: String) throws -> [String: Any] {
            try client.request(exchange: exchange, routingKey: "command." + method,
                               body: #"{"jsonrpc":"2.0","id":"c1","method":""# + method + #"","params":"# + params + "}")
        }
        let lookup = try call("location.lookup", #"{"aor":"sip:alice@tern.test"}"#)
        #expect(lookup["id"] as? String == "c1")
        #expect((Self.result(lookup)["bindings"] as? [[String: Any]])?.first?["contact"] as? String == "sip:alice@127.0.0.1:9")
        // The command queue is trusted as a whole: state changes need no token.
        let published = try call("presence.publish", #"{"presentity":"alice@tern.test","status":"open"}"#)
        #expect((Self.result(published)["etag"] as? String)?.isEmpty == false)
        let sent = try call("message.send", #"{"to":"bob@tern.test","body":"from a command"}"#)
        #expect(Self.result(sent)["outcome"] as? String == "stored")
        let stored = try call("messages.stored", #"{"user":"bob@tern.test"}"#)
        #expect((Self.result(stored)["messages"] as? [[String: Any]])?.first?["body"] as? String == "from a command")
        let removed = try call("location.remove", #"{"aor":"alice@tern.test"}"#)
        #expect(Self.result(removed)["removed"] as? Int == 1)
        #expect((Self.result(try call("location.lookup", #"{"aor":"alice@tern.test"}"#))["bindings"] as? [Any])?.isEmpty == true)
        let watchers = try call("presence.authorize", #"{"presentity":"alice@tern.test","watcher":"carol@tern.test","decision":"blocked"}"#)
        #expect(Self.result(watchers)["decision"] as? String == "blocked")

        // Bad commands get an error naming the fault, and are taken off the queue.
        let notJSON = try client.request(exchange: exchange, routingKey: "command.x", body: "{not json")
        #expect(Self.errorCode(notJSON) == -32700)
        #expect(Self.errorCode(try call("no.such.method", "{}")) == -32601)
        let badParams = try call("location.lookup", #"{"aor":12}"#)
        #expect(Self.errorCode(badParams) == -32602)
        #expect(((badParams["error"] as? [String: Any])?["message"] as? String)?.contains("'aor'") == true)

        kill(tern.process.processIdentifier, SIGTERM)
        #expect(try await tern.waitForExit() == 0)
        // Once Tern's connection is gone, anything it had not acked would be ready again.
        #expect(client.depth(of: queue) == 0)
    }

    @Test func theExampleConsumerPrintsEventsAndTheExampleSenderGetsReplies() async throws {
        let uri = try #require(AMQPTestService.uri)
        let python = try #require(AMQPTestService.python, "make test's services provide a Python with pika")
        let (tern, sip, exchange, _, directory) = try await Self.startCommandTern(uri: uri)
        defer {
            kill(tern.process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: directory)
        }
        let consumer = try PythonScript(python, "examples/event_consumer.py",
                                        ["--url", uri, "--exchange", exchange, "--binding-key", "registration.#", "--count", "1"])
        defer { consumer.stop() }
        try await consumer.waitFor("waiting for events", in: \.errorText)
        #expect(try await ManagementAPITests.register("zoe", port: sip).hasPrefix("SIP/2.0 200"))
        #expect(try await consumer.waitForExit() == 0)
        #expect(consumer.outputText.contains("registration.added node=command-node"))
        #expect(consumer.outputText.contains(#""aor": "sip:zoe@tern.test""#))

        let sender = try PythonScript(python, "examples/send_command.py",
                                      ["--url", uri, "--exchange", exchange, "location.lookup", #"{"aor": "zoe@tern.test"}"#])
        #expect(try await sender.waitForExit() == 0, "\(sender.outputText) \(sender.errorText)")
        #expect(sender.outputText.contains(#""contact": "sip:zoe@127.0.0.1:9""#))
        let failing = try PythonScript(python, "examples/send_command.py", ["--url", uri, "--exchange", exchange, "nope"])
        #expect(try await failing.waitForExit() == 1)
        #expect(failing.outputText.contains("-32601"), "\(failing.outputText) \(failing.errorText)")
    }
}

/// A script from the repository run with the given Python, output collected.
final class PythonScript: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var collected: [Data] = [Data(), Data()]
    private var open = 2

    init(_ python: String, _ script: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [TernBinaryTests.packageRoot.appendingPathComponent(script).path] + arguments
        let pipes = [Pipe(), Pipe()]
        process.standardOutput = pipes[0]
        process.standardError = pipes[1]
        try process.run()
        // One reader per pipe, until end of file: nothing is lost however late the last lines come.
        for (index, pipe) in pipes.enumerated() {
            let handle = pipe.fileHandleForReading
            Thread { [self] in
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    lock.withLock { collected[index].append(data) }
                }
                lock.withLock { open -= 1 }
            }.start()
        }
    }

    deinit {
        stop()
    }

    /// Ends a script that serves until stopped (the reader threads keep this object alive until the
    /// script's output ends, so deinit alone never comes for one). SIGKILL: the gateway outlived a
    /// `terminate()` (SIGTERM) sent from these tests.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var outputText: String { lock.withLock { String(decoding: collected[0], as: UTF8.self) } }
    var errorText: String { lock.withLock { String(decoding: collected[1], as: UTF8.self) } }

    func waitFor(_ text: String, in stream: KeyPath<PythonScript, String>, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !self[keyPath: stream].contains(text), ContinuousClock.now < deadline {
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard self[keyPath: stream].contains(text) else { throw TernTestFailure("no '\(text)': \(outputText) \(errorText)") }
    }

    /// The exit status, once the process has ended and both pipes are read to their end.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning || lock.withLock({ open > 0 }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            process.terminate()
            throw TernTestFailure("script did not exit: \(outputText) \(errorText)")
        }
        return process.terminationStatus
    }
}
