/* locks: lock sections under libmemscope_locks.so, counted exactly.
 *
 * usage: locks report|noreclaim|noreclaim,nofail [hold]   (= MEMSCOPE_LOCK_SCOPE)
 *   hold: at the end, print the totals ("sections N allocs N frees N
 *   bytes N") and "ready", and wait for stdin to close (the runner reads
 *   the process with memscope-stat meanwhile).
 *
 * Runs under LD_PRELOAD="libmemscope.so:libmemscope_locks.so". Each phase
 * does known work under pthread mutexes (plain, nested, recursive, try,
 * timed), rwlocks, spinlocks and around condition waits, in the main
 * thread, in plain threads that never call memscope's API and exit at
 * once, and in a pthread key destructor; then checks, from the process's
 * own stats segment, that the lock blocks moved by exactly the sections,
 * allocations, frees and bytes it made, and that memscope_current() is
 * the mode's scope inside a section and not outside. Also:
 *   - memscope's and jemalloc's own locks count nothing (large blocks and
 *     malloc_trim with no program lock held);
 *   - a thread waiting in pthread_cond_wait is outside the scope while it
 *     waits (a signal handler run during the wait reads memscope_current())
 *     and back in it when the wait returns;
 *   - explicit scopes compose with sections (pushed inside and popped
 *     after the release, pushed before and popped inside);
 *   - a failed trylock counts nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

static unsigned M; /* the mode's flags */

struct totals {
    uint64_t sections, allocating, allocs, frees, bytes;
};

static struct totals totals(void)
{
    const struct memscope_stats_header *h = segment();
    struct totals t = {0};
    if (!h || h->abi_minor < 6 || !h->locks_offset)
        return t;
    for (uint32_t i = 0; i < h->slot_count; i++) {
        const struct memscope_lock_stats *b =
            (const void *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size);
        t.sections += __atomic_load_n(&b->sections, __ATOMIC_RELAXED);
        t.allocating += __atomic_load_n(&b->sections_allocating, __ATOMIC_RELAXED);
        t.allocs += __atomic_load_n(&b->allocs, __ATOMIC_RELAXED);
        t.frees += __atomic_load_n(&b->frees, __ATOMIC_RELAXED);
        t.bytes += __atomic_load_n(&b->alloc_bytes, __ATOMIC_RELAXED);
    }
    return t;
}

static void expect(const char *phase, struct totals before, uint64_t sections, uint64_t allocating,
                   uint64_t allocs, uint64_t frees, uint64_t bytes)
{
    struct totals a = totals();
    struct totals d = {a.sections - before.sections, a.allocating - before.allocating,
                       a.allocs - before.allocs, a.frees - before.frees, a.bytes - before.bytes};
    CHECK_MSG(d.sections == sections && d.allocating == allocating && d.allocs == allocs && d.frees == frees &&
              d.bytes == bytes,
          "%s: sections %lu (want %lu), allocating %lu (%lu), allocs %lu (%lu), frees %lu (%lu), bytes %lu (%lu)",
          phase, (unsigned long)d.sections, (unsigned long)sections, (unsigned long)d.allocating,
          (unsigned long)allocating, (unsigned long)d.allocs, (unsigned long)allocs, (unsigned long)d.frees,
          (unsigned long)frees, (unsigned long)d.bytes, (unsigned long)bytes);
}

static void inside(const char *where, unsigned extra)
{
    unsigned cur = memscope_current();
    CHECK_MSG(cur == (M | extra), "%s: memscope_current() %#x inside, want %#x", where, cur, M | extra);
}

static void outside(const char *where, unsigned want)
{
    unsigned cur = memscope_current();
    CHECK_MSG(cur == want, "%s: memscope_current() %#x outside, want %#x", where, cur, want);
}

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

/* A mutex of `type` (PTHREAD_MUTEX_RECURSIVE, _ERRORCHECK). */
static void init_typed(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, type);
    pthread_mutex_init(m, &at);
    pthread_mutexattr_destroy(&at);
}

/* Opaque to the compiler: the allocations must happen. */
static void *volatile sink;
static void *take(size_t n)
{
    void *p = malloc(n);
    sink = p;
    return p;
}

static void mutexes(void)
{
    struct totals t0 = totals();
    pthread_mutex_lock(&a);
    inside("mutex", 0);
    for (int i = 0; i < 10; i++)
        free(take(100));
    pthread_mutex_unlock(&a);
    outside("mutex", 0);
    expect("mutex", t0, 1, 1, 10, 10, 1000);

    /* Nested: one section from the first lock to the last release. */
    t0 = totals();
    pthread_mutex_lock(&a);
    pthread_mutex_lock(&b);
    void *p = take(64);
    pthread_mutex_unlock(&b);
    inside("nested, after the inner release", 0);
    void *q = take(32);
    free(p);
    free(q);
    pthread_mutex_unlock(&a);
    outside("nested", 0);
    expect("nested mutexes", t0, 1, 1, 2, 2, 96);

    /* Recursive, then try and timed acquisitions. */
    pthread_mutex_t r;
    init_typed(&r, PTHREAD_MUTEX_RECURSIVE);
    t0 = totals();
    pthread_mutex_lock(&r);
    pthread_mutex_lock(&r);
    free(take(8));
    pthread_mutex_unlock(&r);
    inside("recursive, once released", 0);
    pthread_mutex_unlock(&r);
    outside("recursive", 0);
    CHECK_MSG(pthread_mutex_trylock(&a) == 0, "trylock");
    free(take(24));
    pthread_mutex_unlock(&a);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    CHECK_MSG(pthread_mutex_timedlock(&a, &ts) == 0, "timedlock");
    free(take(40));
    pthread_mutex_unlock(&a);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += 5;
    CHECK_MSG(pthread_mutex_clocklock(&a, CLOCK_MONOTONIC, &ts) == 0, "clocklock");
    free(take(48));
    pthread_mutex_unlock(&a);
    outside("try/timed/clock", 0);
    expect("recursive, try, timed, clock", t0, 4, 4, 4, 4, 8 + 24 + 40 + 48);
    pthread_mutex_destroy(&r);

    /* Sections that allocate nothing. */
    t0 = totals();
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&a);
        pthread_mutex_unlock(&a);
    }
    expect("empty sections", t0, 1000, 0, 0, 0, 0);
}

static void rwlocks_and_spinlocks(void)
{
    struct totals t0 = totals();
    pthread_rwlock_rdlock(&rw);
    inside("rdlock", 0);
    sink = calloc(4, 64);
    free(sink);
    pthread_rwlock_unlock(&rw);
    pthread_rwlock_wrlock(&rw);
    inside("wrlock", 0);
    void *p = take(16);
    p = realloc(p, 4000);
    free(p);
    pthread_rwlock_unlock(&rw);
    CHECK_MSG(pthread_rwlock_tryrdlock(&rw) == 0, "tryrdlock");
    free(take(1));
    pthread_rwlock_unlock(&rw);
    CHECK_MSG(pthread_rwlock_trywrlock(&rw) == 0, "trywrlock");
    free(take(2));
    pthread_rwlock_unlock(&rw);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    CHECK_MSG(pthread_rwlock_timedrdlock(&rw, &ts) == 0, "timedrdlock");
    free(take(3));
    pthread_rwlock_unlock(&rw);
    CHECK_MSG(pthread_rwlock_timedwrlock(&rw, &ts) == 0, "timedwrlock");
    free(take(4));
    pthread_rwlock_unlock(&rw);
    outside("rwlock", 0);
    expect("rwlocks", t0, 6, 6, 7, 6, 256 + 16 + 4000 + 1 + 2 + 3 + 4);

    pthread_spinlock_t s;
    pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE);
    t0 = totals();
    pthread_spin_lock(&s);
    inside("spinlock", 0);
    free(take(3000));
    pthread_spin_unlock(&s);
    CHECK_MSG(pthread_spin_trylock(&s) == 0, "spin trylock");
    free(take(5));
    pthread_spin_unlock(&s);
    outside("spinlock", 0);
    expect("spinlocks", t0, 2, 2, 2, 2, 3005);
    pthread_spin_destroy(&s);
}

/* A failed trylock (another thread holds the mutex) counts nothing. */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static volatile int holding, release_it;
static void *holder(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held);
    holding = 1;
    while (!release_it)
        sched_yield();
    pthread_mutex_unlock(&held);
    return NULL;
}

static void failed_try(void)
{
    struct totals t0 = totals();
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    while (!holding)
        sched_yield();
    CHECK_MSG(pthread_mutex_trylock(&held) == EBUSY, "trylock of a held mutex is EBUSY");
    outside("failed trylock", 0);
    free(take(10));
    release_it = 1;
    pthread_join(t, NULL);
    /* The holder's one empty section; main's malloc was outside. */
    expect("failed trylock", t0, 1, 0, 0, 0, 0);
}

/* memscope's own locks (jemalloc's arena and extent mutexes, taken by
 * large allocations, purges and malloc_trim) are not the program's. */
static void own_locks(void)
{
    struct totals t0 = totals();
    void *big[64];
    for (int i = 0; i < 64; i++)
        big[i] = take((size_t)(1 + i % 4) << 20);
    for (int i = 0; i < 64; i++)
        free(big[i]);
    malloc_trim(0);
    expect("memscope's own locks", t0, 0, 0, 0, 0, 0);
}

/* A condition wait: outside the scope while waiting. */
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, go;
static volatile sig_atomic_t handler_ran;
static volatile unsigned in_wait_flags = 0xdead;
static unsigned after_wait_flags = 0xdead;

static void on_usr1(int sig)
{
    (void)sig;
    in_wait_flags = memscope_current();
    handler_ran = 1;
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cm);
    ready = 1;
    while (!go)
        pthread_cond_wait(&cv, &cm);
    after_wait_flags = memscope_current();
    free(take(123));
    pthread_mutex_unlock(&cm);
    return NULL;
}

static void cond_wait(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    struct totals t0 = totals();
    uint64_t mine = 0;
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    for (;;) {
        pthread_mutex_lock(&cm);
        mine++;
        int r = ready;
        pthread_mutex_unlock(&cm);
        if (r)
            break;
        usleep(1000);
    }
    /* The waiter released cm inside pthread_cond_wait: it waits now. */
    pthread_kill(t, SIGUSR1);
    while (!handler_ran)
        usleep(1000);
    pthread_mutex_lock(&cm);
    mine++;
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cm);
    pthread_join(t, NULL);
    CHECK_MSG(in_wait_flags == 0, "a handler run during pthread_cond_wait saw flags %#x: the wait held a scope",
          in_wait_flags);
    CHECK_MSG(after_wait_flags == M, "after pthread_cond_wait returned: flags %#x, want %#x", after_wait_flags, M);
    /* The waiter's two sections (before its wait, after it) and main's. */
    expect("condition wait", t0, 2 + mine, 1, 1, 1, 123);

    /* A timed wait that times out hands the mutex back too. */
    t0 = totals();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 2000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&cm);
    CHECK_MSG(pthread_cond_timedwait(&cv, &cm, &ts) == ETIMEDOUT, "timedwait times out");
    inside("after a timed-out wait", 0);
    free(take(7));
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 2000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    CHECK_MSG(pthread_cond_clockwait(&cv, &cm, CLOCK_MONOTONIC, &ts) == ETIMEDOUT, "clockwait times out");
    free(take(9));
    pthread_mutex_unlock(&cm);
    outside("timed waits", 0);
    expect("timed waits", t0, 3, 2, 2, 2, 16);
}

/* A fork inside a section: jemalloc's fork handlers unlock its mutexes
 * with a jump to pthread_mutex_unlock (the return address is glibc's
 * fork), which once ended the parent's section while it still held its
 * locks. And an unlock that fails (an error-checking mutex this thread
 * does not own) ends nothing. */
static void fork_and_failed_unlock(void)
{
    struct totals t0 = totals();
    pthread_mutex_lock(&b);
    pthread_mutex_lock(&a);
    pid_t child = fork();
    if (child == 0)
        _exit(memscope_current() == M ? 0 : 1);
    int status = -1;
    waitpid(child, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fork child's flags were not the section's");
    inside("after a fork, both held", 0);
    pthread_mutex_unlock(&a);
    inside("after a fork, b still held", 0);
    free(take(64));
    pthread_mutex_unlock(&b);
    outside("after a fork", 0);
    expect("a fork inside a section", t0, 1, 1, 1, 1, 64);

    pthread_mutex_t ec;
    init_typed(&ec, PTHREAD_MUTEX_ERRORCHECK);
    t0 = totals();
    pthread_mutex_lock(&a);
    CHECK_MSG(pthread_mutex_unlock(&ec) == EPERM, "unlocking a mutex not held is EPERM");
    inside("after a failed unlock", 0);
    free(take(7));
    pthread_mutex_unlock(&a);
    outside("after a failed unlock", 0);
    expect("a failed unlock", t0, 1, 1, 1, 1, 7);
    pthread_mutex_destroy(&ec);
}

/* Explicit scopes and sections, in either order. */
static void composition(void)
{
    pthread_mutex_lock(&a);
    unsigned s = memscope_push(MEMSCOPE_NOFAIL);
    inside("push inside a section", MEMSCOPE_NOFAIL);
    pthread_mutex_unlock(&a);
    outside("pushed inside, released", MEMSCOPE_NOFAIL);
    memscope_pop(s);
    outside("pushed inside, popped after", 0);

    s = memscope_push(MEMSCOPE_NOWARN);
    pthread_mutex_lock(&a);
    inside("pushed before", MEMSCOPE_NOWARN);
    memscope_pop(s);
    inside("pushed before, popped inside", 0);
    pthread_mutex_unlock(&a);
    outside("pushed before, popped inside, released", 0);

    pthread_mutex_lock(&a);
    s = memscope_push(MEMSCOPE_NORECLAIM);
    inside("NORECLAIM pushed inside", MEMSCOPE_NORECLAIM);
    free(take(256));
    memscope_pop(s);
    inside("NORECLAIM popped inside", 0);
    pthread_mutex_unlock(&a);
    outside("composition", 0);
}

/* Plain threads that never call memscope's API and exit at once. */
static void *plain_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        pthread_mutex_lock(&a);
        free(take(50));
        pthread_mutex_unlock(&a);
    }
    return NULL;
}

static pthread_key_t key;
static void destructor(void *v)
{
    (void)v;
    pthread_mutex_lock(&b);
    free(take(77));
    pthread_mutex_unlock(&b);
}

static void *keyed_thread(void *arg)
{
    (void)arg;
    pthread_setspecific(key, (void *)1);
    pthread_mutex_lock(&b);
    free(take(11));
    pthread_mutex_unlock(&b);
    return NULL;
}

static void threads(void)
{
    struct totals t0 = totals();
    pthread_t t[16];
    for (int i = 0; i < 16; i++)
        pthread_create(&t[i], NULL, plain_thread, NULL);
    for (int i = 0; i < 16; i++)
        pthread_join(t[i], NULL);
    expect("16 short plain threads", t0, 80, 80, 80, 80, 80 * 50);

    pthread_key_create(&key, destructor);
    t0 = totals();
    pthread_t k;
    pthread_create(&k, NULL, keyed_thread, NULL);
    pthread_join(k, NULL);
    expect("a key destructor's section", t0, 2, 2, 2, 2, 11 + 77);
}

/* Absurd requests under a lock (an overflowing size, counted as 2^64-1
 * bytes) are refusals that saturate the thread's byte total instead of
 * wrapping it; free(NULL) is no free. Run last: the total stays
 * saturated. */
static void absurd(const struct memscope_stats_header *h)
{
    pthread_mutex_lock(&a);
    for (int i = 0; i < 10; i++)
        free(take(100));
    sink = malloc(opaque(SIZE_MAX));
    sink = calloc(opaque(SIZE_MAX / 2), 4);
    free(NULL);
    free(NULL);
    pthread_mutex_unlock(&a);
    int saturated = 0;
    for (uint32_t i = 0; i < h->slot_count; i++) {
        const struct memscope_lock_stats *l =
            (const void *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size);
        if (l->alloc_bytes == UINT64_MAX) {
            saturated++;
            CHECK_MSG(l->largest == UINT64_MAX && l->refused >= 2 && l->allocs >= l->frees + 2,
                      "the absurd requests' block: largest %lu refused %lu allocs %lu frees %lu",
                      (unsigned long)l->largest, (unsigned long)l->refused, (unsigned long)l->allocs,
                      (unsigned long)l->frees);
        }
    }
    CHECK_MSG(saturated == 1, "%d blocks hold a saturated byte total, want 1 (wrapped?)", saturated);
}

/* Seventeen locks (one beyond the 16 tracked by address), the first
 * released, then an unlock that fails (an error-checking mutex the thread
 * does not own), counted by number: the failure is undone by number too.
 * It once put the mutex it does not own among the tracked ones, and the
 * thread stayed in its section after releasing every lock. */
static void deep_failed_unlock(void)
{
    static pthread_mutex_t mu[17];
    pthread_mutex_t ec;
    init_typed(&ec, PTHREAD_MUTEX_ERRORCHECK);
    for (int i = 0; i < 17; i++)
        pthread_mutex_init(&mu[i], NULL);
    struct totals t0 = totals();
    for (int i = 0; i < 17; i++)
        pthread_mutex_lock(&mu[i]);
    pthread_mutex_unlock(&mu[0]);
    CHECK_MSG(pthread_mutex_unlock(&ec) == EPERM, "unlocking a mutex not held is EPERM");
    inside("16 locks held after a failed unlock", 0);
    for (int i = 1; i < 17; i++)
        pthread_mutex_unlock(&mu[i]);
    outside("17 locks and a failed unlock, all released", 0);
    free(take(5));
    expect("17 locks and a failed unlock", t0, 1, 0, 0, 0, 0);
    pthread_mutex_destroy(&ec);
}

/* Condition waits glibc refuses before it releases the mutex (EINVAL: a
 * deadline's nanoseconds out of range, an unknown clock) neither end the
 * section nor begin another (they once counted a section each). */
static void refused_waits(void)
{
    struct totals t0 = totals();
    struct timespec bad = {time(NULL) + 60, 1000000000};
    pthread_mutex_lock(&cm);
    CHECK_MSG(pthread_cond_timedwait(&cv, &cm, &bad) == EINVAL, "timedwait with tv_nsec 1e9 is EINVAL");
    CHECK_MSG(pthread_cond_clockwait(&cv, &cm, CLOCK_MONOTONIC, &bad) == EINVAL, "clockwait, bad deadline");
    bad.tv_nsec = 0;
    CHECK_MSG(pthread_cond_clockwait(&cv, &cm, CLOCK_PROCESS_CPUTIME_ID, &bad) == EINVAL, "clockwait, bad clock");
    inside("after refused waits", 0);
    pthread_mutex_unlock(&cm);
    expect("refused condition waits", t0, 1, 0, 0, 0, 0);
}

/* The process's first NORECLAIM push, made under a lock: memscope makes
 * the pool, starts its maintenance thread and sets the thread up,
 * allocating as it does: its own allocations, not the program's (they
 * were counted once: 4 allocations, 656 bytes, in report mode). */
static void first_push_under_lock(void)
{
    struct totals t0 = totals();
    pthread_mutex_lock(&a);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    memscope_pop(s);
    pthread_mutex_unlock(&a);
    expect("the first push, under a lock", t0, 1, 0, 0, 0, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        say("usage: locks report|noreclaim|noreclaim,nofail [hold]");
        return 2;
    }
    M = !strcmp(argv[1], "report") ? 0
        : !strcmp(argv[1], "noreclaim") ? MEMSCOPE_NORECLAIM
                                         : MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL;
    free(take(1)); /* the thread is seen, the segment made */
    const struct memscope_stats_header *h = segment();
    CHECK_MSG(h && h->abi_minor >= 6 && h->lock_scope == M, "segment with lock blocks, lock_scope %#x",
          h ? h->lock_scope : 0xdead);
    if (check_failures)
        return check_result();
    first_push_under_lock();
    mutexes();
    rwlocks_and_spinlocks();
    failed_try();
    own_locks();
    cond_wait();
    fork_and_failed_unlock();
    deep_failed_unlock();
    refused_waits();
    composition();
    threads();
    /* Quiescent now: every block's sizes add up to its allocations, its
     * timed ones are a part of them, its allocating sections of its
     * sections; and the totals hold all of this program's work. */
    uint64_t allocs = 0;
    for (uint32_t i = 0; i < h->slot_count; i++) {
        const struct memscope_lock_stats *l =
            (const void *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size);
        uint64_t n = 0;
        for (int k = 0; k < MEMSCOPE_LOCK_SIZE_BUCKETS; k++)
            n += l->sizes[k];
        CHECK_MSG(n == l->allocs && l->latency.count <= l->allocs && l->sections_allocating <= l->sections &&
                      l->refused <= l->allocs,
                  "block %u: sizes %lu, allocs %lu, timed %lu, sections %lu/%lu", i, (unsigned long)n,
                  (unsigned long)l->allocs, (unsigned long)l->latency.count, (unsigned long)l->sections_allocating,
                  (unsigned long)l->sections);
        allocs += l->allocs;
    }
    CHECK_MSG(allocs >= 10 + 2 + 4 + 7 + 2 + 80 + 2 + 1 + 2 + 1, "total allocations %lu", (unsigned long)allocs);
    if (argc == 2)
        absurd(h);
    if (argc == 3) {
        struct totals t = totals();
        printf("sections %lu allocs %lu frees %lu bytes %lu\n", (unsigned long)t.sections, (unsigned long)t.allocs,
               (unsigned long)t.frees, (unsigned long)t.bytes);
        return ready_then_wait();
    }
    return check_result();
}
