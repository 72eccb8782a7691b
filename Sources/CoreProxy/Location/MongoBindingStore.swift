public import Logging
import Metrics
public import MongoSupport
import NIOConcurrencyHelpers
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

    private enum Write {
        case save(BSONDocument)
        case delete
    }

    private struct Pending {
        var order: [String] = []
        var writes: [String: Write] = [:]
        var drainScheduled = false
    }

    private let database: MongoDatabase
    public let node: String
    private let loop: any EventLoop
    private let logger: Logger
    private let maxPending: Int
    private let batchDelay: TimeAmount
    private let pending = NIOLockedValueBox(Pending())
    private let drainDone = NIOLockedValueBox<[EventLoopPromise<Void>]>([])
    private let dropped = Counter(label: "tern.storage.mongodb_dropped")
    private let failed = Counter(label: "tern.storage.mongodb_failed")

    /// - Parameter node: this node's name in the shared table (give every node its own).
    public init(database: MongoDatabase, node: String, loop: any EventLoop, logger: Logger,
                maxPending: Int = 100_000, batchDelay: TimeAmount = .milliseconds(20)) {
        self.database = database
        self.node = node
        self.loop = loop
        self.logger = logger
        self.maxPending = maxPending
        self.batchDelay = batchDelay
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
        enqueue(Self.id(binding.aor, binding.key), .save(document(binding)))
    }

    public func delete(aor: String, key: String) {
        enqueue(Self.id(aor, key), .delete)
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
        let promise = loop.makePromise(of: Void.self)
        drainDone.withLockedValue { $0.append(promise) }
        startDrain()
        try await promise.futureResult.get()
    }

    public func close() async {
        try? await flush()
    }

    // MARK: - Write-behind

    private static func id(_ aor: String, _ key: String) -> String { aor + "\n" + key }

    private func enqueue(_ id: String, _ write: Write) {
        let (accepted, schedule) = pending.withLockedValue { state -> (Bool, Bool) in
            if state.writes[id] == nil {
                guard state.order.count < maxPending else { return (false, false) }
                state.order.append(id)
            }
            state.writes[id] = write
            defer { state.drainScheduled = true }
            return (true, !state.drainScheduled)
        }
        guard accepted else {
            dropped.increment()
            logger.error("MongoDB location queue full: write dropped", metadata: ["binding": "\(id)", "limit": "\(maxPending)"])
            return
        }
        if schedule {
            // Writes arriving together share one bulk round trip.
            loop.scheduleTask(in: batchDelay) { [self] in startDrain() }
        }
    }

    /// Sends everything pending as one bulk write; completes the flush promises waiting for it.
    private func startDrain() {
        let (batch, waiters) = pending.withLockedValue { state -> ([(String, Write)], [EventLoopPromise<Void>]) in
            defer {
                state.order.removeAll(keepingCapacity: true)
                state.writes.removeAll(keepingCapacity: true)
                state.drainScheduled = false
            }
            let waiters = drainDone.withLockedValue { promises in defer { promises = [] }; return promises }
            return (state.order.compactMap { id in state.writes[id].map { (id, $0) } }, waiters)
        }
        guard !batch.isEmpty else {
            waiters.forEach { $0.succeed() }
            return
        }
        let writes: [MongoWrite] = batch.map { id, write in
            switch write {
            case .save(let document):
                return .replaceOne(filter: ["_id": .string(id)], replacement: document, upsert: true)
            case .delete:
                return .deleteOne(filter: ["_id": .string(id), "node": .string(node)])
            }
        }
        database.perform(on: loop) { session in
            try session.bulkWrite(Self.collection, writes)
        }.whenComplete { [self] result in
            if case .failure(let error) = result {
                // The memory table stays right; the shared table misses these until the bindings change again.
                failed.increment(by: writes.count)
                logger.error("MongoDB location write failed", metadata: ["error": "\(error)", "writes": "\(writes.count)"])
            }
            waiters.forEach { $0.succeed() }
        }
    }

    // MARK: - Documents

    private func document(_ binding: Binding) -> BSONDocument {
        var document: BSONDocument = [
            "_id": .string(Self.id(binding.aor, binding.key)),
            "aor": .string(binding.aor),
            "node": .string(node),
            "expires_at": .date(binding.expiresAt),
            "contact": .string(binding.contact.description),
            "contact_parameters": .string(binding.contactParameters.description),
            "call_id": .string(binding.callID),
            "cseq": .int64(Int64(binding.cseq)),
            "transport": .string(binding.transport.rawValue),
            "path": .array(binding.path.map { .string($0) }),
            "temporary_gruus": .array(binding.temporaryGRUUs.map { .string($0) }),
            "behind_nat": .bool(binding.isBehindNAT),
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
        binding.registeredAt = document["registered_at"]?.int64 ?? 0
        return binding
    }
}
