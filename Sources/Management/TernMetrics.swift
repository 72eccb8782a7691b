import Metrics
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
    private let context: ManagementContext

    init(context: ManagementContext, registry: PrometheusCollectorRegistry) {
        self.context = context
        serverTransactions = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tern_sip_transactions", unitName: "", helpText: "SIP transactions in progress"),
                                                labels: [("kind", "server")])
        clientTransactions = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tern_sip_transactions", unitName: "", helpText: "SIP transactions in progress"),
                                                labels: [("kind", "client")])
        subscriptions = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tern_presence_subscriptions", unitName: "", helpText: "Live presence and winfo subscriptions"))
        presentities = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tern_presence_presentities", unitName: "", helpText: "Presentities with state or watchers"))
    }

    func refresh() {
        serverTransactions.set(Int64(context.server.transactionLayer.serverTransactionCount))
        clientTransactions.set(Int64(context.server.transactionLayer.clientTransactionCount))
        if let presence = context.presence {
            subscriptions.set(Int64(presence.subscriptionCount))
            presentities.set(Int64(presence.presentityCount))
        }
    }
}
