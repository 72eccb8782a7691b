import ArgumentParser
import CoreProxy
import Foundation
import CMalloc
import Logging
import TernServer

@main
struct Tern: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "A SIP server for IMS, presence and instant messaging on mobile networks."
    )

    @Option(name: .long, help: "YAML configuration file (every key has a default; see tern.example.yaml).")
    var config: String?

    @Option(name: .long, help: "Validate this configuration file, print the effective configuration, and exit.")
    var checkConfig: String?

    @Option(name: .long, help: ArgumentHelp(
        "Listener PROTO:HOST:PORT (udp, tcp, tls, ws, wss; IPv6 hosts in brackets; port 0 picks a free port). Repeatable; replaces the configured listeners.",
        valueName: "PROTO:HOST:PORT"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Management API address HOST:PORT (port 0 picks a free port), or off. Replaces management.listen.",
        valueName: "HOST:PORT|off"))
    var management: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    func run() async throws {
        tuneAllocator()
        if let checkConfig {
            let configuration = try load(checkConfig)
            print(configuration.yamlDescription, terminator: "")
            return
        }
        var configuration = try config.map(load) ?? TernConfiguration()
        if !listen.isEmpty {
            configuration.listeners = try listen.map { text in
                do {
                    return try ListenerSpec(parsing: text)
                } catch {
                    throw ValidationError("--listen \(text): \(error)")
                }
            }
            do {
                try configuration.validate()
            } catch {
                throw ValidationError(error.description)
            }
        }
        if let management {
            if management == "off" {
                configuration.management = nil
            } else {
                var settings = configuration.management ?? TernConfiguration.ManagementSettings()
                guard let (host, port) = TernConfiguration.ManagementSettings.parseListen(management) else {
                    throw ValidationError("--management \(management): expected HOST:PORT or off")
                }
                settings.host = host
                settings.port = port
                configuration.management = settings
            }
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown --log-level \(logLevel)") }
            configuration.logLevel = level
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tern")
        do {
            try await TernApplication(configuration: configuration, logger: logger).run()
        } catch let error as TransportLayer.StartError {
            FileHandle.standardError.write(Data("tern: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as ManagementServiceError {
            FileHandle.standardError.write(Data("tern: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    private func load(_ path: String) throws -> TernConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read \(path): \(error.localizedDescription)")
        }
        do {
            return try TernConfiguration(yaml: text)
        } catch {
            throw ValidationError("\(path): \(error)")
        }
    }
}

/// glibc's defaults grow and shrink the heap a little at a time; under SIP load (thousands of
/// short-lived transactions a second) that showed as `mprotect` and page-fault time in profiles.
/// Growing by 64 MiB, trimming only above 256 MiB and a fixed mmap threshold took roughly 5–10%
/// off the CPU per REGISTER in alternating runs (within this machine's noise, never worse).
/// Untouched reserve costs no resident memory.
private func tuneAllocator() {
    tern_tune_allocator(64 << 20, 256 << 20, 1 << 20)
}
