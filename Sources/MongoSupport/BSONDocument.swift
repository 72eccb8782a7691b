import CMongoC

/// A BSON value as Tern stores it. Only the types Tern writes are kept; others read back as `.null`.
public enum BSONValue: Sendable, Hashable {
    case string(String)
    case int32(Int32)
    case int64(Int64)
    case double(Double)
    case bool(Bool)
    /// Milliseconds since the Unix epoch (BSON UTC datetime; what TTL indexes read).
    case date(Int64)
    case null
    case document(BSONDocument)
    case array([BSONValue])
    case binary([UInt8])
    /// The 24 hex digits of an ObjectId.
    case objectID(String)

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var document: BSONDocument? { if case .document(let value) = self { value } else { nil } }
    public var array: [BSONValue]? { if case .array(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    public var binary: [UInt8]? { if case .binary(let value) = self { value } else { nil } }
    /// Any integral or date value widened, so that readers need not know how a number was written.
    public var int64: Int64? {
        switch self {
        case .int32(let value): Int64(value)
        case .int64(let value), .date(let value): value
        case .double(let value) where value.rounded() == value && abs(value) < 9.0e18: Int64(value)
        default: nil
        }
    }
}

/// An ordered BSON document (field order matters to MongoDB for commands and sort keys).
public struct BSONDocument: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    public struct Field: Sendable, Hashable {
        public var key: String
        public var value: BSONValue
    }

    public var fields: [Field]

    public init() { fields = [] }

    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        fields = elements.map { Field(key: $0.0, value: $0.1) }
    }

    public init(_ elements: [(String, BSONValue)]) {
        fields = elements.map { Field(key: $0.0, value: $0.1) }
    }

    /// The first field with this key; setting replaces it in place or appends it.
    public subscript(key: String) -> BSONValue? {
        get { fields.first { $0.key == key }?.value }
        set {
            if let index = fields.firstIndex(where: { $0.key == key }) {
                if let newValue { fields[index].value = newValue } else { fields.remove(at: index) }
            } else if let newValue {
                fields.append(Field(key: key, value: newValue))
            }
        }
    }

    // MARK: - To and from libbson

    /// Builds the C document (a `bson_t *`) for the length of `body`.
    func withBSON<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        let bson = Self.makeBSON(fields)
        defer { bson_destroy(bson) }
        return try body(bson)
    }

    /// Reads a C document (a `bson_t *`); values of types Tern does not use read as `.null`.
    init(bson: OpaquePointer) {
        self.init()
        guard let iterator = tern_bson_iter_new() else { return }
        defer { tern_bson_iter_free(iterator) }
        guard bson_iter_init(iterator, bson) else { return }
        fields = Self.read(iterator)
    }

    private static func makeBSON(_ fields: [Field]) -> OpaquePointer {
        guard let bson = bson_new() else { preconditionFailure("libbson could not allocate a document") }
        for field in fields { append(field.value, key: field.key, to: bson) }
        return bson
    }

    private static func append(_ value: BSONValue, key: String, to bson: OpaquePointer) {
        let keyLength = Int32(key.utf8.count)
        switch value {
        case .string(let text):
            // withCString keeps interior NULs out of the length question: BSON strings carry their length.
            let length = Int32(text.utf8.count)
            text.withCString { chars in _ = bson_append_utf8(bson, key, keyLength, chars, length) }
        case .int32(let number): bson_append_int32(bson, key, keyLength, number)
        case .int64(let number): bson_append_int64(bson, key, keyLength, number)
        case .double(let number): bson_append_double(bson, key, keyLength, number)
        case .bool(let flag): bson_append_bool(bson, key, keyLength, flag)
        case .date(let milliseconds): bson_append_date_time(bson, key, keyLength, milliseconds)
        case .null: bson_append_null(bson, key, keyLength)
        case .document(let document):
            let child = makeBSON(document.fields)
            defer { bson_destroy(child) }
            bson_append_document(bson, key, keyLength, child)
        case .array(let values):
            let child = makeBSON(values.enumerated().map { Field(key: String($0.offset), value: $0.element) })
            defer { bson_destroy(child) }
            bson_append_array(bson, key, keyLength, child)
        case .binary(let bytes):
            bytes.withUnsafeBufferPointer { buffer in
                _ = bson_append_binary(bson, key, keyLength, BSON_SUBTYPE_BINARY, buffer.baseAddress, UInt32(buffer.count))
            }
        case .objectID(let hex):
            var oid = bson_oid_t()
            if bson_oid_is_valid(hex, hex.utf8.count) {
                bson_oid_init_from_string(&oid, hex)
                bson_append_oid(bson, key, keyLength, &oid)
            } else {
                bson_append_null(bson, key, keyLength)
            }
        }
    }

    private static func read(_ iterator: OpaquePointer) -> [Field] {
        var fields: [Field] = []
        while bson_iter_next(iterator) {
            let key = String(cString: bson_iter_key(iterator))
            fields.append(Field(key: key, value: value(iterator)))
        }
        return fields
    }

    private static func value(_ iterator: OpaquePointer) -> BSONValue {
        switch tern_bson_iter_type(iterator) {
        case 0x02:
            var length: UInt32 = 0
            guard let chars = bson_iter_utf8(iterator, &length) else { return .null }
            let bytes = UnsafeRawBufferPointer(start: chars, count: Int(length))
            return .string(String(decoding: bytes, as: UTF8.self))
        case 0x10: return .int32(bson_iter_int32(iterator))
        case 0x12: return .int64(bson_iter_int64(iterator))
        case 0x01: return .double(bson_iter_double(iterator))
        case 0x08: return .bool(bson_iter_bool(iterator))
        case 0x09: return .date(bson_iter_date_time(iterator))
        case 0x03, 0x04:
            guard let child = tern_bson_iter_new() else { return .null }
            defer { tern_bson_iter_free(child) }
            guard bson_iter_recurse(iterator, child) else { return .null }
            let fields = read(child)
            return tern_bson_iter_type(iterator) == 0x03
                ? .document(BSONDocument(fields: fields)) : .array(fields.map(\.value))
        case 0x05:
            var subtype = bson_subtype_t(0)
            var length: UInt32 = 0
            var data: UnsafePointer<UInt8>?
            bson_iter_binary(iterator, &subtype, &length, &data)
            guard let data else { return .binary([]) }
            return .binary(Array(UnsafeBufferPointer(start: data, count: Int(length))))
        case 0x07:
            guard let oid = bson_iter_oid(iterator) else { return .null }
            var text = [CChar](repeating: 0, count: 25)
            bson_oid_to_string(oid, &text)
            return .objectID(String(decoding: text.prefix(24).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default:
            return .null
        }
    }

    private init(fields: [Field]) { self.fields = fields }
}
