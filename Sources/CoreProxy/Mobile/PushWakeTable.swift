import NIOConcurrencyHelpers
import SIP

/// The PURRs (RFC 8599 §6: Push Resource ID values) handed to push-capable devices, so that a
/// request inside a dialog can name the device to wake. Each value is an HMAC of the binding under
/// a secret of this process, rotated every `rotation` seconds: unforgeable, and unlinkable across
/// rotations. Old values stay valid while their binding lives, since dialogs may still use them.
public final class PushWakeTable: LocationObserver, Sendable {
    private let secret = Hashing.randomBytes(32)
    private let rotationSeconds: Int64
    private let table = NIOLockedValueBox<[String: (aor: String, key: String)]>([:])

    public init(rotationSeconds: Int64 = 86_400) {
        self.rotationSeconds = max(1, rotationSeconds)
    }

    /// The current PURR of a binding (recorded, so requests carrying it can be matched).
    public func purr(aor: String, key: String, now: Int64) -> String {
        let period = now / 1000 / rotationSeconds
        let value = Hashing.hexString(Hashing.hmacSHA256(key: secret, Array((aor + "\n" + key + "\n" + String(period)).utf8)).prefix(12))
        table.withLockedValue { $0[value] = (aor, key) }
        return value
    }

    /// The binding a PURR was given to, while that binding lives.
    public func binding(for purr: String) -> (aor: String, key: String)? {
        table.withLockedValue { $0[purr] }
    }

    public var count: Int { table.withLockedValue { $0.count } }

    /// A binding that goes takes its PURRs with it (RFC 8599 §6.2.1: no push after it is gone).
    public func locationChanged(_ event: BindingEvent) {
        guard event.kind == .removed || event.kind == .expired, event.binding.push != nil else { return }
        let aor = event.binding.aor, key = event.binding.key
        table.withLockedValue { table in table = table.filter { !($0.value.aor == aor && $0.value.key == key) } }
    }
}
