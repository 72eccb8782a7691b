import Management
import Testing

/// jemalloc serves the process's malloc (Package.swift links it ahead of libc), and its statistics
/// feed `tern_process_heap_in_use_bytes`.
struct ProcessAllocatorTests {
    @Test func jemallocServesMallocForTheWholeProcess() throws {
        let library = try #require(ProcessAllocator.mallocLibrary, "the mapping that holds malloc is found")
        #expect(library.contains("libjemalloc"), "malloc resolves to \(library)")
        #expect(ProcessAllocator.isJemalloc)
        #expect(ProcessAllocator.version?.hasPrefix("5.") == true)
    }

    @Test func heapInUseCountsALargeBlockWhileItLives() {
        // Large enough that what other tests allocate and free meanwhile cannot hide it;
        // never written, so it costs address space, not memory.
        let size = 256 << 20
        let before = ProcessAllocator.heapInUse
        let block = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        let during = ProcessAllocator.heapInUse
        block.deallocate()
        let after = ProcessAllocator.heapInUse
        #expect(during > before + UInt64(size / 4 * 3), "before \(before), during \(during)")
        #expect(after + UInt64(size / 4 * 3) < during, "during \(during), after \(after)")
    }
}
