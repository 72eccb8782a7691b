public import NIOCore
import NIOConcurrencyHelpers
public import Logging
import SIP
import Metrics

/// Probes the bindings that only work while a NAT mapping or an outbound flow lives (devices behind
/// NAT, RFC 5626 outbound) with OPTIONS at a fixed interval, and removes a binding whose device
/// misses `failures` probes in a row, so that callers are not sent into a dead end. Any response,
/// even an error, proves the device is there. Devices that can be woken by a push are left to sleep.
public final class KeepAliveProber: ServerFeature, Sendable {
    public struct Configuration: Sendable {
        public var interval: TimeAmount
        public var failures: Int

        public init(interval: TimeAmount, failures: Int = 2) {
            self.interval = interval
            self.failures = max(1, failures)
        }
    }

    public let configuration: Configuration
    private let proxy: StatefulProxy
    private let location: LocationService
    private let loop: any EventLoop
    private let logger: Logger
    /// Misses in a row, by AOR and binding key.
    private let misses = NIOLockedValueBox<[String: Int]>([:])
    private let task = NIOLockedValueBox<RepeatedTask?>(nil)
    private let sent = Counter(label: "tern.keepalive.probes")
    private let missed = Counter(label: "tern.keepalive.missed")
    private let removed = Counter(label: "tern.keepalive.removed")

    public init(configuration: Configuration, proxy: StatefulProxy, location: LocationService, loop: any EventLoop, logger: Logger) {
        self.configuration = configuration
        self.proxy = proxy
        self.location = location
        self.loop = loop
        self.logger = logger
    }

    public func start() {
        let repeated = loop.scheduleRepeatedTask(initialDelay: configuration.interval, delay: configuration.interval) { [self] _ in
            probeAll()
        }
        task.withLockedValue { $0 = repeated }
    }

    public func stop() async {
        task.withLockedValue { $0 }?.cancel()
    }

    /// Whether the binding lives only as long as its flow or NAT mapping.
    static func needsProbing(_ binding: Binding) -> Bool {
        binding.push == nil && (binding.isBehindNAT || binding.regID != nil)
    }

    func probeAll() {
        let bindings = location.allBindings.filter(Self.needsProbing)
        let live = Set(bindings.map { $0.aor + "\n" + $0.key })
        misses.withLockedValue { table in table = table.filter { live.contains($0.key) } }
        for binding in bindings { probe(binding) }
    }

    private func probe(_ binding: Binding) {
        let key = binding.aor + "\n" + binding.key
        sent.increment()
        do {
            try proxy.probe(binding.contact, device: binding, on: loop) { [self] event in
                switch event {
                case .response:
                    misses.withLockedValue { $0[key] = nil }
                case .timeout, .transportError:
                    missedProbe(binding, key: key)
                }
            }
        } catch {
            missedProbe(binding, key: key)
        }
    }

    private func missedProbe(_ binding: Binding, key: String) {
        missed.increment()
        let count = misses.withLockedValue { table -> Int in
            table[key, default: 0] += 1
            return table[key] ?? 0
        }
        guard count >= configuration.failures else { return }
        misses.withLockedValue { $0[key] = nil }
        removed.increment()
        logger.info("removing binding that stopped answering keep-alive probes", metadata: ["aor": "\(binding.aor)", "misses": "\(count)"])
        // Only the binding that was probed: a REGISTER since may have replaced it with a live one.
        location.update(aor: binding.aor) { bindings in
            bindings.removeAll { $0.key == binding.key && $0.callID == binding.callID && $0.cseq == binding.cseq }
        }
    }
}
