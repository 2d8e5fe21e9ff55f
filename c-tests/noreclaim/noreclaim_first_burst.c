/* noreclaim_first_burst: the first time a shape appears, NORECLAIM must
 * serve it from committed, pre-faulted memory, not only from what the
 * maintenance thread happened to stock already. A fresh process enters
 * NORECLAIM once (the set-up a daemon does at thread start), then inside
 * ONE scope keeps live:
 *
 *   small N R    N blocks of 32..2031 bytes (mixed classes; 10,000 are
 *                about 10 MiB, 30,000 about 30 MiB), R rounds half a
 *                second apart, everything freed between rounds
 *   large        a run of large and highly aligned requests: 16 KiB to
 *                1 MiB mallocs, aligned_alloc / posix_memalign / memalign
 *                with alignments from 4 KiB to 1 MiB, about 10 MiB
 *   aligned      every alignment 16 B..64 KiB x a size sweep below 1 MiB,
 *                through aligned_alloc, posix_memalign and memalign, freed
 *                as it goes (the sweep an outside review ran)
 *
 * Every block is written whole and checked before it is freed. No request
 * may be refused while committed memory no thread holds is free: the
 * stats segment's noreclaim_refused_with_free stays 0, and every NULL is
 * a counted exhaustion. With the default pool (32 MiB of committed
 * headroom, of which the first scope stocks 4 MiB as the classes' floors)
 * only the first round of a burst larger than that may see one, once the
 * pool is really exhausted; every other case sees none.
 *   noreclaim_first_burst small N R | large | aligned */
#define _DEFAULT_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

/* noreclaim_refused_with_free's slot in the segment's event array (the
 * order of abi/src/names.rs, append-only). */
#define EVENT_POOL_EXHAUSTED 27
#define EVENT_REFUSED_WITH_FREE 28

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static long nulls, served, bad;

/* Fills the block with a pattern of its address; checked by `intact`. */
static void fill(void *p, size_t size)
{
    unsigned char v = (unsigned char)((uintptr_t)p >> 4);
    memset(p, v, size);
}

static int intact(const void *p, size_t size)
{
    unsigned char v = (unsigned char)((uintptr_t)p >> 4);
    const unsigned char *b = p;
    for (size_t i = 0; i < size; i += 61)
        if (b[i] != v)
            return 0;
    return size == 0 || b[size - 1] == v;
}

struct block {
    void *p;
    size_t size;
};

static void keep(struct block *b, void *p, size_t size, size_t align)
{
    if (!p) {
        nulls++;
        b->p = NULL;
        return;
    }
    served++;
    if (align && ((uintptr_t)p & (align - 1)) != 0) {
        say("block %p of %zu bytes is not %zu-aligned\n", p, size, align);
        bad++;
    }
    fill(p, size);
    b->p = p;
    b->size = size;
}

static void release(struct block *b, long n)
{
    for (long i = 0; i < n; i++) {
        if (b[i].p && !intact(b[i].p, b[i].size))
            bad++;
        free(b[i].p);
    }
}

/* NULLs of rounds after the first. */
static long late_nulls;

static void small(long n, int rounds)
{
    struct block *b = calloc((size_t)n, sizeof *b);
    CHECK(b != NULL);
    if (!b)
        return;
    for (int r = 0; r < rounds; r++) {
        long before = nulls;
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        for (long i = 0; i < n; i++) {
            size_t size = 32 + (size_t)(next() % 2000);
            keep(&b[i], malloc(size), size, 0);
        }
        release(b, n);
        memscope_pop(s);
        say("round %d: %ld NULL\n", r + 1, nulls - before);
        if (r > 0)
            late_nulls += nulls - before;
        usleep(500000);
    }
    free(b);
}

static void *aligned(unsigned how, size_t align, size_t size)
{
    void *p = NULL;
    switch (how % 3) {
    case 0:
        return aligned_alloc(align, (size + align - 1) & ~(align - 1));
    case 1:
        return posix_memalign(&p, align, size) == 0 ? p : NULL;
    default:
        return memalign(align, size);
    }
}

static void large(void)
{
    enum { N = 64 };
    struct block b[N] = {{0}};
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < N; i++) {
        if (i % 2 == 0) {
            size_t size = (size_t)16 << 10 << (next() % 7); /* 16 KiB .. 1 MiB */
            size -= next() % (size / 2);
            keep(&b[i], malloc(size), size, 0);
        } else {
            size_t align = (size_t)4096 << (next() % 9); /* 4 KiB .. 1 MiB */
            size_t size = 1 + next() % align;
            keep(&b[i], aligned((unsigned)i / 2, align, size), size, align);
        }
    }
    release(b, N);
    memscope_pop(s);
}

static void aligned_sweep(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (size_t align = 16; align <= (64 << 10); align *= 2)
        for (size_t size = 1; size < (1 << 20); size = size * 3 + 1)
            for (unsigned how = 0; how < 3; how++) {
                struct block b;
                keep(&b, aligned(how, align, size), size, align);
                release(&b, b.p ? 1 : 0);
            }
    memscope_pop(s);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    if (argc < 2)
        return check_result();
    /* The set-up a daemon does once per thread, outside its lock. */
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    int first_may_run_out = 0;
    if (strcmp(argv[1], "small") == 0 && argc == 4) {
        long n = atol(argv[2]);
        /* More than the default headroom less the floors (see above). */
        first_may_run_out = n > 20000;
        small(n, atoi(argv[3]));
    } else if (strcmp(argv[1], "large") == 0) {
        large();
    } else if (strcmp(argv[1], "aligned") == 0) {
        aligned_sweep();
    } else {
        CHECK_MSG(0, "unknown case %s", argv[1]);
    }
    const struct memscope_stats_header *h = segment();
    CHECK_MSG(h != NULL, "no stats segment");
    long with_free = -1, exhausted = -1;
    if (h) {
        with_free = (long)h->events[EVENT_REFUSED_WITH_FREE];
        exhausted = (long)h->events[EVENT_POOL_EXHAUSTED];
    }
    CHECK_MSG(with_free == 0, "%ld NORECLAIM refusal(s) while committed memory was free", with_free);
    CHECK_MSG(exhausted == nulls, "%ld NULL, %ld of them counted as the pool exhausted", nulls, exhausted);
    CHECK_MSG(bad == 0, "%ld blocks misaligned or overwritten", bad);
    if (first_may_run_out)
        CHECK_MSG(late_nulls == 0, "%ld requests refused after the first round", late_nulls);
    else
        CHECK_MSG(nulls == 0, "%ld of %ld requests refused in a first burst (%s)", nulls, nulls + served, argv[1]);
    say("noreclaim_first_burst %s: %ld served, %ld NULL (%ld with the pool exhausted)\n", argv[1], served, nulls,
        exhausted);
    return check_result();
}
