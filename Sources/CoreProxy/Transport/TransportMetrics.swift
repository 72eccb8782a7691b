import Metrics

/// Counters of the transport layer, created once with fixed names (swift-metrics).
struct TransportMetrics: Sendable {
    let bytesReceived = Counter(label: "tern.transport.bytes_received")
    let bytesSent = Counter(label: "tern.transport.bytes_sent")
    let keepAlives = Counter(label: "tern.transport.keepalives")
    let connectionsOpened = Counter(label: "tern.transport.connections_opened")
    let connectionsClosed = Counter(label: "tern.transport.connections_closed")
    let connectionsRefused = Counter(label: "tern.transport.connections_refused")
    let idleClosed = Counter(label: "tern.transport.idle_closed")
    let streamErrors = Counter(label: "tern.transport.stream_errors")
    let socketErrors = Counter(label: "tern.transport.socket_errors")
    /// Datagrams not sent because the kernel would refuse them (``DatagramReach``).
    let datagramsRefused = Counter(label: "tern.transport.datagrams_refused")
    /// UDP sockets bound again after closing while Tern served.
    let udpSocketsRebound = Counter(label: "tern.transport.udp_sockets_rebound")
}
