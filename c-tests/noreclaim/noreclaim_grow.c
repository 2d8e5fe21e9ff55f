/* noreclaim_grow: the pool grows under a NORECLAIM working set many times
 * its first size, up to MEMSCOPE_NORECLAIM_MAX and no further, with no
 * syscall on the scoped thread.
 *
 * usage: noreclaim_grow HOLD_MIB MAX_MIB
 * run with MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=0
 *          MEMSCOPE_NORECLAIM_MAX=<MAX_MIB>M MEMSCOPE_STATS=off
 *
 * The thread installs a filter that kills the process on every syscall but
 * write, clock_gettime (a vDSO call, allowed in case of fallback) and
 * exit_group, enters NORECLAIM, and allocates 64 KiB blocks until it holds
 * HOLD_MIB: a NULL means the pool is empty for now, so it spins (no
 * syscall) until the maintenance thread has committed, pre-faulted and
 * warmed more, 10 s at most. Then it keeps allocating until the pool stays
 * empty for half a second: what it got must not exceed MAX_MIB. Every
 * block is checked before it is freed. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "seccomp.h"

#define BLOCK ((size_t)64 << 10)
#define MAX_BLOCKS 65536

static int allow_write_and_clock(void)
{
    static const long allowed[] = {SYS_write, SYS_clock_gettime, SYS_exit_group};
    return allow_only_syscalls(allowed, 3);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void *blocks[MAX_BLOCKS];

/* A block of BLOCK bytes, waiting (spinning) up to `wait_ms` for a refill. */
static void *alloc_waiting(long long wait_ms, long long *waited)
{
    long long t0 = now_ms();
    for (;;) {
        void *p = malloc(BLOCK);
        if (p || now_ms() - t0 >= wait_ms) {
            *waited = now_ms() - t0;
            return p;
        }
        for (volatile int spin = 0; spin < 20000; spin++)
            ;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    size_t hold = (size_t)atoi(argv[1]) << 20, max = (size_t)atoi(argv[2]) << 20;
    CHECK(memscope_loaded());
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM)); /* set up, unfiltered */
    CHECK(allow_write_and_clock() == 0);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    int n = 0;
    long long longest = 0, waited;
    while ((size_t)n * BLOCK < hold) {
        void *p = alloc_waiting(10000, &waited);
        if (waited > longest)
            longest = waited;
        if (!p)
            break;
        memset(p, n & 0xff, BLOCK);
        blocks[n++] = p;
    }
    CHECK_MSG((size_t)n * BLOCK >= hold, "held %zu MiB of %zu: the pool stopped growing", (size_t)n * BLOCK >> 20,
              hold >> 20);
    size_t held = (size_t)n * BLOCK;
    while (n < MAX_BLOCKS) {
        void *p = alloc_waiting(500, &waited);
        if (!p)
            break;
        memset(p, n & 0xff, BLOCK);
        blocks[n++] = p;
    }
    size_t most = (size_t)n * BLOCK;
    CHECK_MSG(most <= max, "the pool grew to %zu MiB, past MEMSCOPE_NORECLAIM_MAX (%zu MiB)", most >> 20, max >> 20);
    for (int i = 0; i < n; i++) {
        unsigned char *b = blocks[i];
        if (b[0] != (i & 0xff) || b[BLOCK - 1] != (i & 0xff)) {
            CHECK_MSG(0, "block %d damaged", i);
            break;
        }
        free(b);
    }
    memscope_pop(s);
    say("noreclaim_grow: held %zu MiB in NORECLAIM (longest wait for a refill %lld ms), at most %zu MiB with "
        "MEMSCOPE_NORECLAIM_MAX=%zuM\n",
        held >> 20, longest, most >> 20, max >> 20);
    _exit(check_result());
}
