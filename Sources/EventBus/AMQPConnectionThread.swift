import CRabbitMQ
import Foundation
import NIOConcurrencyHelpers

/// The thread that owns one AMQP connection at a time (librabbitmq blocks): it connects to the
/// configured brokers in turn, with back-off from 0.2 to 5 s, and runs a session on each
/// connection until the session ends for good or Tern stops.
final class AMQPConnectionThread: @unchecked Sendable {
    /// The AMQP threads' niceness (the SIP event loops keep the default, 0).
    static let niceness: Int32 = 10
    private let name: String
    private let stopRequested = NIOLockedValueBox(false)
    private let finished = NSCondition()
    private var running = false

    /// - Parameter name: the OS thread's name (Linux takes 15 characters at most).
    init(name: String) {
        self.name = name
    }

    var isStopping: Bool { stopRequested.withLockedValue { $0 } }

    /// Runs `body` on a new thread.
    func start(_ body: @escaping @Sendable () -> Void) {
        finished.lock()
        running = true
        finished.unlock()
        let thread = Thread { [self] in
            // Named for perf and top -H. Below the SIP event loops: a publishing cycle writes a batch
            // of hundreds of events at once, and on a busy core the loop that shares it should not
            // wait behind it (p99).
            _ = tern_amqp_thread_begin(name, AMQPConnectionThread.niceness)
            body()
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        thread.start()
    }

    /// Asks the thread to stop and waits up to `seconds` for it to end.
    func stop(waitingAtMost seconds: Double) {
        stopRequested.withLockedValue { $0 = true }
        finished.lock()
        let deadline = Date(timeIntervalSinceNow: seconds)
        while running, Date() < deadline { _ = finished.wait(until: deadline) }
        finished.unlock()
    }

    /// Connects and runs sessions until `shouldStop` or a session returns nil. A session returns
    /// why its connection failed; `lost` hears it before the next broker is tried.
    static func runSessions(brokers: [AMQPBroker], shouldStop: () -> Bool, connect: (AMQPBroker) -> AMQPConnection?,
                            session: (AMQPConnection, AMQPBroker) -> String?, lost: (AMQPBroker, String) -> Void) {
        var index = 0
        var backoff: TimeInterval = 0.2
        while !brokers.isEmpty, !shouldStop() {
            let broker = brokers[index % brokers.count]
            guard let connection = connect(broker) else {
                index += 1
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 5)
                continue
            }
            backoff = 0.2
            guard let reason = session(connection, broker) else { return }
            lost(broker, reason)
            index += 1
        }
    }
}
