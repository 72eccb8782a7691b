public import CoreProxy
public import NIOCore
import NIOConcurrencyHelpers
public import Logging
import Metrics

/// Probes every dispatcher destination with OPTIONS at the tables' interval: one that misses
/// `probeFailures` probes in a row gets no traffic until it answers again (any answer will do).
public final class DestinationProber: ServerFeature, Sendable {
    private let router: Router
    private let proxy: StatefulProxy
    private let loop: any EventLoop
    private let logger: Logger
    private let task = NIOLockedValueBox<Scheduled<Void>?>(nil)
    private let stopped = NIOLockedValueBox(false)
    private let sent = Counter(label: "tern.routing.probes")
    private let wentDown = Counter(label: "tern.routing.destinations_down")
    private let cameBack = Counter(label: "tern.routing.destinations_up")

    public init(router: Router, proxy: StatefulProxy, loop: any EventLoop, logger: Logger) {
        self.router = router
        self.proxy = proxy
        self.loop = loop
        self.logger = logger
    }

    public func start() {
        schedule()
    }

    public func stop() async {
        stopped.withLockedValue { $0 = true }
        task.withLockedValue { $0 }?.cancel()
    }

    /// The interval is read from the tables each round, so a reload changes it.
    private func schedule() {
        guard !stopped.withLockedValue({ $0 }) else { return }
        let interval = router.tables.probeInterval
        let next = loop.scheduleTask(in: .seconds(Int64(max(1, interval)))) { [self] in
            if router.tables.probeInterval > 0 { probeAll() }
            schedule()
        }
        task.withLockedValue { $0 = next }
    }

    /// One round of probes now (the timer calls it every interval).
    public func probeAll() {
        let tables = router.tables
        var seen: Set<String> = []
        for set in tables.dispatcherSets.values {
            for destination in set.destinations where seen.insert(destination.key).inserted {
                probe(destination, failures: tables.probeFailures)
            }
        }
    }

    private func probe(_ destination: DispatcherSet.Destination, failures: Int) {
        sent.increment()
        let key = destination.key
        let state = router.destinations
        do {
            try proxy.probe(destination.uri, on: loop) { [self] event in
                switch event {
                case .response:
                    if state.answered(key) {
                        cameBack.increment()
                        logger.notice("dispatcher destination answers again", metadata: ["destination": "\(key)"])
                    }
                case .timeout, .transportError:
                    if state.missed(key, limit: failures) {
                        wentDown.increment()
                        logger.warning("dispatcher destination stopped answering probes", metadata: ["destination": "\(key)"])
                    }
                }
            }
        } catch {
            _ = state.missed(key, limit: failures)
        }
    }
}
