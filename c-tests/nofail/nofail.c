/* NOFAIL, the reserve, reclaimers, NOWARN/NOFS/NOIO. One case per run
 * (process state cannot be reset); c-tests/nofail/run.sh runs each with its
 * environment and checks exit status and stderr.
 *
 *   nofail rlimit        under a real RLIMIT_AS, after plain malloc has
 *                        exhausted memory: plain allocations see NULLs,
 *                        NOFAIL ones never do (reclaimers, reserve)
 *   nofail rlimit-first  the address space exhausted before the process's
 *                        first scope of any kind: its first NOFAIL scope
 *                        gets the reserve (reserved at load) with no
 *                        reclaimer to help: 0 NULLs in 1,000
 *   nofail stall         a NOFAIL request that cannot be served for 10 s
 *                        says so on stderr (run with no reserve and a
 *                        deadline of 10.5 s; the runner checks the line)
 *   nofail stall-nowarn  the same under NOWARN: silent
 *   nofail order         reclaimers run in registration order, filtered
 *                        by NOFS/NOIO, never under NORECLAIM, never
 *                        recursively; one may unregister itself
 *   nofail unblock       a NOFAIL caller with nothing left waits until a
 *                        reclaimer frees memory, then proceeds
 *   nofail deadline      MEMSCOPE_NOFAIL_DEADLINE_MS passes: the policy
 *                        (null: NULL + ENOMEM; abort: the process aborts)
 *   nofail toolarge      a size above MEMSCOPE_NOFAIL_MAX: the policy, at once
 *                        (malloc, and the resizes: realloc, reallocarray,
 *                        rallocx, the block untouched)
 *   nofail resize-retry  a NOFAIL resize whose ordinary attempt fails goes
 *                        through the reclaimers and is served, moved
 *   nofail toolarge-nowarn   the same under NOWARN: no diagnostic
 *   nofail softlimit     with MEMSCOPE_SOFT_LIMIT set, the maintenance
 *                        thread runs the reclaimers once RSS passes it
 *   nofail noreclaim     NOFAIL inside NORECLAIM under a seccomp filter:
 *                        pool, then reserve, then NULL; no OS call, no wait */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "check.h"
#include "seccomp.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* ---- a droppable cache, and its reclaimer ------------------------------ */

#define CACHE_MAX 65536
static void *cache[CACHE_MAX];
static size_t cache_size[CACHE_MAX];
static int cached;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static int reclaimer_calls;

static size_t drop_cache(size_t want, void *arg)
{
    (void)arg;
    size_t freed = 0;
    pthread_mutex_lock(&cache_lock);
    while (cached > 0 && freed < want) {
        cached--;
        freed += cache_size[cached];
        free(cache[cached]);
    }
    pthread_mutex_unlock(&cache_lock);
    __atomic_fetch_add(&reclaimer_calls, 1, __ATOMIC_RELAXED);
    return freed;
}

static long vm_bytes(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}

/* Limits the address space to what is mapped now plus `headroom`, then
 * uses it all up into the cache, large blocks first, down to 64 KiB. */
static void exhaust_address_space(long headroom)
{
    struct rlimit rl = {(rlim_t)(vm_bytes() + headroom), RLIM_INFINITY};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    for (size_t size = 1 << 20; size >= (64 << 10); size /= 2) {
        while (cached < CACHE_MAX) {
            void *p = malloc(size);
            if (!p)
                break;
            memset(p, 1, 4096);
            cache[cached] = p;
            cache_size[cached++] = size;
        }
    }
}

static void case_rlimit(void)
{
    /* Make the pool and reserve now, within the limit to come. */
    memscope_pop(memscope_push(MEMSCOPE_NOFAIL));
    exhaust_address_space(192 << 20);
    CHECK_MSG(cached > 0 && cached < CACHE_MAX, "%d blocks before the limit", cached);
    int id = memscope_reclaimer_register("cache", drop_cache, NULL, 0);
    CHECK(id >= 1);

    int plain_nulls = 0;
    for (int i = 0; i < 50; i++) {
        void *p = malloc(256 << 10);
        plain_nulls += p == NULL;
        free(p);
    }
    CHECK_MSG(plain_nulls > 0, "plain malloc never failed: the test would prove nothing");

    static void *kept[400];
    int nofail_nulls = 0;
    unsigned s = memscope_push(MEMSCOPE_NOFAIL);
    for (int i = 0; i < 400; i++) {
        kept[i] = malloc(256 << 10);
        nofail_nulls += kept[i] == NULL;
        if (kept[i])
            memset(kept[i], 2, 256 << 10);
    }
    memscope_pop(s);
    CHECK_MSG(nofail_nulls == 0, "%d NOFAIL allocations returned NULL", nofail_nulls);
    CHECK(reclaimer_calls > 0);
    say("rlimit: plain: %d/50 NULL; NOFAIL: 0/400 NULL; reclaimer ran %d times\n", plain_nulls, reclaimer_calls);
    for (int i = 0; i < 400; i++)
        free(kept[i]);
    memscope_reclaimer_unregister(id);
}

static void case_rlimit_first(void)
{
    exhaust_address_space(64 << 20);
    CHECK_MSG(cached > 0 && cached < CACHE_MAX, "%d blocks before the limit", cached);
    void *probe = malloc(256 << 10);
    CHECK_MSG(probe == NULL, "plain malloc still succeeds: the test would prove nothing");
    free(probe);

    /* The first scope of the process, with nothing left to reclaim. */
    static void *kept[1000];
    int nulls = 0;
    unsigned s = memscope_push(MEMSCOPE_NOFAIL);
    for (int i = 0; i < 1000; i++) {
        kept[i] = malloc(4096);
        nulls += kept[i] == NULL;
        if (kept[i])
            memset(kept[i], 3, 4096);
    }
    memscope_pop(s);
    say("rlimit-first: %d blocks to the limit; first NOFAIL scope: %d/1000 NULL\n", cached, nulls);
    CHECK_MSG(nulls == 0, "%d NOFAIL allocations returned NULL", nulls);
    for (int i = 0; i < 1000; i++)
        free(kept[i]);
}

static void case_stall(unsigned extra)
{
    /* Every ordinary attempt fails and there is no reserve: the request
     * waits until the deadline, and must say so at 10 s. */
    memscope_test_fail_next(1ul << 40);
    unsigned s = memscope_push(MEMSCOPE_NOFAIL | extra);
    void *p = malloc(12345);
    memscope_pop(s);
    memscope_test_fail_next(0);
    CHECK(p == NULL && errno == ENOMEM);
}

/* ---- order and filtering ---------------------------------------------- */

static char trail[64];
static int trail_len;
static int self_id;

static size_t log_a(size_t want, void *arg)
{
    (void)want, (void)arg;
    trail[trail_len++] = 'A';
    /* A reclaimer's own allocation: may use the reserve, never recurses
     * into reclaim (even with faults injected). */
    memscope_test_fail_next(5);
    void *p = malloc(100);
    memscope_test_fail_next(0);
    if (!p)
        trail[trail_len++] = '!';
    free(p);
    return 0;
}
static size_t log_b(size_t want, void *arg) { (void)want, (void)arg; trail[trail_len++] = 'B'; return 0; }
static size_t log_c(size_t want, void *arg) { (void)want, (void)arg; trail[trail_len++] = 'C'; return 0; }
static size_t log_d_once(size_t want, void *arg)
{
    (void)want, (void)arg;
    trail[trail_len++] = 'D';
    memscope_reclaimer_unregister(self_id); /* from inside itself */
    return 0;
}

static const char *reclaim_trail(unsigned flags)
{
    trail_len = 0;
    memset(trail, 0, sizeof trail);
    unsigned s = memscope_push(flags);
    memscope_test_fail_next(1); /* the ordinary path fails once */
    void *p = malloc(1000);
    memscope_pop(s);
    if (!p)
        trail[trail_len++] = '0';
    free(p);
    return trail;
}

static void case_order(void)
{
    CHECK(memscope_reclaimer_register("a", log_a, NULL, 0) == 1);
    CHECK(memscope_reclaimer_register("b-fs", log_b, NULL, MEMSCOPE_RECLAIM_FS) == 2);
    CHECK(memscope_reclaimer_register("c-io", log_c, NULL, MEMSCOPE_RECLAIM_IO) == 3);
    self_id = memscope_reclaimer_register("d", log_d_once, NULL, 0);
    CHECK(self_id == 4);
    CHECK(memscope_reclaimer_register("null", NULL, NULL, 0) == -1);
    const char *t = reclaim_trail(MEMSCOPE_NOFAIL);
    CHECK_MSG(strcmp(t, "ABCD") == 0, "NOFAIL ran \"%s\"", t);
    t = reclaim_trail(MEMSCOPE_NOFAIL); /* D is gone now */
    CHECK_MSG(strcmp(t, "ABC") == 0, "NOFAIL (after D left) ran \"%s\"", t);
    t = reclaim_trail(MEMSCOPE_NOFAIL | MEMSCOPE_NOFS);
    CHECK_MSG(strcmp(t, "AC") == 0, "NOFAIL|NOFS ran \"%s\"", t);
    t = reclaim_trail(MEMSCOPE_NOFAIL | MEMSCOPE_NOIO);
    CHECK_MSG(strcmp(t, "A") == 0, "NOFAIL|NOIO ran \"%s\"", t);
    t = reclaim_trail(MEMSCOPE_NOFAIL | MEMSCOPE_NORECLAIM);
    CHECK_MSG(strcmp(t, "") == 0, "NOFAIL|NORECLAIM ran \"%s\"", t);
    memscope_reclaimer_unregister(2);
    t = reclaim_trail(MEMSCOPE_NOFAIL);
    CHECK_MSG(strcmp(t, "AC") == 0, "after unregistering b: \"%s\"", t);
    memscope_reclaimer_unregister(99); /* unknown: ignored */
    memscope_reclaimer_unregister(-1);
}

/* ---- a waiting caller released by a reclaimer --------------------------- */

static volatile int gate_open;
static size_t gate(size_t want, void *arg)
{
    (void)want, (void)arg;
    if (!gate_open)
        return 0;
    memscope_test_fail_next(0); /* "freed" enough: the ordinary path works */
    return 1 << 20;
}

static void *opener(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    gate_open = 1;
    return NULL;
}

static void case_unblock(void)
{
    CHECK(memscope_reclaimer_register("gate", gate, NULL, 0) >= 1);
    pthread_t t;
    pthread_create(&t, NULL, opener, NULL);
    long long t0 = now_ms();
    unsigned s = memscope_push(MEMSCOPE_NOFAIL);
    memscope_test_fail_next(~0ul);
    void *p = malloc(64 << 20); /* more than the reserve holds */
    memscope_pop(s);
    long long waited = now_ms() - t0;
    pthread_join(t, NULL);
    CHECK(p != NULL);
    CHECK_MSG(waited >= 150 && waited < 5000, "waited %lld ms", waited);
    say("unblock: NOFAIL caller waited %lld ms for the reclaimer\n", waited);
    free(p);
}

static void case_deadline(void)
{
    unsigned s = memscope_push(MEMSCOPE_NOFAIL);
    memscope_test_fail_next(~0ul);
    long long t0 = now_ms();
    errno = 0;
    void *p = malloc(64 << 20); /* more than the reserve holds */
    long long waited = now_ms() - t0;
    memscope_test_fail_next(0);
    memscope_pop(s);
    CHECK(p == NULL && errno == ENOMEM);
    CHECK_MSG(waited >= 180 && waited < 3000, "gave up after %lld ms", waited);
}

/* jemalloc's API, which libmemscope.so exports (weak: not linked). */
__attribute__((weak)) void *rallocx(void *ptr, size_t size, int flags);
/* Through pointers: the block is read after a realloc that must refuse,
 * which GCC's use-after-free warning cannot know. */
static void *(*volatile realloc_fn)(void *, size_t) = realloc;
static void *(*volatile reallocarray_fn)(void *, size_t, size_t) = reallocarray;

static void case_toolarge(unsigned extra)
{
    unsigned s = memscope_push(MEMSCOPE_NOFAIL | extra);
    long long t0 = now_ms();
    errno = 0;
    void *p = malloc(opaque((size_t)2 << 30));
    memscope_pop(s);
    CHECK(p == NULL && errno == ENOMEM);
    CHECK(now_ms() - t0 < 100);
    /* Resizes too: the limit is checked before the ordinary attempt
     * (jemalloc would map 2 GiB of address space), the block untouched. */
    CHECK(rallocx != NULL);
    char *small = malloc(64);
    CHECK(small != NULL);
    memset(small, 7, 64);
    s = memscope_push(MEMSCOPE_NOFAIL | extra);
    t0 = now_ms();
    errno = 0;
    CHECK(realloc_fn(small, opaque((size_t)2 << 30)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray_fn(small, opaque((size_t)1 << 30), 2) == NULL && errno == ENOMEM);
    CHECK(rallocx(small, opaque((size_t)2 << 30), 0) == NULL);
    memscope_pop(s);
    CHECK(now_ms() - t0 < 100);
    CHECK(small[0] == 7 && small[63] == 7);
    free(small);
    /* A possible request still succeeds. */
    s = memscope_push(MEMSCOPE_NOFAIL | extra);
    p = malloc(1 << 20);
    memscope_pop(s);
    CHECK(p != NULL);
    free(p);
}

static int resize_reclaims;
static size_t count_resize_reclaim(size_t want, void *arg)
{
    (void)want, (void)arg;
    resize_reclaims++;
    return 0;
}

/* A NOFAIL resize whose ordinary attempt fails (memscope_test_fail_next):
 * it goes on as a NOFAIL allocation does, through the reclaimers, and is
 * served with its contents moved; for realloc, reallocarray and rallocx. */
static void case_resize_retry(void)
{
    int id = memscope_reclaimer_register("count", count_resize_reclaim, NULL, 0);
    CHECK(id >= 1);
    CHECK(rallocx != NULL);
    for (int how = 0; how < 3; how++) {
        char *p = malloc(100);
        CHECK(p != NULL);
        memset(p, 'a' + how, 100);
        int before = resize_reclaims;
        unsigned s = memscope_push(MEMSCOPE_NOFAIL);
        memscope_test_fail_next(1);
        size_t to = opaque((size_t)1 << 20);
        char *q = how == 0 ? realloc(p, to) : how == 1 ? reallocarray(p, to / 8, 8) : rallocx(p, to, 0);
        memscope_test_fail_next(0);
        memscope_pop(s);
        CHECK_MSG(q != NULL, "resize %d refused", how);
        CHECK_MSG(resize_reclaims > before, "resize %d: its failed ordinary attempt ran no reclaimer", how);
        if (q) {
            CHECK(q[0] == 'a' + how && q[99] == 'a' + how);
            free(q);
        }
    }
    memscope_reclaimer_unregister(id);
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static void case_softlimit(void)
{
    /* MEMSCOPE_SOFT_LIMIT=96M: a 160 MiB cache must be cut back by the
     * maintenance thread, with no allocation failing anywhere. */
    CHECK(memscope_reclaimer_register("cache", drop_cache, NULL, MEMSCOPE_RECLAIM_FS) >= 1);
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < 160; i++) {
        cache[cached] = malloc(1 << 20);
        memset(cache[cached], 1, 1 << 20);
        cache_size[cached++] = 1 << 20;
    }
    pthread_mutex_unlock(&cache_lock);
    long long t0 = now_ms();
    while (now_ms() - t0 < 3000 && __atomic_load_n(&reclaimer_calls, __ATOMIC_RELAXED) == 0)
        usleep(10 * 1000);
    usleep(300 * 1000); /* let it finish the round */
    pthread_mutex_lock(&cache_lock);
    int left = cached;
    pthread_mutex_unlock(&cache_lock);
    CHECK_MSG(reclaimer_calls > 0, "the maintenance thread never ran the reclaimer");
    CHECK_MSG(left < 160, "cache still holds %d MiB", left);
    CHECK_MSG(left > 0, "the whole cache was dropped: reclaim overshoots the limit");
    CHECK_MSG(rss_bytes() < (96 + 32) << 20, "RSS %ld MiB stays above the 96 MiB limit", rss_bytes() >> 20);
    say("softlimit: reclaimer ran %d times within %lld ms; cache cut to %d MiB; RSS %ld MiB\n", reclaimer_calls,
        now_ms() - t0, left, rss_bytes() >> 20);
}

/* ---- NOFAIL inside NORECLAIM, under seccomp ------------------------------ */

static void case_noreclaim(void)
{
    static void *held[4096];
    int n = 0, from_pool = 0, from_reserve = 0;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    CHECK(forbid_reclaim_syscalls() == 0);
    while (n < 4096 && (held[n] = malloc(64 << 10)) != NULL) /* drain the pool */
        n++, from_pool++;
    unsigned t = memscope_push(MEMSCOPE_NOFAIL);
    long long slowest = 0;
    for (;;) {
        long long t0 = now_ms();
        errno = 0;
        void *p = malloc(64 << 10);
        long long dt = now_ms() - t0;
        if (dt > slowest)
            slowest = dt;
        if (!p) {
            CHECK(errno == ENOMEM); /* the policy, once the reserve is empty too */
            break;
        }
        memset(p, 3, 64 << 10);
        held[n++] = p;
        from_reserve++;
        if (n == 4096)
            break;
    }
    memscope_pop(t);
    CHECK_MSG(from_pool > 0 && from_reserve > 0 && n < 4096, "pool %d, reserve %d", from_pool, from_reserve);
    CHECK_MSG(slowest < 5, "an allocation took %lld ms", slowest);
    say("noreclaim: %d blocks from the pool, %d more from the reserve under NOFAIL, then NULL\n", from_pool,
        from_reserve);
    for (int i = 0; i < n; i++)
        free(held[i]);
    memscope_pop(s);
}

int main(int argc, char **argv)
{
    if (!memscope_loaded() || argc != 2) {
        say("usage: LD_PRELOAD=libmemscope.so %s CASE\n", argv[0]);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "rlimit"))
        case_rlimit();
    else if (!strcmp(c, "rlimit-first"))
        case_rlimit_first();
    else if (!strcmp(c, "stall"))
        case_stall(0);
    else if (!strcmp(c, "stall-nowarn"))
        case_stall(MEMSCOPE_NOWARN);
    else if (!strcmp(c, "order"))
        case_order();
    else if (!strcmp(c, "unblock"))
        case_unblock();
    else if (!strcmp(c, "deadline"))
        case_deadline();
    else if (!strcmp(c, "toolarge"))
        case_toolarge(0);
    else if (!strcmp(c, "toolarge-nowarn"))
        case_toolarge(MEMSCOPE_NOWARN);
    else if (!strcmp(c, "resize-retry"))
        case_resize_retry();
    else if (!strcmp(c, "softlimit"))
        case_softlimit();
    else if (!strcmp(c, "noreclaim"))
        case_noreclaim();
    else {
        say("unknown case %s\n", c);
        return 2;
    }
    return check_result();
}
