public import Logging
public import NIOCore
import SIP
public import SQLiteSupport

/// Keeps bindings in the embedded SQLite file so that a restart keeps every unexpired one.
/// Writes are behind memory: the registrar answers from memory, the file follows within
/// milliseconds on its own thread.
public final class SQLiteBindingStore: BindingStore {
    private let writer: SQLiteWriter

    /// One column per field: encoding JSON per write cost more than the rest of a REGISTER.
    public static let schema = [
        """
        CREATE TABLE IF NOT EXISTS location (
            aor TEXT NOT NULL,
            binding_key TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            contact TEXT NOT NULL,
            contact_parameters TEXT NOT NULL,
            call_id TEXT NOT NULL,
            cseq INTEGER NOT NULL,
            instance_id TEXT,
            reg_id INTEGER,
            transport TEXT NOT NULL,
            udp_listener INTEGER,
            source_ip TEXT,
            source_port INTEGER,
            path TEXT NOT NULL,
            user_agent TEXT,
            temporary_gruus TEXT NOT NULL,
            behind_nat INTEGER NOT NULL,
            accepts_gzip INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (aor, binding_key)
        )
        """,
        "CREATE INDEX IF NOT EXISTS location_expiry ON location (expires_at)",
    ]

    public init(writer: SQLiteWriter) {
        self.writer = writer
    }

    /// Opens (or creates) the file at `path`.
    public static func open(path: String, logger: Logger, group: any EventLoopGroup) async throws -> SQLiteBindingStore {
        let writer = try await SQLiteWriter(path: path, schema: schema, logger: logger, group: group)
        try await writer.perform { db in try addMissingColumns(db) }
        return SQLiteBindingStore(writer: writer)
    }

    /// Columns added after the first release of the table, for files written by an older tern.
    private static func addMissingColumns(_ db: SQLiteDatabase) throws {
        let existing = Set(try db.query("PRAGMA table_info(location)").compactMap { $0.count > 1 ? $0[1].text : nil })
        if !existing.contains("accepts_gzip") {
            try db.execute("ALTER TABLE location ADD COLUMN accepts_gzip INTEGER NOT NULL DEFAULT 0")
        }
    }

    public func save(_ binding: Binding) {
        let row = BindingRow(binding)
        writer.enqueue(key: binding.aor + "\n" + binding.key) { db throws(SQLiteDatabase.Error) in
            try db.query(BindingRow.insert, row.values)
        }
    }

    public func delete(aor: String, key: String) {
        writer.enqueue(key: aor + "\n" + key) { db throws(SQLiteDatabase.Error) in
            try db.query("DELETE FROM location WHERE aor = ? AND binding_key = ?", [.text(aor), .text(key)])
        }
    }

    public func loadAll(validAt now: Int64) async throws -> [Binding] {
        let rows = try await writer.perform { db in
            try db.query("DELETE FROM location WHERE expires_at <= ?", [.integer(now)])
            return try db.query("SELECT " + BindingRow.columns + " FROM location")
        }
        return rows.compactMap(BindingRow.binding(from:))
    }

    public func flush() async throws {
        try await writer.flush()
    }

    public func close() async {
        await writer.shutdown()
    }
}

/// The stored form of a ``Binding``: plain columns, so the file outlives type changes.
struct BindingRow {
    static let columns = "aor, binding_key, expires_at, contact, contact_parameters, call_id, cseq, instance_id, reg_id, "
        + "transport, udp_listener, source_ip, source_port, path, user_agent, temporary_gruus, behind_nat, accepts_gzip"
    static let insert = "INSERT OR REPLACE INTO location (" + columns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

    let values: [SQLiteDatabase.Value]

    init(_ binding: Binding) {
        var udpListener = SQLiteDatabase.Value.null
        if case .datagram(let listener, _) = binding.flow { udpListener = .integer(Int64(listener.rawValue)) }
        values = [
            .text(binding.aor), .text(binding.key), .integer(binding.expiresAt), .text(binding.contactText),
            .text(binding.contactParameters.description), .text(binding.callID), .integer(Int64(binding.cseq)),
            binding.instanceID.map { .text($0) } ?? .null, binding.regID.map { .integer(Int64($0)) } ?? .null,
            .text(binding.transport.rawValue), udpListener,
            binding.source?.ipAddress.map { .text($0) } ?? .null, binding.source?.port.map { .integer(Int64($0)) } ?? .null,
            .text(binding.path.joined(separator: "\n")), binding.userAgent.map { .text($0) } ?? .null,
            .text(binding.temporaryGRUUs.joined(separator: "\n")), .integer(binding.isBehindNAT ? 1 : 0),
            .integer(binding.acceptsGzip ? 1 : 0),
        ]
    }

    static func binding(from row: [SQLiteDatabase.Value]) -> Binding? {
        guard row.count == 18, let aor = row[0].text, let contactText = row[3].text,
              let contact = try? SIPURI(parsing: contactText), let transport = row[9].text.flatMap(SIPTransportProtocol.init(rawValue:)),
              let expiresAt = row[2].integer, let callID = row[5].text, let cseq = row[6].integer
        else { return nil }
        var parameters = SIPParameters()
        if let text = row[4].text, !text.isEmpty, let parsed = try? SIPAddress(parsing: "<sip:x>" + text) {
            parameters = parsed.parameters
        }
        var source: SocketAddress?
        if let ip = row[11].text, let port = row[12].integer { source = try? SocketAddress(ipAddress: ip, port: Int(port)) }
        var flow: SIPFlow?
        if let listener = row[10].integer, let source { flow = .datagram(listener: ListenerID(Int(listener)), remote: source) }
        var binding = Binding(aor: aor, contact: contact, contactParameters: parameters, expiresAt: expiresAt, callID: callID,
                              cseq: UInt32(clamping: cseq), transport: transport, flow: flow, source: source)
        binding.instanceID = row[7].text
        binding.regID = row[8].integer.map { UInt32(clamping: $0) }
        binding.path = (row[13].text ?? "").split(separator: "\n").map(String.init)
        binding.userAgent = row[14].text
        binding.temporaryGRUUs = (row[15].text ?? "").split(separator: "\n").map(String.init)
        binding.isBehindNAT = row[16].integer == 1
        binding.acceptsGzip = row[17].integer == 1
        return binding
    }
}
