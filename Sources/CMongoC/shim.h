#ifndef TERN_CMONGOC_SHIM_H
#define TERN_CMONGOC_SHIM_H
#include <stdlib.h>
#include <mongoc/mongoc.h>

/// bson_t and bson_iter_t are declared 128-byte aligned, which Swift cannot place on its stack: it
/// sees pointers to them as OpaquePointer. Iterators therefore live on the heap through these.
static inline bson_iter_t *tern_bson_iter_new(void) {
    void *memory = NULL;
    if (posix_memalign(&memory, 128, sizeof(bson_iter_t)) != 0) return NULL;
    return (bson_iter_t *)memory;
}
static inline void tern_bson_iter_free(bson_iter_t *iterator) { free(iterator); }

/// bson_iter_type returns an enum that Swift imports as a struct; an int is simpler to switch on.
static inline int tern_bson_iter_type(const bson_iter_t *iterator) { return (int)bson_iter_type(iterator); }
#endif
