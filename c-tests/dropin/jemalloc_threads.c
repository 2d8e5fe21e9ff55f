/* Under the preload, a program's threads get the per-thread state plain
 * jemalloc would give them, whatever memscope does for its own purposes:
 *
 * - arenas: the program's k-th thread gets arena k, as under jemalloc.
 *   memscope's maintenance thread must not hold an arena of its own, or
 *   every program thread lands one arena further and the program spreads
 *   over one more arena's worth of slabs and dirty pages;
 * - a thread that only frees keeps jemalloc's minimal per-thread state, no
 *   tcache: its frees go straight back to the bins. memscope reads the
 *   thread's byte counters, and asking jemalloc for them by mallctl would
 *   give the thread a tcache that holds what it frees (xmalloc's releaser
 *   threads: 1.8x jemalloc's peak RSS).
 *
 * Linked against libjemalloc.so.2 for mallctl's symbol: run without the
 * preload it checks that plain jemalloc behaves as claimed.
 * Needs narenas >= 3 (run with MALLOC_CONF=narenas:8). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/* A size class whose tcache bin holds 20 blocks (its slab has 8 regions),
 * and that nothing else in the process is likely to free meanwhile. */
#define BLOCK 2560
#define FREES 16

static pthread_barrier_t started, release;

static unsigned my_arena(void)
{
    unsigned a = 0;
    size_t len = sizeof a;
    CHECK(mallctl("thread.arena", &a, &len, NULL, 0) == 0);
    return a;
}

static void *holder(void *arg)
{
    void *volatile p = malloc(64);
    *(unsigned *)arg = my_arena();
    free(p);
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&release);
    return NULL;
}

static unsigned start_holder(pthread_t *t)
{
    unsigned arena = ~0u;
    CHECK(pthread_create(t, NULL, holder, &arena) == 0);
    pthread_barrier_wait(&started);
    return arena;
}

static void arenas_follow_thread_order(void)
{
    void *volatile p = malloc(64);
    free(p);
    unsigned main_arena = my_arena();
    pthread_t a, b;
    pthread_barrier_init(&release, NULL, 3);
    unsigned first = start_holder(&a);
    unsigned second = start_holder(&b);
    CHECK_MSG(main_arena == 0 && first == 1 && second == 2,
              "arenas: main %u, first thread %u, second %u (wanted 0, 1, 2)\n", main_arena, first, second);
    pthread_barrier_wait(&release);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&release);
}

static unsigned bin_of(size_t size)
{
    unsigned nbins = 0;
    size_t len = sizeof nbins;
    CHECK(mallctl("arenas.nbins", &nbins, &len, NULL, 0) == 0);
    for (unsigned j = 0; j < nbins; j++) {
        char name[64];
        snprintf(name, sizeof name, "arenas.bin.%u.size", j);
        size_t s = 0;
        len = sizeof s;
        if (mallctl(name, &s, &len, NULL, 0) == 0 && s == size)
            return j;
    }
    CHECK_MSG(0, "no bin of %zu bytes\n", size);
    return 0;
}

/* Frees reaching the bins of every arena for blocks of `bin`. */
static uint64_t bin_frees(unsigned bin)
{
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    CHECK(mallctl("epoch", &epoch, &len, &epoch, len) == 0);
    char name[96];
    snprintf(name, sizeof name, "stats.arenas.4096.bins.%u.ndalloc", bin);
    uint64_t n = 0;
    len = sizeof n;
    CHECK(mallctl(name, &n, &len, NULL, 0) == 0);
    return n;
}

static void *blocks[FREES + 1];

static void *releaser(void *arg)
{
    (void)arg;
    free(blocks[0]);
    /* What makes memscope learn this thread's byte counters at once;
     * otherwise a sampled call or the exit does. */
    memscope_stats_flush();
    for (int i = 1; i <= FREES; i++)
        free(blocks[i]);
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&release);
    return NULL;
}

static void free_only_thread_has_no_tcache(void)
{
    unsigned bin = bin_of(BLOCK);
    for (int i = 0; i <= FREES; i++)
        blocks[i] = malloc(BLOCK);
    uint64_t before = bin_frees(bin);
    pthread_t t;
    pthread_barrier_init(&release, NULL, 2);
    CHECK(pthread_create(&t, NULL, releaser, NULL) == 0);
    pthread_barrier_wait(&started);
    /* The releaser is alive (a tcache would still hold its frees). */
    uint64_t reached = bin_frees(bin) - before;
    CHECK_MSG(reached >= FREES, "%llu of %d frees reached the bins: the freeing thread has a tcache\n",
              (unsigned long long)reached, FREES + 1);
    pthread_barrier_wait(&release);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&release);
}

int main(void)
{
    pthread_barrier_init(&started, NULL, 2);
    /* First: its first thread is the one that starts memscope's
     * maintenance thread (and gets a tcache doing so). */
    arenas_follow_thread_order();
    free_only_thread_has_no_tcache();
    return check_failures;
}
