import CMongoC
public import Logging
public import NIOCore
import NIOPosix
import NIOConcurrencyHelpers
import Metrics

/// An error from libmongoc: the server's code where there is one (11000 for a duplicate key).
public struct MongoError: Error, CustomStringConvertible, Sendable {
    public var domain: UInt32
    public var code: UInt32
    public var message: String
    public var description: String { "MongoDB error \(domain).\(code): \(message)" }
    public var isDuplicateKey: Bool { code == 11000 }

    init(_ error: bson_error_t) {
        domain = error.domain
        code = error.code
        message = withUnsafeBytes(of: error.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    init(message: String) {
        domain = 0
        code = 0
        self.message = message
    }
}

/// libmongoc needs one global initialisation before any other call. Its own log lines (by default
/// every level, DEBUG included, to stderr) go to Tern's logger instead: warnings and errors only.
private let mongocInitialized: Void = {
    mongoc_init()
    mongoc_log_set_handler({ level, domain, message, _ in
        guard level.rawValue <= MONGOC_LOG_LEVEL_WARNING.rawValue, let message else { return }
        let text = String(cString: message)
        let source = domain.map { String(cString: $0) } ?? "mongoc"
        if level.rawValue <= MONGOC_LOG_LEVEL_CRITICAL.rawValue {
            mongocLogger.error("\(text)", metadata: ["domain": "\(source)"])
        } else {
            mongocLogger.warning("\(text)", metadata: ["domain": "\(source)"])
        }
    }, nil)
}()

private let mongocLogger = Logger(label: "tern.mongoc")

/// One MongoDB database behind a libmongoc client pool. Every libmongoc call blocks, so all of them
/// run on this object's own threads (DESIGN: concurrency); event loops only wait on futures.
public final class MongoDatabase: Sendable {
    private let pool: MongoClientPool
    private let threads: NIOThreadPool
    public let name: String
    private let logger: Logger
    private let maxQueued: Int
    private let queued = NIOLockedValueBox(0)
    private let refused = Counter(label: "tern.mongodb.queue_full")

    /// - Parameters:
    ///   - uri: a `mongodb://` URI; `serverSelectionTimeoutMS` bounds how long a call waits for a
    ///     server that is down (libmongoc's default is 30 s).
    ///   - database: the database name; nil takes the one in the URI, else `tern`.
    ///   - threads: how many calls may be in flight at once.
    ///   - maxQueued: calls waiting for a thread beyond which new ones fail at once: a database that
    ///     is slower than the traffic gets a quick error (a SIP 500 with Retry-After) instead of
    ///     requests that wait until their clients give up.
    public init(uri: String, database: String? = nil, threads: Int = 2, maxQueued: Int = 2000, logger: Logger) throws(MongoError) {
        _ = mongocInitialized
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else { throw MongoError(error) }
        defer { mongoc_uri_destroy(parsed) }
        let fromURI = mongoc_uri_get_database(parsed).map { String(cString: $0) }
        guard let pool = mongoc_client_pool_new(parsed) else { throw MongoError(message: "cannot create a client pool for \(uri)") }
        mongoc_client_pool_set_error_api(pool, 2)
        mongoc_client_pool_set_appname(pool, "tern")
        mongoc_client_pool_max_size(pool, UInt32(max(1, threads)))
        self.pool = MongoClientPool(pool)
        self.name = database ?? fromURI ?? "tern"
        self.threads = NIOThreadPool(numberOfThreads: max(1, threads))
        self.threads.start()
        self.logger = logger
        self.maxQueued = maxQueued
    }

    /// Takes a place in the queue, or reports it full.
    private func admit() -> Bool {
        let admitted = queued.withLockedValue { count -> Bool in
            guard count < maxQueued else { return false }
            count += 1
            return true
        }
        if !admitted { refused.increment() }
        return admitted
    }

    private func leave() {
        queued.withLockedValue { $0 -= 1 }
    }

    private var queueFull: MongoError { MongoError(message: "MongoDB queue full: \(maxQueued) calls waiting") }

    /// Runs `body` with a client on one of the database threads.
    @discardableResult
    public func perform<T: Sendable>(_ body: @escaping @Sendable (MongoSession) throws -> T) async throws -> T {
        guard admit() else { throw queueFull }
        defer { leave() }
        return try await threads.runIfActive { [pool, name] in
            try pool.withClient { client in try body(MongoSession(client: client, database: name)) }
        }
    }

    /// The same as ``perform(_:)``, completing on `loop`, for callers on an event loop.
    @discardableResult
    public func perform<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable (MongoSession) throws -> T) -> EventLoopFuture<T> {
        guard admit() else { return loop.makeFailedFuture(queueFull) }
        let result = threads.runIfActive(eventLoop: loop) { [pool, name] in
            try pool.withClient { client in try body(MongoSession(client: client, database: name)) }
        }
        result.whenComplete { [self] _ in leave() }
        return result
    }

    /// Sends `ping`; throws when no server answers within the selection timeout.
    public func ping() async throws {
        _ = try await perform { session in try session.command(["ping": .int32(1)]) }
    }

    /// Stops the threads once the calls already queued have finished.
    public func shutdown() async {
        try? await threads.shutdownGracefully()
        pool.destroy()
    }
}

/// The client pool handle. libmongoc's pool is thread-safe; clients popped from it are used by
/// one thread at a time.
final class MongoClientPool: @unchecked Sendable {
    private var handle: OpaquePointer?

    init(_ handle: OpaquePointer) { self.handle = handle }

    func withClient<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        guard let handle, let client = mongoc_client_pool_pop(handle) else { throw MongoError(message: "client pool is closed") }
        defer { mongoc_client_pool_push(handle, client) }
        return try body(client)
    }

    func destroy() {
        if let handle { mongoc_client_pool_destroy(handle) }
        handle = nil
    }
}

/// One write of a bulk operation.
public enum MongoWrite: Sendable {
    case insert(BSONDocument)
    case replaceOne(filter: BSONDocument, replacement: BSONDocument, upsert: Bool)
    case updateOne(filter: BSONDocument, update: BSONDocument, upsert: Bool)
    case deleteOne(filter: BSONDocument)
    case deleteMany(filter: BSONDocument)
}

/// The calls of one database on one client; valid only inside ``MongoDatabase/perform(_:)``.
public struct MongoSession {
    let client: OpaquePointer
    let database: String

    private func newBSON() throws -> OpaquePointer {
        guard let bson = bson_new() else { throw MongoError(message: "libbson could not allocate a document") }
        return bson
    }

    private func withCollection<T>(_ name: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        guard let collection = mongoc_client_get_collection(client, database, name) else {
            throw MongoError(message: "no collection \(name)")
        }
        defer { mongoc_collection_destroy(collection) }
        return try body(collection)
    }

    /// Runs a database command and returns its reply.
    @discardableResult
    public func command(_ command: BSONDocument) throws -> BSONDocument {
        guard let db = mongoc_client_get_database(client, database) else { throw MongoError(message: "no database \(database)") }
        defer { mongoc_database_destroy(db) }
        let reply = try newBSON()
        defer { bson_destroy(reply) }
        var error = bson_error_t()
        let ok = command.withBSON { mongoc_database_command_simple(db, $0, nil, reply, &error) }
        guard ok else { throw MongoError(error) }
        return BSONDocument(bson: reply)
    }

    /// Creates indexes (each `{key: {...}, name: ..., ...}`) unless they exist; 1.23's helper is deprecated.
    public func createIndexes(_ collection: String, _ indexes: [BSONDocument]) throws {
        try command(["createIndexes": .string(collection), "indexes": .array(indexes.map { .document($0) })])
    }

    /// Inserts one document. `journaled`: acknowledged only once the server's journal has it (a
    /// promise made to a user, such as a stored message, survives a server crash).
    public func insert(_ collection: String, _ document: BSONDocument, journaled: Bool = false) throws {
        try withCollection(collection) { handle in
            var error = bson_error_t()
            let options: BSONDocument = journaled ? ["writeConcern": .document(["w": .int32(1), "j": .bool(true)])] : [:]
            let ok = document.withBSON { d in options.withBSON { o in mongoc_collection_insert_one(handle, d, o, nil, &error) } }
            guard ok else { throw MongoError(error) }
        }
    }

    /// Applies the writes in one round trip, unordered unless `ordered`; returns the server's reply
    /// counts (`nInserted`, `nUpserted`, `nMatched`, `nModified`, `nRemoved`).
    @discardableResult
    public func bulkWrite(_ collection: String, _ writes: [MongoWrite], ordered: Bool = false) throws -> BSONDocument {
        guard !writes.isEmpty else { return BSONDocument() }
        return try withCollection(collection) { handle in
            let options: BSONDocument = ["ordered": .bool(ordered)]
            guard let bulk = options.withBSON({ mongoc_collection_create_bulk_operation_with_opts(handle, $0) }) else {
                throw MongoError(message: "cannot create a bulk operation")
            }
            defer { mongoc_bulk_operation_destroy(bulk) }
            var error = bson_error_t()
            for write in writes {
                let ok: Bool
                switch write {
                case .insert(let document):
                    ok = document.withBSON { mongoc_bulk_operation_insert_with_opts(bulk, $0, nil, &error) }
                case .replaceOne(let filter, let replacement, let upsert):
                    let options: BSONDocument = ["upsert": .bool(upsert)]
                    ok = filter.withBSON { f in replacement.withBSON { r in options.withBSON { o in
                        mongoc_bulk_operation_replace_one_with_opts(bulk, f, r, o, &error) } } }
                case .updateOne(let filter, let update, let upsert):
                    let options: BSONDocument = ["upsert": .bool(upsert)]
                    ok = filter.withBSON { f in update.withBSON { u in options.withBSON { o in
                        mongoc_bulk_operation_update_one_with_opts(bulk, f, u, o, &error) } } }
                case .deleteOne(let filter):
                    ok = filter.withBSON { mongoc_bulk_operation_remove_one_with_opts(bulk, $0, nil, &error) }
                case .deleteMany(let filter):
                    ok = filter.withBSON { mongoc_bulk_operation_remove_many_with_opts(bulk, $0, nil, &error) }
                }
                guard ok else { throw MongoError(error) }
            }
            let reply = try newBSON()
            defer { bson_destroy(reply) }
            guard mongoc_bulk_operation_execute(bulk, reply, &error) != 0 else { throw MongoError(error) }
            return BSONDocument(bson: reply)
        }
    }

    /// Documents matching `filter`, in `sort` order, at most `limit` (0: all).
    public func find(_ collection: String, filter: BSONDocument = [:], sort: BSONDocument? = nil,
                     limit: Int = 0, projection: BSONDocument? = nil) throws -> [BSONDocument] {
        try withCollection(collection) { handle in
            var options = BSONDocument()
            if let sort { options["sort"] = .document(sort) }
            if limit > 0 { options["limit"] = .int64(Int64(limit)) }
            if let projection { options["projection"] = .document(projection) }
            guard let cursor = filter.withBSON({ f in options.withBSON { o in
                mongoc_collection_find_with_opts(handle, f, o, nil) } }) else {
                throw MongoError(message: "cannot open a cursor on \(collection)")
            }
            defer { mongoc_cursor_destroy(cursor) }
            var documents: [BSONDocument] = []
            var current: OpaquePointer?
            while mongoc_cursor_next(cursor, &current) {
                if let current { documents.append(BSONDocument(bson: current)) }
            }
            var error = bson_error_t()
            if mongoc_cursor_error(cursor, &error) { throw MongoError(error) }
            return documents
        }
    }

    /// Counts documents matching `filter`.
    public func count(_ collection: String, filter: BSONDocument = [:]) throws -> Int64 {
        try withCollection(collection) { handle in
            var error = bson_error_t()
            let count = filter.withBSON { mongoc_collection_count_documents(handle, $0, nil, nil, nil, &error) }
            guard count >= 0 else { throw MongoError(error) }
            return count
        }
    }

    /// Deletes what matches `filter`; returns how many were deleted.
    @discardableResult
    public func delete(_ collection: String, filter: BSONDocument, many: Bool = true) throws -> Int64 {
        let reply = try bulkWrite(collection, [many ? .deleteMany(filter: filter) : .deleteOne(filter: filter)])
        return reply["nRemoved"]?.int64 ?? 0
    }
}
