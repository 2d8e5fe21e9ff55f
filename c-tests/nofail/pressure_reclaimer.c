/* pressure_reclaimer: a daemon with a cache and a reclaimer, for
 * c-tests/nofail/cgroup.sh. It keeps 16 blocks of 1 MiB as a cache that its
 * reclaimer drops, prints "ready", and waits (at most SECS seconds) for
 * the maintenance thread to call the reclaimer because of memory
 * pressure; it prints how long that took ("reclaimer called"), or that it
 * was not called, then waits for stdin to close (so that its stats can be
 * read). Exit 0 if called, 1 if not.
 *
 *   pressure_reclaimer SECS
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

#define CACHE_BLOCKS 16
static void *cache[CACHE_BLOCKS];
static atomic_int calls;

static size_t drop_cache(size_t want, void *arg)
{
    (void)arg;
    size_t freed = 0;
    for (int i = 0; i < CACHE_BLOCKS && freed < want; i++) {
        if (cache[i]) {
            free(cache[i]);
            cache[i] = NULL;
            freed += 1 << 20;
        }
    }
    atomic_fetch_add(&calls, 1);
    return freed;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    double limit = atof(argv[1]);
    for (int i = 0; i < CACHE_BLOCKS; i++) {
        cache[i] = malloc(1 << 20);
        CHECK(cache[i] != NULL);
        memset(cache[i], 1, 1 << 20);
    }
    CHECK(memscope_reclaimer_register("cache", drop_cache, NULL, 0) > 0);
    printf("ready\n");
    fflush(stdout);
    double t0 = now_s();
    while (now_s() - t0 < limit) {
        if (atomic_load(&calls) > 0)
            break;
        usleep(50000);
    }
    int called = atomic_load(&calls) > 0;
    if (called)
        printf("reclaimer called %d time(s) after %.1f s\n", atomic_load(&calls), now_s() - t0);
    else
        printf("no reclaimer call in %.0f s\n", limit);
    fflush(stdout);
    while (getchar() != EOF)
        ;
    return called ? 0 : 1;
}
