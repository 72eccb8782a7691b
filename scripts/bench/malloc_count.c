// LD_PRELOAD counter of heap allocations for scripts/alloc-count.sh: every malloc, calloc, realloc,
// posix_memalign and aligned_alloc adds one (all threads). SIGUSR2 writes "allocations=N" to stderr,
// so a script reads the count before and after a run of requests and divides the difference.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long allocations;

static void count(void) { __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED); }

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t count_, size_t size) { count(); return __libc_calloc(count_, size); }
void *realloc(void *pointer, size_t size) { count(); return __libc_realloc(pointer, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count();
    *out = __libc_memalign(alignment, size);
    return *out ? 0 : 12; // ENOMEM
}

static void report(int signal) {
    (void)signal;
    char line[48];
    int length = snprintf(line, sizeof line, "allocations=%lu\n", __atomic_load_n(&allocations, __ATOMIC_RELAXED));
    if (length > 0) (void)!write(2, line, (size_t)length);
}

__attribute__((constructor)) static void install(void) { signal(SIGUSR2, report); }
