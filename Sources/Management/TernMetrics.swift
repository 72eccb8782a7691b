import Metrics
import CMalloc
import CoreProxy
import Presence
public import Prometheus

/// Where the process's swift-metrics counters end up, for `/metrics`. MetricsSystem takes one
/// bootstrap per process, so the registry is made once, on first use; whatever creates metrics
/// (the SIP core, the modules) must come after it to be seen.
public enum TernMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { name, labels in (prometheusName(name), labels) }
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// `tern.sip.requests_received` → `tern_sip_requests_received`: Prometheus names take letters,
    /// digits, `_` and `:` only.
    static func prometheusName(_ label: String) -> String {
        String(String.UnicodeScalarView(label.unicodeScalars.map { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "_", ":": scalar
            default: "_"
            }
        }))
    }
}

/// Counts that are read off the live tables when `/metrics` is scraped, rather than kept up to
/// date on every request.
struct ScrapeGauges: Sendable {
    private let serverTransactions: Prometheus.Gauge
    private let clientTransactions: Prometheus.Gauge
    private let subscriptions: Prometheus.Gauge
    private let presentities: Prometheus.Gauge
    private let heapInUse: Prometheus.Gauge
    private let context: ManagementContext

    init(context: ManagementContext, registry: PrometheusCollectorRegistry) {
        self.context = context
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        serverTransactions = gauge("tern_sip_transactions", "SIP transactions in progress", [("kind", "server")])
        clientTransactions = gauge("tern_sip_transactions", "SIP transactions in progress", [("kind", "client")])
        subscriptions = gauge("tern_presence_subscriptions", "Live presence and winfo subscriptions")
        presentities = gauge("tern_presence_presentities", "Presentities with state or watchers")
        heapInUse = gauge("tern_process_heap_in_use_bytes",
                          "Bytes held from the allocator (live memory; RSS also counts freed memory not yet returned)")
    }

    func refresh() {
        heapInUse.set(Int64(clamping: tern_heap_in_use()))
        serverTransactions.set(Int64(context.server.transactionLayer.serverTransactionCount))
        clientTransactions.set(Int64(context.server.transactionLayer.clientTransactionCount))
        if let presence = context.presence {
            subscriptions.set(Int64(presence.subscriptionCount))
            presentities.set(Int64(presence.presentityCount))
        }
    }
}
