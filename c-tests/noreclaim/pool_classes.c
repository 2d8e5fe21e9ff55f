/* Frees inside NORECLAIM find a pool block's size in memscope's page-class
 * table instead of asking jemalloc, and small blocks go onto per-thread
 * stacks by that size. A wrong entry would put a block on a stack of
 * larger blocks and hand it out for a request it cannot hold. So: two
 * threads churn pool blocks of every kind (malloc, calloc, aligned,
 * realloc up and down, small and large, blocks made outside the scope
 * and freed inside, blocks made by one thread and freed by the other),
 * enough that slabs empty and their pages come back as other sizes, and
 * every block is checked: usable size at least the request, contents
 * intact up to the last byte at free. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "check.h"

#define SLOTS 768
#define OPS 250000

struct block {
    unsigned char *p;
    size_t len;
    unsigned char tag;
};

/* Blocks one thread leaves for the other to free (in its own scope). */
static struct block handoff[2][SLOTS];
static pthread_barrier_t barrier;

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = next(rng) % 1000;
    if (r < 850)
        return 1 + next(rng) % 320; /* magazine sizes and just above */
    if (r < 980)
        return 321 + next(rng) % 8000;
    return 16384 + next(rng) % (256 << 10); /* large: pages reused */
}

static void fill(struct block *b)
{
    memset(b->p, b->tag, b->len);
}

static int intact(const struct block *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->p[i] != b->tag)
            return 0;
    return 1;
}

static int usable_ok(const struct block *b)
{
    return malloc_usable_size(b->p) >= b->len;
}

static void release(struct block *b, int *bad)
{
    if (!b->p)
        return;
    if (!intact(b))
        ++*bad;
    free(b->p);
    b->p = NULL;
}

/* One op on slot `b`: free it, or make it, or resize it. NULLs (a dry
 * pool fast-fails) are fine; a wrong block is not. */
static void churn_one(struct block *b, uint64_t *rng, int *bad, int *served)
{
    uint64_t r = next(rng) % 100;
    if (b->p && r < 45) {
        release(b, bad);
        return;
    }
    if (b->p && r < 60) {
        size_t n = pick_size(rng);
        if (!intact(b))
            ++*bad;
        unsigned char *q = realloc(b->p, n);
        if (!q)
            return; /* old block untouched */
        size_t kept = n < b->len ? n : b->len;
        for (size_t i = 0; i < kept; i++)
            if (q[i] != b->tag)
                ++*bad;
        b->p = q;
        b->len = n;
        if (!usable_ok(b))
            ++*bad;
        fill(b);
        ++*served;
        return;
    }
    release(b, bad);
    size_t n = pick_size(rng);
    unsigned char *p;
    if (r < 75) {
        p = calloc(1, n);
        for (size_t i = 0; p && i < n; i++)
            if (p[i])
                ++*bad;
    } else if (r < 82) {
        p = aligned_alloc(64, (n + 63) & ~(size_t)63);
        if (p && ((uintptr_t)p & 63))
            ++*bad;
        n = (n + 63) & ~(size_t)63;
    } else {
        p = malloc(n);
    }
    if (!p)
        return;
    b->p = p;
    b->len = n;
    b->tag = (unsigned char)(1 + next(rng) % 250);
    if (!usable_ok(b))
        ++*bad;
    fill(b);
    ++*served;
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
    static struct block slots[2][SLOTS];
    struct block *mine = slots[me];
    int bad = 0, served = 0;

    /* Blocks made outside the scope, to be freed inside it. */
    for (int i = 0; i < SLOTS; i += 3) {
        mine[i].len = pick_size(&rng);
        mine[i].p = malloc(mine[i].len);
        mine[i].tag = 7;
        if (mine[i].p)
            fill(&mine[i]);
    }

    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < OPS; i++)
            churn_one(&mine[next(&rng) % SLOTS], &rng, &bad, &served);
        /* Hand half the live blocks to the other thread, take its half. */
        for (int i = 0; i < SLOTS; i += 2) {
            handoff[me][i] = mine[i];
            mine[i].p = NULL;
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < SLOTS; i += 2)
            release(&handoff[1 - me][i], &bad);
        pthread_barrier_wait(&barrier);
    }
    for (int i = 0; i < SLOTS; i++)
        release(&mine[i], &bad);
    memscope_pop(s);

    CHECK_MSG(bad == 0, "thread %d: %d wrong blocks", me, bad);
    CHECK_MSG(served > OPS / 2, "thread %d: only %d blocks served in scope", me, served);
    return NULL;
}

/* Leaves pages whose table entries say 256 bytes (filled by the stacks'
 * refills) free for reuse as 16-byte slabs served by calloc (which
 * bypasses the stacks): if any path failed to record its blocks, the
 * churn below would then find 16-byte blocks on the 256-byte stack
 * (measured: tens of thousands of wrong blocks when calloc's path skips
 * the record; none without this phase). */
static void dirty_the_table(void)
{
    enum { BIG = 20000, SMALL = 120000 };
    static void *v[SMALL];
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < BIG; i++)
        v[i] = malloc(256);
    for (int i = 0; i < BIG; i++)
        free(v[i]);
    for (int i = 0; i < SMALL; i++)
        v[i] = calloc(1, 16);
    for (int i = 0; i < SMALL; i++)
        free(v[i]);
    memscope_pop(s);
}

int main(void)
{
    CHECK(memscope_loaded());
    if (!memscope_loaded())
        return check_result();
    dirty_the_table();
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return check_result();
}
