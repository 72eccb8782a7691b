// LD_PRELOAD shim for SIPp: it reads CLOCK_MONOTONIC_COARSE (4 ms ticks here), which makes every
// response time 0 or 4 ms. This answers those reads from CLOCK_MONOTONIC instead.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

int clock_gettime(clockid_t clock, struct timespec *out) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    if (clock == CLOCK_MONOTONIC_COARSE) clock = CLOCK_MONOTONIC;
    if (clock == CLOCK_REALTIME_COARSE) clock = CLOCK_REALTIME;
    return real(clock, out);
}
