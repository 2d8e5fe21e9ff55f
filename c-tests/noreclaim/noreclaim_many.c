/* noreclaim_many: many scoped threads on the default pool, each holding at
 * most one small block, must all be served.
 *
 * usage: noreclaim_many THREADS [ROUNDS]
 *
 * A second after the pool is made, THREADS threads (300 in its run.sh)
 * each set up their scope (one push and pop, as at thread start), wait for
 * all the others, then alternate malloc(32..231) and free inside NORECLAIM
 * ROUNDS times (500). Per-thread lists could strand the pool across so
 * many threads; the depot, slow start and the restock must keep every
 * request served: the test fails on any NULL. A second wave of as many
 * new threads follows the first (whose threads exited: their lists went
 * back to the depot) and must be served as well. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

static int rounds = 500;
static pthread_barrier_t start;
static _Atomic long nulls, served;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    pthread_barrier_wait(&start);
    long my_nulls = 0;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < rounds; i++) {
        size_t size = 32 + rand_r(&seed) % 200;
        volatile char *p = malloc(size);
        if (!p) {
            my_nulls++;
            continue;
        }
        p[0] = 1;
        p[size - 1] = 2;
        free((void *)p);
    }
    memscope_pop(s);
    nulls += my_nulls;
    served += rounds - my_nulls;
    return NULL;
}

static void wave(int n)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    CHECK(t != NULL);
    CHECK(pthread_barrier_init(&start, NULL, (unsigned)n) == 0);
    for (int i = 0; i < n; i++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 << 10);
        CHECK(pthread_create(&t[i], &a, worker, (void *)(uintptr_t)(i + 1)) == 0);
        pthread_attr_destroy(&a);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    free(t);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (argc > 2)
        rounds = atoi(argv[2]);
    CHECK(memscope_loaded());
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM)); /* make the pool */
    sleep(1);
    wave(n);
    long first = nulls;
    wave(n);
    CHECK_MSG(nulls == 0, "%ld NULLs in the first wave, %ld in the second, of %d x %d", first, nulls - first, n,
              rounds);
    say("noreclaim_many: 2 waves of %d scoped threads x %d malloc+free: %ld served, %ld NULL\n", n, rounds,
        (long)served, (long)nulls);
    return check_result();
}
