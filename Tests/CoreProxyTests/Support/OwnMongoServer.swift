import Foundation
import NIOCore
import NIOPosix

/// A MongoDB-wire server (SecantusDB) of a test's own, for tests that stop and restart it: the
/// shared one stays up for every other test.
final class OwnMongoServer: @unchecked Sendable {
    let port: Int
    let directory: URL
    private var process: Process?

    var uri: String { "mongodb://127.0.0.1:\(port)/?serverSelectionTimeoutMS=500&connectTimeoutMS=500&heartbeatFrequencyMS=500&retryWrites=false" }

    init() async throws {
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        port = probe.localAddress?.port ?? 0
        try await probe.close()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-mongo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await start()
    }

    /// Starts the server on its port and data directory; returns once the port accepts connections.
    func start() async throws {
        guard let binary = ProcessInfo.processInfo.environment["TERN_TEST_SECANTUSD"] else {
            throw TestFailure("TERN_TEST_SECANTUSD is not set: run `make test` or `scripts/services.sh start`")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--host", "127.0.0.1", "--port", String(port), "--storage-path", directory.path, "--standalone",
                             "--sync-on-commit"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
                try? await channel.close()
                return
            }
            guard process.isRunning else { throw TestFailure("the MongoDB test server exited at start") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("the MongoDB test server did not open port \(port)")
    }

    /// Kills it (SIGKILL: a crash, and also because a child of the test runner inherits SIGTERM as
    /// ignored) and waits until it is gone, so that its directory can be reused. Acknowledged
    /// writes survive: the server syncs on commit and the store's inserts are journaled.
    func stop() async throws {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        self.process = nil
    }

    func remove() async {
        try? await stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
