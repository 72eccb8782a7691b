import CMalloc
import Foundation

/// The allocator this process runs on: jemalloc, linked ahead of libc (see Package.swift), so
/// Swift's runtime and every C library call it rather than glibc's malloc.
public enum ProcessAllocator {
    /// jemalloc's version string, or nil when its control interface does not answer.
    public static var version: String? {
        tern_allocator_version().map { String(cString: $0) }
    }

    /// The file mapped where the process's `malloc` lives (the global symbol scope's, as every
    /// library resolves it), or nil when it cannot be told: where linking order went wrong this
    /// names libc instead of jemalloc.
    public static var mallocLibrary: String? {
        // RTLD_DEFAULT is the null handle in glibc.
        guard let symbol = dlsym(nil, "malloc"), let maps = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(maps) }
        let address = UInt(bitPattern: symbol)
        // Read line by line: procfs hands the file out a page per read, and whole-file readers
        // that trust its size of zero stop after the first page.
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        while getline(&buffer, &capacity, maps) > 0, let buffer {
            // "start-end perms offset dev inode path"
            let line = String(cString: buffer).trimmingCharacters(in: .newlines)
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6 else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
                  start <= address, address < end else { continue }
            return fields[5...].joined(separator: " ")
        }
        return nil
    }

    /// Whether jemalloc serves this process's `malloc`.
    public static var isJemalloc: Bool {
        mallocLibrary?.contains("jemalloc") ?? false
    }

    /// Bytes held from the allocator now: live memory, where RSS also counts freed pages kept for reuse.
    public static var heapInUse: UInt64 {
        UInt64(tern_heap_in_use())
    }
}
