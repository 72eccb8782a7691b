import Foundation
import Logging
import MongoSupport
import NIOCore
import NIOPosix
import Testing

/// The `tern` binary as a user runs it: a separate process, real sockets, signals, exit codes.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct TernBinaryTests {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var binary: URL {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tern")
        if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
        return packageRoot.appendingPathComponent(".build/debug/tern")
    }

    /// A running tern process with its stderr collected.
    final class TernProcess: @unchecked Sendable {
        let process = Process()
        private let errorPipe = Pipe()
        private let lock = NSLock()
        private var collected = Data()
        /// The pipe reached its end: everything the process wrote is in `collected`.
        private var ended = false

        init(_ arguments: [String]) throws {
            process.executableURL = TernBinaryTests.binary
            // Tests run side by side: a free port each, unless the test says otherwise.
            process.arguments = arguments.contains("--management") ? arguments : arguments + ["--management", "127.0.0.1:0"]
            process.currentDirectoryURL = TernBinaryTests.packageRoot
            process.standardError = errorPipe
            process.standardOutput = errorPipe
            errorPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                if data.isEmpty { handle.readabilityHandler = nil }
                guard let self else { return }
                self.lock.lock()
                self.collected.append(data)
                if data.isEmpty { self.ended = true }
                self.lock.unlock()
            }
            try process.run()
        }

        var output: String {
            lock.lock()
            defer { lock.unlock() }
            return String(decoding: collected, as: UTF8.self)
        }

        /// Waits until `count` listeners are logged and returns their descriptions.
        func listeners(count: Int) async throws -> [String] {
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                let found = output.split(separator: "\n").compactMap { line -> String? in
                    guard let range = line.range(of: "listener=") else { return nil }
                    return String(line[range.upperBound...].prefix { $0 != " " })
                }
                if found.count >= count { return found }
                if !process.isRunning { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TernTestFailure("tern did not report \(count) listeners: \(output)")
        }

        /// The management API's port, once it is logged.
        func managementPort() async throws -> Int {
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                if let range = output.range(of: "address=http://127.0.0.1:") {
                    let digits = output[range.upperBound...].prefix { $0.isNumber }
                    if let port = Int(digits) { return port }
                }
                if !process.isRunning { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TernTestFailure("tern did not report its management API: \(output)")
        }

        func waitForExit(timeout: Duration = .seconds(15)) async throws -> Int32 {
            let deadline = ContinuousClock.now + timeout
            while process.isRunning, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            if process.isRunning {
                process.terminate()
                throw TernTestFailure("tern did not exit: \(output)")
            }
            // The handler that collects the output runs on its own queue and may not have read the
            // last of it yet (on a loaded machine a test once saw none): wait for the pipe's end.
            let drained = ContinuousClock.now + .seconds(5)
            while !lock.withLock({ ended }), ContinuousClock.now < drained {
                try await Task.sleep(for: .milliseconds(10))
            }
            return process.terminationStatus
        }
    }

    @Test func listensOnRequestedPortsAndStopsCleanlyOnSIGTERM() async throws {
        let tern = try TernProcess(["--listen", "udp:127.0.0.1:0", "--listen", "tcp:[::1]:0", "--listen", "ws:127.0.0.1:0"])
        let listeners = try await tern.listeners(count: 3)
        #expect(listeners.count == 3)
        #expect(listeners[0].hasPrefix("udp:127.0.0.1:") && !listeners[0].hasSuffix(":0"))
        #expect(listeners[1].hasPrefix("tcp:[::1]:"))
        #expect(listeners[2].hasPrefix("ws:127.0.0.1:"))
        // It answers on the port it logged.
        let port = try #require(Int(listeners[0].split(separator: ":").last ?? ""))
        let reply = try await udpExchange(port: port, "OPTIONS sip:t SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbin;rport\r\n"
            + "From: <sip:a@t>;tag=1\r\nTo: <sip:t>\r\nCall-ID: bin-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        #expect(reply.hasPrefix("SIP/2.0 200 OK"))
        kill(tern.process.processIdentifier, SIGTERM)
        #expect(try await tern.waitForExit() == 0)
        #expect(tern.output.contains("shutting down"))
    }

    @Test func portInUseIsAnErrorNamingThePort() async throws {
        let holder = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(holder.localAddress?.port)
        let tern = try TernProcess(["--listen", "udp:127.0.0.1:\(port)"])
        let status = try await tern.waitForExit()
        #expect(status == 1)
        #expect(tern.output.contains("cannot listen on udp:127.0.0.1:\(port)"))
        try await holder.close()
    }

    @Test func managementPortInUseIsAnErrorNamingIt() async throws {
        let holder = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(holder.localAddress?.port)
        let tern = try TernProcess(["--listen", "udp:127.0.0.1:0", "--management", "127.0.0.1:\(port)"])
        #expect(try await tern.waitForExit() == 1)
        #expect(tern.output.contains("tern: management API on 127.0.0.1:\(port):"))
        try await holder.close()
    }

    @Test func checkConfigPrintsTheEffectiveConfiguration() async throws {
        let tern = try TernProcess(["--check-config", "tern.example.yaml"])
        #expect(try await tern.waitForExit() == 0)
        #expect(tern.output.contains("  - wss:127.0.0.1:8443"))
        #expect(tern.output.contains("max_message_size: 65535"))
    }

    @Test func checkConfigRejectsUnknownKeys() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tern-bad-\(UUID().uuidString).yaml")
        try "listen:\n  - udp:127.0.0.1:0\ntimers:\n  t9_ms: 3\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let tern = try TernProcess(["--check-config", file.path])
        #expect(try await tern.waitForExit() != 0)
        #expect(tern.output.contains("timers.t9_ms (line 4): unknown key"))
    }

    static var mongoURI: String? { ProcessInfo.processInfo.environment["TERN_TEST_MONGODB_URI"].flatMap { $0.isEmpty ? nil : $0 } }
    static var mongoEnabled: Bool { mongoURI != nil || ProcessInfo.processInfo.environment["TERN_REQUIRE_SERVICES"] == "1" }

    @Test(.enabled(if: mongoEnabled, "needs TERN_TEST_MONGODB_URI (make test starts the server)"))
    func locationAndCredentialsInMongoDB() async throws {
        let scratch = try ScratchDatabase(prefix: "bin")
        let (uri, databaseName, database) = (scratch.uri, scratch.name, scratch.database)
        // HA1 = MD5("alice:tern.test:wonderland").
        try await database.perform { session in
            try session.insert("subscriber", ["username": .string("alice"), "realm": .string("tern.test"),
                                              "ha1_md5": .string("a3f1c6d3b4a6c1c0e8b6b8f7f4d3e1a0")])
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tern-mongo-\(UUID().uuidString).yaml")
        try """
        listen:
          - udp:127.0.0.1:0
        storage:
          location: mongodb
          node: bin-node
          mongodb:
            uri: "\(uri)"
            database: \(databaseName)
        auth:
          enabled: true
          credentials: mongodb
        registrar:
          domains: [tern.test]
        """.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let tern = try TernProcess(["--config", file.path])
        let listeners = try await tern.listeners(count: 1)
        let port = try #require(Int(listeners[0].split(separator: ":").last ?? ""))
        #expect(tern.output.contains("location in MongoDB") && tern.output.contains("credentials from MongoDB"))
        let register = "REGISTER sip:tern.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKmongo1;rport\r\n"
            + "From: <sip:alice@tern.test>;tag=1\r\nTo: <sip:alice@tern.test>\r\nCall-ID: bin-mongo\r\nCSeq: 1 REGISTER\r\n"
            + "Contact: <sip:alice@127.0.0.1:9>\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        #expect(try await udpExchange(port: port, register).hasPrefix("SIP/2.0 401"), "challenged: credentials come from MongoDB")
        kill(tern.process.processIdentifier, SIGTERM)
        #expect(try await tern.waitForExit() == 0)

        // The same, with authentication off, to see the binding land in the shared table.
        try """
        listen:
          - udp:127.0.0.1:0
        storage:
          location: mongodb
          node: bin-node
          mongodb:
            uri: "\(uri)"
            database: \(databaseName)
        """.write(to: file, atomically: true, encoding: .utf8)
        let open = try TernProcess(["--config", file.path])
        let openPort = try #require(Int(try await open.listeners(count: 1)[0].split(separator: ":").last ?? ""))
        #expect(try await udpExchange(port: openPort, register.replacingOccurrences(of: "mongo1", with: "mongo2")
            .replacingOccurrences(of: "CSeq: 1", with: "CSeq: 2")).hasPrefix("SIP/2.0 200"))
        kill(open.process.processIdentifier, SIGTERM)
        #expect(try await open.waitForExit() == 0)
        let stored = try await database.perform { session in
            try session.find("location", filter: ["aor": .string("sip:alice@tern.test")])
        }
        #expect(stored.count == 1)
        #expect(stored.first?["node"]?.string == "bin-node" && stored.first?["contact"]?.string == "sip:alice@127.0.0.1:9")
        await scratch.drop()
    }

    /// A database of its own on the MongoDB test server, dropped by ``drop()``.
    struct ScratchDatabase {
        let uri: String
        let name: String
        let database: MongoDatabase

        init(prefix: String) throws {
            guard let uri = TernBinaryTests.mongoURI else { throw TernTestFailure("no TERN_TEST_MONGODB_URI") }
            var logger = Logger(label: "tern.test")
            logger.logLevel = .critical
            self.uri = uri
            name = prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12)
            database = try MongoDatabase(uri: uri, database: name, logger: logger)
        }

        /// `storage:` lines pointing tern at this database.
        var storageLines: String { "  mongodb:\n    uri: \"\(uri)\"\n    database: \(name)\n" }

        func drop() async {
            _ = try? await database.perform { try $0.command(["dropDatabase": .int32(1)]) }
            await database.shutdown()
        }
    }

    /// A tern on one UDP listener with its embedded store in a fresh temporary directory, as node
    /// `node`, configured further by `storage` (more lines of the `storage:` section) and
    /// `sections` (top-level YAML after `listen` and `storage`).
    struct ConfiguredTern {
        let process: TernProcess
        let sipPort: Int
        let directory: URL

        func removeDirectory() {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    static func startTern(node: String, storage: String = "", _ sections: String = "") async throws -> ConfiguredTern {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-\(node)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("tern.yaml")
        let yaml = """
        listen:
          - udp:127.0.0.1:0
        storage:
          sqlite_path: "\(directory.appendingPathComponent("tern.sqlite").path)"
          node: \(node)

        """
        try (yaml + storage + sections).write(to: file, atomically: true, encoding: .utf8)
        let tern = try TernProcess(["--config", file.path])
        guard let port = Int(try await tern.listeners(count: 1)[0].split(separator: ":").last ?? "") else {
            throw TernTestFailure("no UDP port in \(tern.output)")
        }
        return ConfiguredTern(process: tern, sipPort: port, directory: directory)
    }

    /// Sends one datagram from a fresh socket and returns the first reply as text.
    func udpExchange(port: Int, _ text: String) async throws -> String {
        let phone = try UDPPhone(user: "exchange")
        phone.send(text, toPort: port)
        return try phone.receive(timeout: 5)
    }
}

struct TernTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
