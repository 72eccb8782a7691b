#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers

/// Kernel randomness drawn a page at a time. Swift's SystemRandomNumberGenerator makes one
/// getrandom(2) call per number, and every response and branch needs one (a tag, a branch): a
/// system call per message on the SIP loop. The bytes are the kernel's all the same, so tags stay
/// cryptographically random as RFC 3261 §19.3 asks.
enum RandomPool {
    private static let words = 512
    private static let state = NIOLockedValueBox((buffer: [UInt64](repeating: 0, count: words), next: words))
    private static let device: Int32 = open("/dev/urandom", O_RDONLY | O_CLOEXEC)

    static func next() -> UInt64 {
        state.withLockedValue { state in
            if state.next == words {
                refill(&state.buffer)
                state.next = 0
            }
            defer { state.next += 1 }
            return state.buffer[state.next]
        }
    }

    private static func refill(_ buffer: inout [UInt64]) {
        let wanted = words * MemoryLayout<UInt64>.size
        let filled = device < 0 ? -1 : buffer.withUnsafeMutableBytes { bytes -> Int in
            var offset = 0
            while offset < wanted {
                let count = read(device, bytes.baseAddress.map { $0 + offset }, wanted - offset)
                if count <= 0 { return -1 }
                offset += count
            }
            return offset
        }
        if filled != wanted {
            // No device (a chroot without /dev): the standard generator, one call per word.
            var generator = SystemRandomNumberGenerator()
            for index in buffer.indices { buffer[index] = generator.next() }
        }
    }
}
