#ifndef TERN_CMALLOC_SHIM_H
#define TERN_CMALLOC_SHIM_H
#include <stddef.h>
#include <stdint.h>

// jemalloc's control interface, declared here rather than through <jemalloc/jemalloc.h>, whose
// own malloc/free declarations would meet Glibc's in every module that imports this one.
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/// jemalloc's version string, or NULL when mallctl fails.
static inline const char *tern_allocator_version(void) {
    const char *version = NULL;
    size_t length = sizeof(version);
    if (mallctl("version", &version, &length, NULL, 0) != 0) return NULL;
    return version;
}

/// Bytes the program holds from the allocator now (in use, not what it keeps free for later):
/// the live-memory figure, where RSS also counts freed memory not yet returned to the system.
static inline unsigned long long tern_heap_in_use(void) {
    // jemalloc's statistics are a snapshot taken when the epoch advances.
    uint64_t epoch = 1;
    size_t epochLength = sizeof(epoch);
    mallctl("epoch", &epoch, &epochLength, &epoch, epochLength);
    size_t allocated = 0;
    size_t length = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &length, NULL, 0) != 0) return 0;
    return (unsigned long long)allocated;
}
#endif
