import Foundation
import NIOCore

/// Loads the conformance fixtures bundled with this test target (see Fixtures/README.md for provenance).
enum Fixture {
    static func url(_ relativePath: String) -> URL? {
        Bundle.module.url(forResource: "Fixtures/" + relativePath, withExtension: nil)
    }

    static func bytes(_ relativePath: String) throws -> ByteBuffer {
        guard let url = url(relativePath) else { throw FixtureError.missing(relativePath) }
        return ByteBuffer(bytes: try Data(contentsOf: url))
    }

    static func names(in folder: String) -> [String] {
        guard let url = url(folder),
              let items = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return [] }
        return items.sorted()
    }

    enum FixtureError: Error { case missing(String) }
}
