/// A watcher of a presentity as `presence.winfo` reports it (RFC 3857 §3.3, RFC 3858).
public struct WatcherInfo: Sendable, Hashable {
    public enum Status: String, Sendable { case pending, active, waiting, terminated }

    /// One per subscription (its dialog), so a watcher with two devices appears twice.
    public var id: String
    public var watcher: String
    public var status: Status
    /// What last happened: subscribe, approved, deactivated, probation, rejected, timeout, giveup, noresource.
    public var event: String
    public var durationSubscribed: Int?

    /// An `application/watcherinfo+xml` document (RFC 3858 §4).
    public static func document(resource: String, package: String, version: Int, full: Bool, watchers: [WatcherInfo]) -> String {
        var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        text += "<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"\(version)\" state=\"\(full ? "full" : "partial")\">\n"
        text += "<watcher-list resource=\"" + PIDFDocument.escaped(resource) + "\" package=\"" + PIDFDocument.escaped(package) + "\">\n"
        for watcher in watchers {
            text += "<watcher id=\"" + PIDFDocument.escaped(watcher.id) + "\" event=\"" + watcher.event + "\" status=\""
                + watcher.status.rawValue + "\""
            if let duration = watcher.durationSubscribed { text += " duration-subscribed=\"\(duration)\"" }
            text += ">" + PIDFDocument.escaped(watcher.watcher) + "</watcher>\n"
        }
        return text + "</watcher-list>\n</watcherinfo>\n"
    }
}
