@testable import CoreProxy
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The timer wheels that carry transaction timers and NOTIFY throttling: a timer fires on the
/// first tick at or after its time, a cancelled one never, and a wheel that went idle (and
/// stopped ticking) fires what is armed after.
@Suite(.timeLimit(.minutes(1)))
struct TimerWheelTests {
    @Test func firesOnTimeNeverWhenCancelledAndAgainAfterIdling() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let wheel = TimerWheels().fineWheel(for: loop)
        let fired = NIOLockedValueBox<[String]>([])
        let start = NIODeadline.now()
        let firedAt = NIOLockedValueBox<TimeAmount?>(nil)
        wheel.schedule(after: TimeAmount.milliseconds(50)) {
            fired.withLockedValue { $0.append("first") }
            firedAt.withLockedValue { $0 = .now() - start }
        }
        let cancelled = wheel.schedule(after: TimeAmount.milliseconds(30)) { fired.withLockedValue { $0.append("cancelled") } }
        wheel.cancel(cancelled)
        try await Task.sleep(for: .milliseconds(200))
        #expect(fired.withLockedValue { $0 } == ["first"])
        let elapsed = try #require(firedAt.withLockedValue { $0 })
        #expect(elapsed >= TimeAmount.milliseconds(50) && elapsed < TimeAmount.milliseconds(150), "fired after \(elapsed)")
        // Nothing armed: the wheel stopped ticking. A new timer starts it again.
        wheel.schedule(after: TimeAmount.milliseconds(20)) { fired.withLockedValue { $0.append("after idle") } }
        try await Task.sleep(for: .milliseconds(200))
        #expect(fired.withLockedValue { $0 } == ["first", "after idle"])
        try await group.shutdownGracefully()
    }
}
