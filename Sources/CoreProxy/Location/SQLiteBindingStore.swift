import Foundation
public import Logging
public import NIOCore
import SIP
public import SQLiteSupport

/// Keeps bindings in the embedded SQLite file so that a restart keeps every unexpired one.
/// Writes are behind memory: the registrar answers from memory, the file follows within
/// milliseconds on its own thread.
public final class SQLiteBindingStore: BindingStore {
    private let writer: SQLiteWriter

    public static let schema = [
        """
        CREATE TABLE IF NOT EXISTS bindings (
            aor TEXT NOT NULL,
            binding_key TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (aor, binding_key)
        )
        """,
        "CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (expires_at)",
    ]

    public init(writer: SQLiteWriter) {
        self.writer = writer
    }

    /// Opens (or creates) the file at `path`.
    public static func open(path: String, logger: Logger, group: any EventLoopGroup) async throws -> SQLiteBindingStore {
        SQLiteBindingStore(writer: try await SQLiteWriter(path: path, schema: schema, logger: logger, group: group))
    }

    public func save(_ binding: Binding) {
        guard let data = try? JSONEncoder().encode(StoredBinding(binding)) else { return }
        let text = String(decoding: data, as: UTF8.self)
        let aor = binding.aor
        let key = binding.key
        let expiresAt = binding.expiresAt
        writer.enqueue(key: aor + "\n" + key) { db throws(SQLiteDatabase.Error) in
            try db.query("INSERT OR REPLACE INTO bindings (aor, binding_key, expires_at, data) VALUES (?, ?, ?, ?)",
                         [.text(aor), .text(key), .integer(expiresAt), .text(text)])
        }
    }

    public func delete(aor: String, key: String) {
        writer.enqueue(key: aor + "\n" + key) { db throws(SQLiteDatabase.Error) in
            try db.query("DELETE FROM bindings WHERE aor = ? AND binding_key = ?", [.text(aor), .text(key)])
        }
    }

    public func loadAll(validAt now: Int64) async throws -> [Binding] {
        let rows = try await writer.perform { db in
            try db.query("DELETE FROM bindings WHERE expires_at <= ?", [.integer(now)])
            return try db.query("SELECT data FROM bindings")
        }
        return rows.compactMap { row in
            guard let text = row.first?.text,
                  let stored = try? JSONDecoder().decode(StoredBinding.self, from: Data(text.utf8))
            else { return nil }
            return stored.binding
        }
    }

    public func flush() async throws {
        try await writer.flush()
    }

    public func close() async {
        await writer.shutdown()
    }
}

/// The stored form of a ``Binding``: plain strings, so the file outlives type changes.
struct StoredBinding: Codable {
    var aor: String
    var contact: String
    var contactParameters: String
    var expiresAt: Int64
    var callID: String
    var cseq: UInt32
    var instanceID: String?
    var regID: UInt32?
    var transport: String
    /// For UDP: the listener id and remote address, enough to rebuild the flow.
    var udpListener: Int?
    var source: String?
    var path: [String]
    var userAgent: String?
    var temporaryGRUUs: [String]
    var behindNAT: Bool?

    init(_ binding: Binding) {
        aor = binding.aor
        contact = binding.contact.description
        contactParameters = binding.contactParameters.description
        expiresAt = binding.expiresAt
        callID = binding.callID
        cseq = binding.cseq
        instanceID = binding.instanceID
        regID = binding.regID
        transport = binding.transport.rawValue
        if case .datagram(let listener, _) = binding.flow { udpListener = listener.rawValue }
        source = binding.source.flatMap { address in address.ipAddress.map { "\($0)|\(address.port ?? 0)" } }
        path = binding.path
        userAgent = binding.userAgent
        temporaryGRUUs = binding.temporaryGRUUs
        behindNAT = binding.isBehindNAT
    }

    var binding: Binding? {
        guard let uri = try? SIPURI(parsing: contact), let transport = SIPTransportProtocol(rawValue: transport) else {
            return nil
        }
        var parameters = SIPParameters()
        if let parsed = try? SIPAddress(parsing: "<sip:x>" + contactParameters) { parameters = parsed.parameters }
        var sourceAddress: SocketAddress?
        if let source {
            let parts = source.split(separator: "|")
            if parts.count == 2, let port = Int(parts[1]) {
                sourceAddress = try? SocketAddress(ipAddress: String(parts[0]), port: port)
            }
        }
        var flow: SIPFlow?
        if let udpListener, let sourceAddress {
            flow = .datagram(listener: ListenerID(udpListener), remote: sourceAddress)
        }
        var binding = Binding(aor: aor, contact: uri, contactParameters: parameters, expiresAt: expiresAt, callID: callID,
                              cseq: cseq, transport: transport, flow: flow, source: sourceAddress)
        binding.instanceID = instanceID
        binding.regID = regID
        binding.path = path
        binding.userAgent = userAgent
        binding.temporaryGRUUs = temporaryGRUUs
        binding.isBehindNAT = behindNAT ?? false
        return binding
    }
}
