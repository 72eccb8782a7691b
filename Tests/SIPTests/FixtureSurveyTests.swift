import Testing
import NIOCore
@testable import SIP

@Suite struct FixtureSurvey {
    @Test func survey() throws {
        for folder in ["rfc4475/valid", "rfc4475/invalid", "rfc5118"] {
            for name in Fixture.names(in: folder) {
                let bytes = try Fixture.bytes(folder + "/" + name)
                do {
                    let message = try SIPMessageParser().parse(bytes)
                    if message.isRequest {
                        do { try message.validateRequest(); print("SURVEY \(folder)/\(name): OK request \(message.method!)") }
                        catch { print("SURVEY \(folder)/\(name): INVALID \(error) -> \(SIPStatus(error)) answerable=\(message.canBeAnswered)") }
                    } else {
                        do { try message.validateResponse(); print("SURVEY \(folder)/\(name): OK response \(message.statusCode!)") }
                        catch { print("SURVEY \(folder)/\(name): INVALID response \(error)") }
                    }
                } catch {
                    print("SURVEY \(folder)/\(name): PARSE ERROR \(error)")
                }
            }
        }
    }
}
