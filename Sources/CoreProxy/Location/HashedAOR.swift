/// An address-of-record as a location table's key, hashed once.
///
/// A String key was hashed again for its shard, for the lookup and for every move when the table
/// grew, and a lookup compared the text of each key on its probe path: keys that differ in the
/// last digits (`sip:user00017@…`) made that a memcmp per probe. Here a probe compares the stored
/// hashes first, and a move re-hashes one integer.
struct HashedAOR: Hashable {
    let text: String
    let hashCode: Int

    init(_ text: String) {
        self.text = text
        var hasher = Hasher()
        hasher.combine(text)
        hashCode = hasher.finalize()
    }

    static func == (lhs: HashedAOR, rhs: HashedAOR) -> Bool {
        lhs.hashCode == rhs.hashCode && lhs.text == rhs.text
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(hashCode)
    }
}
