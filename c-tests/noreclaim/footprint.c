/* footprint: the NORECLAIM pool follows use (issue "Scopes for code you
 * cannot change": 52 MiB of pool and reserve in every process was too
 * much once every preloaded process may have a pool).
 *
 *   1. A thread enters NORECLAIM and keeps at most 1 MiB live for a
 *      second: 1,024 blocks of 1 KiB replaced 20 times, then blocks of
 *      16 B to 1 MiB (24 sizes, small, large and between: each class keeps
 *      blocks of its own) replaced 20,000 times, never more than 1 MiB
 *      at once (with 1 KiB blocks alone the pool idled at 5 MiB while
 *      mixed sizes left it at 11-16 MiB, the carved blocks of every large
 *      class kept resident).
 *   2. Then it idles: within 15 s the pool's uncarved headroom is given
 *      back down to 2 MiB and the depot's stock it no longer needs is
 *      dropped (D62, D65): its resident memory (gauge pool_noreclaim_bytes:
 *      committed, less the NOFAIL reserve's share, the arenas' metadata and
 *      the pool arena's decommitted extents) is at most 8 MiB, the pool
 *      said so (pool_shrinks), and the process's RSS fell by 24 MiB (16 MiB
 *      of headroom and 8 MiB of dropped stock, which RSS sees too).
 *   3. The NOFAIL reserve stays whole, and serves: an 8 MiB burst inside
 *      NORECLAIM|NOFAIL is served whole. Memory the pool dropped is
 *      faulted in again before a scoped thread gets it: a NORECLAIM phase
 *      of 1-64 KiB blocks, each written whole, takes no page fault.
 *   4. Headroom grows with demand: 32 MiB asked for inside NORECLAIM at a
 *      steady 64 KiB per 0.2 ms are all served (a refused request is asked
 *      again after 1 ms, counted), and the pool committed for them.
 * Needs the maintenance thread's once-a-second round (gauges, shrinking). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

/* Gauge slots (abi/src/names.rs GAUGES order). */
#define G_COMMITTED 1
#define G_POOL_READY 3
#define G_RESERVE_READY 4
#define G_THREAD_HELD 10
#define G_NORECLAIM 15
#define E_POOL_SHRINKS 34

static const struct memscope_stats_header *h;

static uint64_t gauge(int i)
{
    return __atomic_load_n(&h->gauges[i], __ATOMIC_RELAXED);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void)
{
    static void *live[1024];
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    h = segment();
    if (!h) {
        say("no stats segment\n");
        return 1;
    }
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1024; i++) {
            free(live[i]);
            live[i] = malloc(1024);
            CHECK(live[i]);
        }
        pause_us(25000);
    }
    static const size_t mixed_sizes[] = {16,     24,     40,     100,    200,    500,    1000,   2048,
                                         3000,   4096,   5000,   8192,   12345,  16384,  30000,  65536,
                                         70000,  100000, 131072, 200000, 262144, 333333, 600000, 1048576};
    static size_t live_size[1024];
    size_t live_bytes = 0;
    for (int i = 0; i < 1024; i++) {
        free(live[i]);
        live[i] = NULL;
    }
    unsigned r = 1;
    for (int op = 0; op < 20000; op++) {
        r = r * 1103515245 + 12345;
        int i = (r >> 8) % 64;
        if (live[i]) {
            free(live[i]);
            live[i] = NULL;
            live_bytes -= live_size[i];
        }
        size_t size = mixed_sizes[(r >> 16) % 24];
        if (live_bytes + size > (1u << 20))
            continue;
        /* Refused while the pool refills: asked again after 1 ms. */
        for (int tries = 0; !(live[i] = malloc(size)) && tries < 1000; tries++)
            pause_us(1000);
        CHECK(live[i]);
        if (live[i]) {
            live_size[i] = size;
            live_bytes += size;
        }
        if (op % 1000 == 0)
            pause_us(25000);
    }
    for (int i = 0; i < 64; i++)
        free(live[i]);
    memscope_pop(s);
    long rss_busy = rss_kib();
    pause_us(1100000); /* a gauge refresh */
    uint64_t reserve_busy = gauge(G_RESERVE_READY);

    /* Four halvings of the headroom (32 to 2 MiB), two quiet seconds
     * each, then the last gauge refresh. */
    pause_us(10000000);
    uint64_t pool = gauge(G_NORECLAIM);
    long rss_idle = rss_kib();
    say("footprint: pool %.1f MiB after idling (committed %.1f MiB, depot %.1f MiB, thread lists %.1f MiB, %lu "
        "shrinks), RSS %ld -> %ld KiB\n",
        pool / 1048576.0, gauge(G_COMMITTED) / 1048576.0, gauge(G_POOL_READY) / 1048576.0,
        gauge(G_THREAD_HELD) / 1048576.0, (unsigned long)h->events[E_POOL_SHRINKS], rss_busy, rss_idle);
    CHECK_MSG(pool > 0 && pool <= (8u << 20), "the pool holds %.1f MiB with 1 MiB live", pool / 1048576.0);
    CHECK_MSG(h->events[E_POOL_SHRINKS] > 0, "no pool_shrinks");
    CHECK_MSG(rss_busy - rss_idle >= 24 * 1024, "RSS fell by %ld KiB only", rss_busy - rss_idle);
    CHECK_MSG(gauge(G_RESERVE_READY) >= reserve_busy, "the reserve held %.1f MiB, now %.1f MiB",
              reserve_busy / 1048576.0, gauge(G_RESERVE_READY) / 1048576.0);

    /* The reserve serves inside NORECLAIM|NOFAIL after the shrink. */
    static void *burst[128];
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
    int served = 0;
    for (int i = 0; i < 128; i++) {
        burst[i] = malloc(opaque(65536));
        if (burst[i]) {
            memset(burst[i], 1, 65536);
            served++;
        }
    }
    memscope_pop(s);
    CHECK_MSG(served == 128, "NORECLAIM|NOFAIL after the shrink: %d of 128 blocks of 64 KiB", served);
    for (int i = 0; i < 128; i++)
        free(burst[i]);

    /* Stock made again from what the pool dropped is faulted in first:
     * rounds of blocks of 1-64 KiB, each written whole inside NORECLAIM
     * (a refused one asked again after 1 ms), take no page fault. */
    static const size_t sizes[] = {1024, 3072, 4096, 12288, 16384, 24576, 40960, 65536};
    static void *mixed[256];
    long refused = 0, faults = minor_faults();
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 256; i++) {
            size_t size = sizes[(i + round) % 8];
            while (!(mixed[i] = malloc(opaque(size)))) {
                refused++;
                pause_us(1000);
                if (refused >= 20000)
                    break;
            }
            if (mixed[i])
                memset(mixed[i], 3, size);
        }
        for (int i = 0; i < 256; i++)
            free(mixed[i]);
        pause_us(20000);
    }
    memscope_pop(s);
    faults = minor_faults() - faults;
    say("footprint: 5,120 blocks of 1-64 KiB after the shrink: %ld refusals asked again, %ld page faults\n",
        refused, faults);
    CHECK_MSG(refused < 20000, "the pool does not serve after the shrink");
    CHECK_MSG(faults == 0, "%ld page faults inside NORECLAIM on memory the pool dropped and stocked again", faults);

    /* Demand makes the headroom grow again. */
    uint64_t before = gauge(G_COMMITTED);
    static void *grown[512];
    long retries = 0;
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 512; i++) {
        while (!(grown[i] = malloc(opaque(65536)))) {
            retries++;
            pause_us(1000);
            CHECK_MSG(retries < 20000, "the pool does not grow");
            if (retries >= 20000)
                return check_result();
        }
        memset(grown[i], 2, 65536);
        pause_us(200);
    }
    memscope_pop(s);
    pause_us(1200000); /* the next gauge refresh */
    uint64_t after = gauge(G_COMMITTED), held = gauge(G_NORECLAIM);
    say("footprint: 32 MiB at 64 KiB per 0.2 ms: %ld retries, committed %.1f -> %.1f MiB, pool %.1f MiB\n", retries,
        before / 1048576.0, after / 1048576.0, held / 1048576.0);
    /* The pool holds the 32 MiB still live (it grew for them from what
     * the phases before left committed, which varies). */
    CHECK_MSG(held >= (32u << 20), "the pool holds %.1f MiB with 32 MiB live", held / 1048576.0);
    for (int i = 0; i < 512; i++)
        free(grown[i]);
    return check_result();
}
