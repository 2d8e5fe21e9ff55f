/* Scope semantics: nesting restores exactly; a pop that matches no push is
 * caught and never turns a flag on; NORECLAIM blocks come from the pool's
 * own arena; threads that exit inside a scope; fork inside a scope; a
 * signal handler that pushes, allocates and pops while the thread is in
 * the middle of a push or pop;
 * many threads entering their first scope at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memscope.h"
#include "check.h"

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));

/* The arena a block belongs to, from jemalloc's arenas.lookup. */
static unsigned arena_of(void *p)
{
    unsigned a = 9999;
    size_t len = sizeof a;
    if (mallctl("arenas.lookup", &a, &len, &p, sizeof p) != 0)
        return 9999;
    return a;
}

/* True if `p` came from the NORECLAIM pool: the pool arena's block, or a
 * block memscope carved from the pool's region (within its 4 GiB default
 * reservation of `near`, a pool block). */
static int in_pool(void *p, unsigned pool, void *near)
{
    unsigned a = arena_of(p);
    uintptr_t d = (uintptr_t)p > (uintptr_t)near ? (uintptr_t)p - (uintptr_t)near : (uintptr_t)near - (uintptr_t)p;
    return a == pool || (a == 9999 && d < ((uintptr_t)4 << 30));
}

static void test_nesting(void)
{
    CHECK(memscope_current() == 0);
    unsigned a = memscope_push(MEMSCOPE_NOFS);
    CHECK(a == 0 && memscope_current() == MEMSCOPE_NOFS);
    unsigned b = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    CHECK(b == MEMSCOPE_NOFS);
    CHECK(memscope_current() == (MEMSCOPE_NOFS | MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN));
    unsigned c = memscope_push(MEMSCOPE_NOFS); /* already on: a no-op push */
    CHECK(c == (MEMSCOPE_NOFS | MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN));
    memscope_pop(c);
    CHECK(memscope_current() == c);
    memscope_pop(b);
    CHECK(memscope_current() == MEMSCOPE_NOFS);
    memscope_pop(a);
    CHECK(memscope_current() == 0);
    CHECK((memscope_push(0x80000000u | MEMSCOPE_NOIO) & 0x80000000u) == 0); /* unknown bits ignored */
    CHECK(memscope_current() == MEMSCOPE_NOIO);
    memscope_pop(0);
    CHECK(memscope_current() == 0);

    /* The header's conveniences. */
    unsigned s = memscope_noreclaim_save();
    CHECK(memscope_current_flags() == MEMSCOPE_NORECLAIM);
    {
        MEMSCOPE_SCOPE(MEMSCOPE_NOFAIL);
        CHECK(memscope_current() == (MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL));
    }
    CHECK(memscope_current() == MEMSCOPE_NORECLAIM);
    memscope_noreclaim_restore(s);
    CHECK(memscope_current() == 0);
}

static void test_misuse(void)
{
    /* Pop with nothing pushed: ignored (and reported on stderr). */
    memscope_pop(MEMSCOPE_NOFAIL);
    CHECK(memscope_current() == 0);
    /* A pop that does not match the innermost push never adds a flag. */
    unsigned a = memscope_push(MEMSCOPE_NOFS);
    memscope_pop(MEMSCOPE_NOFAIL | MEMSCOPE_NOIO);
    CHECK(memscope_current() == 0);
    (void)a;
}

static void test_pool_arena(void)
{
    void *outside = malloc(100);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    void *small = malloc(100), *big = malloc(1 << 20), *al = aligned_alloc(4096, 8192);
    void *cal = calloc(1000, 10);
    CHECK(small && big && al && cal);
    unsigned pool = arena_of(small);
    CHECK(pool != 9999 && pool != arena_of(outside));
    /* From the pool: its arena's, or carved by memscope from the pool's
     * region (jemalloc does not know those: arenas.lookup refuses them). */
    CHECK(in_pool(big, pool, small) && in_pool(al, pool, small) && in_pool(cal, pool, small));
    CHECK(((uintptr_t)al & 4095) == 0);
    for (int i = 0; i < 10000; i++)
        CHECK(((unsigned char *)cal)[i] == 0);
    /* realloc of an outside block moves it into the pool, contents kept. */
    memset(outside, 'x', 100);
    void *moved = realloc(outside, 200);
    CHECK(moved && in_pool(moved, pool, small) && ((unsigned char *)moved)[99] == 'x');
    memscope_pop(s);
    /* Pool blocks may be freed outside the scope, and vice versa. */
    free(small);
    free(big);
    free(al);
    s = memscope_push(MEMSCOPE_NORECLAIM);
    free(cal);
    free(moved);
    memscope_pop(s);
}

static void *exit_in_scope(void *arg)
{
    (void)arg;
    memscope_push(MEMSCOPE_NORECLAIM);
    for (int i = 0; i < 1000; i++)
        free(malloc((size_t)i * 17 + 1));
    void *leak_to_main = malloc(64);
    return leak_to_main; /* exits with the scope still pushed */
}

static void test_thread_exit_in_scope(void)
{
    for (int round = 0; round < 50; round++) {
        pthread_t t;
        void *ret = NULL;
        CHECK(pthread_create(&t, NULL, exit_in_scope, NULL) == 0);
        for (int i = 0; i < 1000; i++)
            free(malloc(100));
        pthread_join(t, &ret);
        CHECK(ret != NULL);
        free(ret);
    }
}

static void test_fork_in_scope(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    void *before = malloc(1000);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = memscope_current() != MEMSCOPE_NORECLAIM;
        for (int i = 0; i < 20000; i++) {
            void *p = malloc((size_t)(i % 5000) + 1);
            if (!p)
                bad++;
            free(p);
        }
        free(before);
        memscope_pop(s);
        bad += memscope_current() != 0;
        /* A fresh push in the child restarts the maintenance thread; the
         * pool must keep serving after being drained. */
        for (int round = 0; round < 3; round++) {
            unsigned t = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
            void *blocks[256];
            int got = 0;
            for (int i = 0; i < 256; i++)
                if ((blocks[i] = malloc(256 << 10)) != NULL)
                    got++;
            for (int i = 0; i < 256; i++)
                free(blocks[i]);
            memscope_pop(t);
            bad += got == 0;
            usleep(20000);
        }
        _exit(bad);
    }
    CHECK(pid > 0);
    free(before);
    memscope_pop(s);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

static volatile sig_atomic_t handler_runs, handler_bad, handler_outside;
static unsigned handler_pool = 9999;

/* Interrupts the loop below anywhere in push or pop (which are
 * async-signal-safe), enters its own NORECLAIM scope and allocates: the
 * block must come from the pool whatever state the interrupted push or
 * pop left half-written. (The loop itself never allocates, so the
 * handler's malloc cannot re-enter jemalloc.) */
static void on_alarm(int sig)
{
    (void)sig;
    unsigned before = memscope_current();
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    if (s != before || memscope_current() != (before | MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN))
        handler_bad++;
    void *p = malloc(64);
    if (!p || arena_of(p) != handler_pool)
        handler_outside++;
    free(p);
    memscope_pop(s);
    if (memscope_current() != before)
        handler_bad++;
    handler_runs++;
}

static void test_signal_handler(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    void *probe = malloc(64);
    handler_pool = arena_of(probe);
    free(probe);
    memscope_pop(s);
    CHECK(handler_pool != 9999);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    int bad = 0;
    for (int i = 0; i < 4000000 && handler_runs < 4000; i++) {
        unsigned a = memscope_push(MEMSCOPE_NORECLAIM);
        unsigned b = memscope_push(MEMSCOPE_NOIO);
        bad += memscope_current() != (MEMSCOPE_NORECLAIM | MEMSCOPE_NOIO);
        memscope_pop(b);
        bad += memscope_current() != MEMSCOPE_NORECLAIM;
        memscope_pop(a);
        bad += memscope_current() != 0;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    CHECK_MSG(handler_runs > 10, "handler ran %d times", (int)handler_runs);
    CHECK(handler_bad == 0);
    CHECK_MSG(handler_outside == 0, "%d of %d handler allocations missed the pool", (int)handler_outside,
              (int)handler_runs);
    CHECK(bad == 0);
    CHECK(memscope_current() == 0);
}

#define STAMPEDE 32
static pthread_barrier_t barrier;
static unsigned stampede_arena[STAMPEDE];

static void *first_scope(void *arg)
{
    long i = (long)arg;
    pthread_barrier_wait(&barrier);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    void *p = malloc(1000);
    stampede_arena[i] = p ? arena_of(p) : 9999;
    free(p);
    memscope_pop(s);
    return NULL;
}

static void test_stampede(void)
{
    pthread_t t[STAMPEDE];
    pthread_barrier_init(&barrier, NULL, STAMPEDE);
    for (long i = 0; i < STAMPEDE; i++)
        pthread_create(&t[i], NULL, first_scope, (void *)i);
    for (int i = 0; i < STAMPEDE; i++)
        pthread_join(t[i], NULL);
    for (int i = 1; i < STAMPEDE; i++)
        CHECK(stampede_arena[i] == stampede_arena[0] && stampede_arena[i] != 9999);
}

int main(void)
{
    CHECK(memscope_loaded());
    if (!memscope_loaded())
        return check_result();
    CHECK(memscope_version() == MEMSCOPE_VERSION);
    CHECK(MEMSCOPE_VERSION == ((MEMSCOPE_VERSION_MAJOR << 16) | (MEMSCOPE_VERSION_MINOR << 8) | MEMSCOPE_VERSION_PATCH));
    test_nesting();
    test_misuse();
    test_stampede();
    test_pool_arena();
    test_thread_exit_in_scope();
    test_fork_in_scope();
    test_signal_handler();
    return check_result();
}
