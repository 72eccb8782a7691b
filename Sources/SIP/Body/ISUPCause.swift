/// Q.850 cause values and SIP statuses, mapped as RFC 3398 §7.2.4.1 (ISUP → SIP) and §8.2.6.1
/// (SIP → ISUP) say; the cause travels too, in `Reason: Q.850;cause=N` (RFC 3326).
public enum ISUPCause {
    /// The SIP status for a release cause (RFC 3398 §7.2.4.1); 500 for one the table does not name.
    public static func sipStatus(forCause cause: Int) -> Int {
        switch cause {
        case 1, 2, 3: 404
        case 4, 5: 500
        case 17: 486
        case 18: 408
        case 19: 480
        case 20: 480
        case 21: 403
        case 22: 410
        case 23: 410
        case 26: 404
        case 27: 502
        case 28: 484
        case 29: 501
        case 31: 480
        case 34, 38, 41, 42, 47: 503
        case 55, 57: 403
        case 58: 503
        case 65: 488
        case 70: 488
        case 79: 501
        case 87: 403
        case 88: 503
        case 102: 504
        case 111: 500
        case 127: 500
        default: 500
        }
    }

    /// The release cause for a SIP status (RFC 3398 §8.2.6.1); 31 (normal, unspecified) for those it
    /// leaves unmapped (487, 488, 606) or does not name.
    public static func cause(forStatus status: Int) -> Int {
        switch status {
        case 400: 41
        case 401, 402, 403: 21
        case 404: 1
        case 405: 63
        case 406: 79
        case 407: 21
        case 408: 102
        case 410: 22
        case 413, 414: 127
        case 415: 79
        case 416: 127
        case 420, 421: 127
        case 423: 127
        case 480: 18
        case 481: 41
        case 482, 483: 25
        case 484: 28
        case 485: 1
        case 486: 17
        case 500: 41
        case 501: 79
        case 502: 38
        case 503: 41
        case 504: 102
        case 505: 127
        case 513: 127
        case 600: 17
        case 603: 21
        case 604: 1
        default: 31
        }
    }

    /// The cause value of a Cause Indicators parameter (Q.850 §2.2: the last octet's low seven bits).
    public static func value(ofIndicators indicators: [UInt8]) -> Int? {
        guard indicators.count >= 2 else { return nil }
        return Int(indicators[1] & 0x7F)
    }

    /// The `Reason` header value for a cause (RFC 3326).
    public static func reasonHeader(_ cause: Int) -> String { "Q.850;cause=" + String(cause) }
}
