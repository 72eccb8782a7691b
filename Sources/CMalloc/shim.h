#ifndef TERN_CMALLOC_SHIM_H
#define TERN_CMALLOC_SHIM_H
// glibc's allocator settings; Swift's Glibc module does not include <malloc.h>.
#include <malloc.h>

static inline void tern_tune_allocator(int top_pad, int trim_threshold, int mmap_threshold) {
    mallopt(M_TOP_PAD, top_pad);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
}
/// Bytes the program holds from the allocator now (in use, not what it keeps free for later):
/// the live-memory figure, where RSS also counts freed memory glibc has not returned.
static inline unsigned long long tern_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return (unsigned long long)info.uordblks + (unsigned long long)info.hblkhd;
}
#endif
