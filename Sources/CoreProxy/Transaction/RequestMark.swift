public import SIP

/// What tells one request from another when no transaction remembers it: a keyed hash of its
/// Call-ID, CSeq and top Via branch (a retransmission repeats all three; RFC 3261 §17.2.3).
///
/// The key is Swift's per-process random hash seed, so marks cannot be predicted from outside and
/// are never compared across restarts.
public enum RequestMark {
    /// The request's mark; never 0.
    public static func of(_ request: SIPMessage) -> Int {
        var hasher = Hasher()
        hasher.combine(request.callID ?? "")
        hasher.combine(((try? request.cseq()) ?? nil)?.sequence ?? 0)
        hasher.combine(((try? request.topVia()) ?? nil)?.branch ?? "")
        return hasher.finalize() | 1
    }

    /// The To tag that the same request always gets (RFC 3261 §8.2.7), as the number its 16 hex
    /// digits write out.
    static func tagValue(mark: Int) -> UInt64 {
        UInt64(UInt(bitPattern: mark))
    }
}
