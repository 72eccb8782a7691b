#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers

/// RFC 1123 dates for the Date header (RFC 3261 §20.17), e.g. `Sat, 13 Nov 2010 23:29:00 GMT`.
public enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The text changes once a second and every REGISTER's 200 OK carries it: formatted once per second.
    private static let lastFormatted = NIOLockedValueBox((second: -1, text: ""))

    public static func now() -> String {
        var seconds = time(nil)
        if let cached = lastFormatted.withLockedValue({ $0.second == seconds ? $0.text : nil }) { return cached }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let text = format(parts)
        lastFormatted.withLockedValue { $0 = (seconds, text) }
        return text
    }

    static func format(_ parts: tm) -> String {
        let day = days[Int(parts.tm_wday) % 7]
        let month = months[Int(parts.tm_mon) % 12]
        return "\(day), \(twoDigits(parts.tm_mday)) \(month) \(parts.tm_year + 1900) "
            + "\(twoDigits(parts.tm_hour)):\(twoDigits(parts.tm_min)):\(twoDigits(parts.tm_sec)) GMT"
    }

    private static func twoDigits(_ value: Int32) -> String {
        value < 10 ? "0" + String(value) : String(value)
    }
}
