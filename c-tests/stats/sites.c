/* sites: known call sites for `memscope-stat sites` (issue "Name the
 * code"), in the main thread:
 *   long_scope_here  one NORECLAIM scope held 30 ms (the thread's first
 *                    scope: timed);
 *   refused_here     3 requests of 8 MiB inside NORECLAIM|NOWARN (larger
 *                    than any pool block: refused);
 *   nofail_here      2 NOFAIL requests whose first ordinary attempt fails
 *                    (memscope_test_fail_next): each waits once;
 *   plain_here       200,000 allocations of 64 bytes inside NORECLAIM
 *                    (20,000 kept; sampled: with MEMSCOPE_STATS_SAMPLE=1
 *                    every one timed);
 *   realloc_here     4 reallocs of a small block to 8 MiB inside NORECLAIM
 *                    (refused: realloc's refusals count too);
 *   deadline_here    1 NOFAIL request of 64 MiB (more than the reserve)
 *                    whose every ordinary attempt fails: it waits once, the
 *                    reclaimer runs and allocates itself, and the deadline
 *                    (MEMSCOPE_NOFAIL_DEADLINE_MS, set by the runner) ends
 *                    in the policy (null). Both are deadline_here's: the
 *                    reclaimer's own calls do not take the call's place;
 *   mallocx_here, rallocx_here
 *                    2 refusals each through jemalloc's API (mallocx and
 *                    rallocx answer inside NORECLAIM as malloc does);
 *   policy_rallocx_here, policy_malloc_here
 *                    requests under NORECLAIM|NOFAIL larger than any pool
 *                    block (2 rallocx, 1 malloc): each a policy record,
 *                    once, and no refusal;
 *   rr0..rr7         8 sites allocating in turn, 2,000 rounds: with every
 *                    call timed, each is recorded (the subsample's
 *                    intervals are random, not every 16th call);
 *   thread_here      64 threads started together, each refusing 10
 *                    requests and exiting at once (their tables fold into
 *                    the retired one while others exit: none may be lost).
 * Then prints "ready" and waits for stdin to close, so that the runner
 * reads the segment of a live process. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

#define PLAIN 20000
#define PLAIN_ALL 200000
static void *kept[PLAIN];

__attribute__((noinline)) static void long_scope_here(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    struct timespec t = {0, 30 * 1000 * 1000};
    nanosleep(&t, NULL);
    memscope_pop(s);
}

__attribute__((noinline)) static void *refused_here(void)
{
    return malloc(8u << 20);
}

__attribute__((noinline)) static void *nofail_here(void)
{
    memscope_test_fail_next(1);
    return malloc(4096);
}

__attribute__((noinline)) static void *plain_here(void)
{
    return malloc(64);
}

__attribute__((noinline)) static void *realloc_here(void *p)
{
    return realloc(p, 8u << 20);
}

/* jemalloc's API, which libmemscope.so exports (weak: the program is not
 * linked against it; main checks they resolved). */
__attribute__((weak)) void *mallocx(size_t size, int flags);
__attribute__((weak)) void *rallocx(void *ptr, size_t size, int flags);

__attribute__((noinline)) static void *mallocx_here(void)
{
    return mallocx(8u << 20, 0);
}

__attribute__((noinline)) static void *rallocx_here(void *p)
{
    return rallocx(p, 8u << 20, 0);
}

__attribute__((noinline)) static void *policy_rallocx_here(void *p)
{
    return rallocx(p, 8u << 20, 0);
}

__attribute__((noinline)) static void *policy_malloc_here(void)
{
    return malloc(8u << 20);
}

#define RR(n)                                                                                                          \
    __attribute__((noinline)) static void *rr##n(void) { return malloc(16 * (n + 1)); }
RR(0) RR(1) RR(2) RR(3) RR(4) RR(5) RR(6) RR(7)
static void *(*const rr[8])(void) = {rr0, rr1, rr2, rr3, rr4, rr5, rr6, rr7};
#define RR_ROUNDS 2000

static volatile int reclaimer_calls;

__attribute__((noinline)) static size_t reclaimer_allocates(size_t want, void *arg)
{
    (void)want;
    (void)arg;
    reclaimer_calls++;
    void *volatile p = malloc(64); /* volatile: the pair is not optimised out */
    free(p);
    return 0;
}

__attribute__((noinline)) static void *deadline_here(void)
{
    return malloc(64u << 20);
}

#define THREADS 64
static pthread_barrier_t start;

__attribute__((noinline)) static void *thread_here(void)
{
    return malloc(8u << 20);
}

static void *refusing_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 10; i++)
        CHECK(thread_here() == NULL);
    memscope_pop(s);
    return NULL;
}

int main(void)
{
    CHECK(memscope_loaded());
    long_scope_here();

    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 3; i++)
        CHECK(refused_here() == NULL);
    for (int i = 0; i < PLAIN_ALL; i++) {
        void *p = plain_here(); /* one call site: one site, its callers the same */
        CHECK(p != NULL);
        if (i < PLAIN)
            kept[i] = p;
        else
            free(p);
    }
    for (int i = 0; i < 4; i++)
        CHECK(realloc_here(kept[i]) == NULL);
    memscope_pop(s);
    for (int i = 0; i < PLAIN; i++)
        free(kept[i]);

    s = memscope_push(MEMSCOPE_NOFAIL);
    for (int i = 0; i < 2; i++) {
        void *p = nofail_here();
        CHECK(p != NULL);
        free(p);
    }
    memscope_pop(s);

    CHECK(mallocx != NULL && rallocx != NULL);
    void *small = malloc(32);
    CHECK(small != NULL);
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 2; i++) {
        CHECK(mallocx_here() == NULL);
        CHECK(rallocx_here(small) == NULL);
    }
    for (int r = 0; r < RR_ROUNDS; r++)
        for (int i = 0; i < 8; i++)
            free(rr[i]());
    memscope_pop(s);
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
    for (int i = 0; i < 2; i++)
        CHECK(policy_rallocx_here(small) == NULL);
    CHECK(policy_malloc_here() == NULL);
    memscope_pop(s);
    free(small);

    int id = memscope_reclaimer_register("allocates", reclaimer_allocates, NULL, 0);
    CHECK(id > 0);
    s = memscope_push(MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
    memscope_test_fail_next(1ul << 40);
    CHECK(deadline_here() == NULL);
    memscope_test_fail_next(0);
    memscope_pop(s);
    CHECK(reclaimer_calls > 0);
    memscope_reclaimer_unregister(id);

    pthread_t t[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, refusing_thread, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    return ready_then_wait();
}
