/* When the NORECLAIM pool is empty an allocation fails at once (NULL,
 * ENOMEM, no syscall: the thread runs under the seccomp filter), and the
 * maintenance thread refills the pool in the background so that later
 * allocations in the scope succeed again. Run with a small pool. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "check.h"
#include "seccomp.h"

#define BLOCK (64u << 10)
#define MAX_BLOCKS 4096

/* Kills the process on any syscall but the few this test makes itself:
 * write (reporting), clock_gettime (timing; normally a vDSO call),
 * nanosleep/clock_nanosleep (waiting for the refill), exit_group; and
 * unlink, which
 * memscope's exit handler makes to remove the stats segment (docs/STATS.md:
 * a sandbox that forbids it runs with MEMSCOPE_STATS=off). */
static int allow_only_test_syscalls(void)
{
    static const long allowed[] = {SYS_unlink,        SYS_write,           SYS_clock_gettime,
                                   SYS_nanosleep,     SYS_clock_nanosleep, SYS_exit_group};
    return allow_only_syscalls(allowed, 6);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *blocks[MAX_BLOCKS];

int main(void)
{
    CHECK(memscope_loaded());
    if (!memscope_loaded())
        return check_result();
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    CHECK(allow_only_test_syscalls() == 0);
    int n = 0;
    long long slowest_fail = 0;
    int fails = 0;
    /* Drain: allocate until the pool says no, three times in a row. */
    while (n < MAX_BLOCKS && fails < 3) {
        long long t0 = now_ns();
        errno = 0;
        void *p = malloc(BLOCK);
        long long dt = now_ns() - t0;
        if (p) {
            memset(p, 1, BLOCK);
            blocks[n++] = p;
            fails = 0;
        } else {
            CHECK(errno == ENOMEM);
            if (dt > slowest_fail)
                slowest_fail = dt;
            fails++;
        }
    }
    CHECK_MSG(n > 0 && n < MAX_BLOCKS, "%d blocks before the pool ran dry", n);
    CHECK_MSG(slowest_fail < 1000000, "a failing allocation took %lld ns", slowest_fail);
    say("pool_exhaustion: %d blocks of %u KiB before the first NULL; slowest NULL %lld ns\n", n, BLOCK >> 10,
        slowest_fail);
    /* The maintenance thread refills; wait up to 2 s for a success. */
    int recovered = 0;
    for (int i = 0; i < 200 && !recovered; i++) {
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
        void *p = malloc(BLOCK);
        if (p) {
            memset(p, 2, BLOCK);
            recovered = 1;
            blocks[n++] = p;
        }
    }
    CHECK_MSG(recovered, "the pool did not refill within 2 s");
    for (int i = 0; i < n; i++)
        free(blocks[i]); /* pool blocks: back through the thread's cache */
    memscope_pop(s);
    return check_result();
}
