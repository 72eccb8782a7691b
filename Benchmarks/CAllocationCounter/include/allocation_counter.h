#ifndef TERN_ALLOCATION_COUNTER_H
#define TERN_ALLOCATION_COUNTER_H
#include <stdint.h>

/// Number of allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc) so far.
uint64_t tern_allocation_count(void);
/// Bytes requested by those calls so far.
uint64_t tern_allocated_bytes(void);
#endif
