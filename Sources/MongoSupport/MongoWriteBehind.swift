public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore

/// Writes that follow memory: callers queue a replacement or a deletion per document and return at
/// once; writes to the same document coalesce (the newest wins) and everything queued within
/// `batchDelay` goes as one unordered bulk write per collection. The queue is bounded; what does
/// not fit is counted and logged, never silent.
public final class MongoWriteBehind: Sendable {
    public enum Write: Sendable {
        /// Upsert of the whole document (its `_id` is the key).
        case replace(BSONDocument)
        /// Deletion of what matches (the key's `_id` plus any condition, e.g. still owned by this node).
        case delete(BSONDocument)
    }

    private struct Pending {
        var order: [String] = []
        var writes: [String: (collection: String, id: String, write: Write)] = [:]
        var drainScheduled = false
        var waiters: [EventLoopPromise<Void>] = []
    }

    private let database: MongoDatabase
    private let loop: any EventLoop
    private let logger: Logger
    private let maxPending: Int
    private let batchDelay: TimeAmount
    private let pending = NIOLockedValueBox(Pending())
    private let dropped = Counter(label: "tern.storage.mongodb_dropped")
    private let failed = Counter(label: "tern.storage.mongodb_failed")

    public init(database: MongoDatabase, loop: any EventLoop, logger: Logger, maxPending: Int = 100_000,
                batchDelay: TimeAmount = .milliseconds(20)) {
        self.database = database
        self.loop = loop
        self.logger = logger
        self.maxPending = maxPending
        self.batchDelay = batchDelay
    }

    /// Queues a write of document `id` in `collection`.
    public func enqueue(_ collection: String, id: String, _ write: Write) {
        let key = collection + "\u{0}" + id
        let (accepted, schedule) = pending.withLockedValue { state -> (Bool, Bool) in
            if state.writes[key] == nil {
                guard state.order.count < maxPending else { return (false, false) }
                state.order.append(key)
            }
            state.writes[key] = (collection, id, write)
            defer { state.drainScheduled = true }
            return (true, !state.drainScheduled)
        }
        guard accepted else {
            dropped.increment()
            logger.error("MongoDB write-behind queue full: write dropped",
                         metadata: ["collection": "\(collection)", "id": "\(id)", "limit": "\(maxPending)"])
            return
        }
        if schedule {
            loop.scheduleTask(in: batchDelay) { [self] in drain() }
        }
    }

    /// Completes once everything queued before it has been written (or has failed and been logged).
    public func flush() async throws {
        let promise = loop.makePromise(of: Void.self)
        pending.withLockedValue { $0.waiters.append(promise) }
        drain()
        try await promise.futureResult.get()
    }

    private func drain() {
        let (batch, waiters) = pending.withLockedValue { state -> ([(collection: String, id: String, write: Write)], [EventLoopPromise<Void>]) in
            defer {
                state.order.removeAll(keepingCapacity: true)
                state.writes.removeAll(keepingCapacity: true)
                state.waiters = []
                state.drainScheduled = false
            }
            return (state.order.compactMap { state.writes[$0] }, state.waiters)
        }
        guard !batch.isEmpty else {
            waiters.forEach { $0.succeed() }
            return
        }
        var byCollection: [String: [MongoWrite]] = [:]
        var collections: [String] = []
        for item in batch {
            if byCollection[item.collection] == nil { collections.append(item.collection) }
            switch item.write {
            case .replace(let document):
                byCollection[item.collection, default: []].append(
                    .replaceOne(filter: ["_id": .string(item.id)], replacement: document, upsert: true))
            case .delete(let filter):
                byCollection[item.collection, default: []].append(.deleteOne(filter: filter))
            }
        }
        database.perform(on: loop) { [collections, byCollection] session in
            var failures: [String] = []
            for collection in collections {
                do {
                    try session.bulkWrite(collection, byCollection[collection] ?? [])
                } catch {
                    failures.append("\(collection): \(error)")
                }
            }
            return failures
        }.whenComplete { [self] result in
            let problems: [String]
            switch result {
            case .success(let failures): problems = failures
            case .failure(let error): problems = ["\(error)"]
            }
            if !problems.isEmpty {
                // Memory stays right; the store misses these until the same documents change again.
                failed.increment(by: batch.count)
                logger.error("MongoDB write-behind failed", metadata: ["errors": "\(problems)", "writes": "\(batch.count)"])
            }
            waiters.forEach { $0.succeed() }
        }
    }
}
