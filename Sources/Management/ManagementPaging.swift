import EventBus

/// `offset`/`limit` over a list that may be long (location and presence dumps).
enum ManagementPaging {
    static let parameters = ["offset", "limit"]

    static func page<Item>(_ items: [Item], _ params: ManagementParameters, key: String,
                           encode: (Item) -> JSONValue) throws(ManagementError) -> JSONValue {
        let offset = try params.int("offset", default: 0, in: 0...Int(Int32.max))
        let limit = try params.int("limit", default: 100, in: 1...10_000)
        let slice = offset < items.count ? items[offset..<min(items.count, offset + limit)] : []
        return .object([
            ("total", .int(Int64(items.count))), ("offset", .int(Int64(offset))), ("limit", .int(Int64(limit))),
            (key, .array(slice.map(encode))),
        ])
    }
}
