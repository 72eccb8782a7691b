import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
public import Logging
import Metrics

/// Owns one SQLite database on one dedicated thread, so that no blocking call ever runs on an
/// event loop (DESIGN: concurrency).
///
/// Writes are write-behind: ``enqueue(key:_:)`` returns at once; operations with the same key
/// coalesce (the newest wins), and a drain on the database thread applies everything pending in one
/// transaction. The queue is bounded; what does not fit is counted and logged, never silent.
public final class SQLiteWriter: Sendable {
    public typealias Operation = @Sendable (SQLiteDatabase) throws(SQLiteDatabase.Error) -> Void

    private struct Pending {
        var order: [String] = []
        var operations: [String: Operation] = [:]
        var drainScheduled = false
    }

    private let pool: NIOThreadPool
    private let loop: any EventLoop
    private let database: NIOLockedValueBox<SQLiteDatabaseBox>
    private let pending = NIOLockedValueBox(Pending())
    private let maxPending: Int
    private let batchDelay: TimeAmount
    private let logger: Logger
    private let dropped = Counter(label: "tern.storage.sqlite_dropped")
    private let failed = Counter(label: "tern.storage.sqlite_failed")

    /// Opens `path` on the database thread and runs `schema` there before returning.
    ///
    /// - Parameter batchDelay: how long a write may wait for others to join its transaction (default 20 ms).
    public init(path: String, schema: [String], maxPending: Int = 100_000, batchDelay: TimeAmount = .milliseconds(20),
                logger: Logger, group: any EventLoopGroup) async throws {
        self.pool = NIOThreadPool(numberOfThreads: 1)
        self.pool.start()
        self.loop = group.next()
        self.maxPending = maxPending
        self.batchDelay = batchDelay
        self.logger = logger
        let box = try await pool.runIfActive(eventLoop: loop) { () -> SQLiteDatabaseBox in
            let db = try SQLiteDatabase(path: path)
            for statement in schema { try db.execute(statement) }
            return SQLiteDatabaseBox(db)
        }.get()
        self.database = NIOLockedValueBox(box)
    }

    /// Queues a write. A later write with the same key replaces this one if it has not run yet.
    /// Returns false (and counts the drop) when the queue is full.
    @discardableResult
    public func enqueue(key: String, _ operation: @escaping Operation) -> Bool {
        let (accepted, scheduleDrain) = pending.withLockedValue { state -> (Bool, Bool) in
            if state.operations[key] == nil {
                guard state.order.count < maxPending else { return (false, false) }
                state.order.append(key)
            }
            state.operations[key] = operation
            let schedule = !state.drainScheduled
            state.drainScheduled = true
            return (true, schedule)
        }
        guard accepted else {
            dropped.increment()
            logger.error("storage queue full: write dropped", metadata: ["key": "\(key)", "limit": "\(maxPending)"])
            return false
        }
        if scheduleDrain {
            // Wait a moment so that writes arriving together share one transaction (one WAL commit).
            loop.scheduleTask(in: batchDelay) { [self] in
                pool.submit { [self] state in
                    guard case .active = state else { return }
                    drain()
                }
            }
        }
        return true
    }

    /// Runs a read (or any work) on the database thread, after the writes queued before it.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (SQLiteDatabase) throws -> T) async throws -> T {
        try await pool.runIfActive(eventLoop: loop) { [self] in
            drain()
            return try database.withLockedValue { try body($0.database) }
        }.get()
    }

    /// The same as ``perform(_:)``, completing on `loop`, for callers on an event loop.
    public func perform<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable (SQLiteDatabase) throws -> T) -> EventLoopFuture<T> {
        pool.runIfActive(eventLoop: loop) { [self] in
            drain()
            return try database.withLockedValue { try body($0.database) }
        }
    }

    /// Waits until every queued write is in the database.
    public func flush() async throws {
        try await perform { _ in () }
    }

    /// Writes what is pending and stops the database thread.
    public func shutdown() async {
        try? await flush()
        try? await pool.shutdownGracefully()
    }

    /// Number of writes waiting.
    public var pendingCount: Int { pending.withLockedValue { $0.order.count } }

    private func drain() {
        let batch = pending.withLockedValue { state -> [(String, Operation)] in
            defer {
                state.order.removeAll(keepingCapacity: true)
                state.operations.removeAll(keepingCapacity: true)
                state.drainScheduled = false
            }
            return state.order.compactMap { key in state.operations[key].map { (key, $0) } }
        }
        guard !batch.isEmpty else { return }
        database.withLockedValue { box in
            do {
                try box.database.transaction { () throws(SQLiteDatabase.Error) in
                    for (_, operation) in batch { try operation(box.database) }
                }
            } catch {
                failed.increment(by: batch.count)
                logger.error("storage write failed", metadata: ["error": "\(error)", "writes": "\(batch.count)"])
            }
        }
    }
}

/// Lets the database cross into the lock; only the database thread ever touches it.
final class SQLiteDatabaseBox: @unchecked Sendable {
    let database: SQLiteDatabase
    init(_ database: SQLiteDatabase) { self.database = database }
}
