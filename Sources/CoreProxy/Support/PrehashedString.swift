/// A string as a table's key, hashed once.
///
/// A String key is hashed again for its shard, for the lookup, for the insert and for every move
/// when the table grows, and a lookup compares the text of each key on its probe path: keys that
/// share a long prefix (`sip:user00017@…`, nonces that start with their issue time) made that a
/// memcmp per probe. Here a probe compares the stored hashes first, and a move re-hashes one integer.
struct PrehashedString: Hashable {
    let text: String
    let hashCode: Int

    init(_ text: String) {
        self.text = text
        var hasher = Hasher()
        hasher.combine(text)
        hashCode = hasher.finalize()
    }

    static func == (lhs: PrehashedString, rhs: PrehashedString) -> Bool {
        lhs.hashCode == rhs.hashCode && lhs.text == rhs.text
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(hashCode)
    }
}
