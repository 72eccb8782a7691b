import Foundation
import Logging
import MongoSupport

/// The real outside services that `scripts/services.sh start` runs for `make test`.
enum TestServices {
    /// The MongoDB-wire server's URI; nil when the services are not running (plain `swift test`).
    static var mongoURI: String? {
        ProcessInfo.processInfo.environment["TERN_TEST_MONGODB_URI"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `make test` sets this, so that a test needing a service fails instead of being skipped.
    static var required: Bool { ProcessInfo.processInfo.environment["TERN_REQUIRE_SERVICES"] == "1" }

    /// Whether MongoDB tests run: always under `make test`; with `swift test` only when the URI is set.
    static var mongoEnabled: Bool { mongoURI != nil || required }

    /// A fresh database of its own for one test, so that tests never see each other's documents.
    static func mongoDatabase(threads: Int = 2) throws -> MongoDatabase {
        guard let uri = mongoURI else {
            throw TestFailure("TERN_TEST_MONGODB_URI is not set: run `make test` or `scripts/services.sh start`")
        }
        var logger = Logger(label: "tern.test.mongodb")
        logger.logLevel = .warning
        let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16)
        return try MongoDatabase(uri: uri, database: String(name), threads: threads, logger: logger)
    }
}
