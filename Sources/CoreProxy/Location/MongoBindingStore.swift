public import Logging
public import MongoSupport
public import NIOCore
import SIP

/// Keeps bindings in a MongoDB collection (`location`) that several Tern nodes may share.
///
/// Like the SQLite store it is write-behind: the registrar answers from memory and the collection
/// follows within `batchDelay`, coalesced per binding and sent as one unordered bulk write. Each
/// document names the node that holds the binding's flow; a node restores only its own bindings,
/// and removes only documents it still owns, so a device that moved to another node keeps its
/// newer document. Other nodes' bindings are read on demand (``bindings(for:validAt:on:)``)
/// when a request is for a user this node has no binding of. Lapsed documents are removed by a
/// TTL index on `expires_at`.
public final class MongoBindingStore: SharedBindingStore {
    public static let collection = "location"

    private let database: MongoDatabase
    public let node: String
    private let writer: MongoWriteBehind

    /// - Parameter node: this node's name in the shared table (give every node its own).
    public init(database: MongoDatabase, node: String, loop: any EventLoop, logger: Logger,
                maxPending: Int = 100_000, batchDelay: TimeAmount = .milliseconds(20)) {
        self.database = database
        self.node = node
        self.writer = MongoWriteBehind(database: database, loop: loop, logger: logger, maxPending: maxPending, batchDelay: batchDelay)
    }

    /// Creates the collection's indexes: by AOR for lookups, by node for restore, TTL for expiry.
    public func prepare() async throws {
        try await database.perform { session in
            try session.createIndexes(Self.collection, [
                ["key": .document(["aor": .int32(1)]), "name": .string("aor")],
                ["key": .document(["node": .int32(1)]), "name": .string("node")],
                ["key": .document(["expires_at": .int32(1)]), "name": .string("expires_at_ttl"), "expireAfterSeconds": .int32(0)],
            ])
        }
    }

    public func save(_ binding: Binding) {
        writer.enqueue(Self.collection, id: Self.id(binding.aor, binding.key), .replace(document(binding)))
    }

    public func delete(aor: String, key: String) {
        let id = Self.id(aor, key)
        writer.enqueue(Self.collection, id: id, .delete(["_id": .string(id), "node": .string(node)]))
    }

    public func loadAll(validAt now: Int64) async throws -> [Binding] {
        try await flush()
        let documents = try await database.perform { [node] session in
            try session.find(Self.collection, filter: ["node": .string(node), "expires_at": .document(["$gt": .date(now)])])
        }
        return documents.compactMap { Self.binding(from: $0, ownFlows: true) }
    }

    public func bindings(for aor: String, validAt now: Int64, on loop: any EventLoop) -> EventLoopFuture<[Binding]> {
        database.perform(on: loop) { [node] session in
            try session.find(Self.collection, filter: [
                "aor": .string(aor), "node": .document(["$ne": .string(node)]), "expires_at": .document(["$gt": .date(now)]),
            ]).compactMap { Self.binding(from: $0, ownFlows: false) }
        }
    }

    public func flush() async throws {
        try await writer.flush()
    }

    public func close() async {
        try? await flush()
    }

    private static func id(_ aor: String, _ key: String) -> String { aor + "\n" + key }

    // MARK: - Documents

    private func document(_ binding: Binding) -> BSONDocument {
        var document: BSONDocument = [
            "_id": .string(Self.id(binding.aor, binding.key)),
            "aor": .string(binding.aor),
            "node": .string(node),
            "expires_at": .date(binding.expiresAt),
            "contact": .string(binding.contactText),
            "contact_parameters": .string(binding.contactParameters.description),
            "call_id": .string(binding.callID),
            "cseq": .int64(Int64(binding.cseq)),
            "transport": .string(binding.transport.rawValue),
            "path": .array(binding.path.map { .string($0) }),
            "temporary_gruus": .array(binding.temporaryGRUUs.map { .string($0) }),
            "behind_nat": .bool(binding.isBehindNAT),
            "accepts_gzip": .bool(binding.acceptsGzip),
            "registered_at": .date(binding.registeredAt),
        ]
        if let instance = binding.instanceID { document["instance_id"] = .string(instance) }
        if let regID = binding.regID { document["reg_id"] = .int64(Int64(regID)) }
        if case .datagram(let listener, _) = binding.flow { document["udp_listener"] = .int64(Int64(listener.rawValue)) }
        if let ip = binding.source?.ipAddress, let port = binding.source?.port {
            document["source_ip"] = .string(ip)
            document["source_port"] = .int64(Int64(port))
        }
        if let userAgent = binding.userAgent { document["user_agent"] = .string(userAgent) }
        return document
    }

    /// A binding from its document. `ownFlows`: the document is this node's, so its UDP listener
    /// number means something here; another node's flow does not exist on this one.
    static func binding(from document: BSONDocument, ownFlows: Bool) -> Binding? {
        guard let aor = document["aor"]?.string, let contactText = document["contact"]?.string,
              let contact = try? SIPURI(parsing: contactText), let expiresAt = document["expires_at"]?.int64,
              let transport = document["transport"]?.string.flatMap(SIPTransportProtocol.init(rawValue:)),
              let callID = document["call_id"]?.string, let cseq = document["cseq"]?.int64
        else { return nil }
        var parameters = SIPParameters()
        if let text = document["contact_parameters"]?.string, !text.isEmpty,
           let parsed = try? SIPAddress(parsing: "<sip:x>" + text) {
            parameters = parsed.parameters
        }
        var source: SocketAddress?
        if let ip = document["source_ip"]?.string, let port = document["source_port"]?.int64 {
            source = try? SocketAddress(ipAddress: ip, port: Int(port))
        }
        var flow: SIPFlow?
        if ownFlows, let listener = document["udp_listener"]?.int64, let source {
            flow = .datagram(listener: ListenerID(Int(listener)), remote: source)
        }
        var binding = Binding(aor: aor, contact: contact, contactParameters: parameters, expiresAt: expiresAt, callID: callID,
                              cseq: UInt32(clamping: cseq), transport: transport, flow: flow, source: source)
        binding.instanceID = document["instance_id"]?.string
        binding.regID = document["reg_id"]?.int64.map { UInt32(clamping: $0) }
        binding.path = document["path"]?.array?.compactMap(\.string) ?? []
        binding.temporaryGRUUs = document["temporary_gruus"]?.array?.compactMap(\.string) ?? []
        binding.userAgent = document["user_agent"]?.string
        binding.isBehindNAT = document["behind_nat"]?.bool ?? false
        binding.acceptsGzip = document["accepts_gzip"]?.bool ?? false
        binding.registeredAt = document["registered_at"]?.int64 ?? 0
        return binding
    }
}
