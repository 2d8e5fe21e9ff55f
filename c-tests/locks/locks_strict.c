/* locks_strict: the NORECLAIM claim for lock sections, under the strict
 * filter.
 *
 * usage: locks_strict [OPS]      (MEMSCOPE_LOCK_SCOPE=noreclaim)
 *
 * A worker thread takes its mutex once (its first section sets the thread
 * up, as a first push does), then installs a seccomp filter that kills the
 * process on every system call except write(2) and exit_group(2), and runs
 * OPS (default 100,000) sections: it takes the mutex (uncontended: no
 * futex call), then allocates, reallocates and frees blocks of 16 B to
 * 256 KiB (kept across sections too, so that sections free what earlier
 * ones made) and releases the mutex. It never calls memscope's API: only
 * the lock makes its allocations NORECLAIM ones. Every request must be
 * served (a NULL fails the test); every block carries a pattern checked
 * when it is freed. Meanwhile a churn thread (unfiltered) makes jemalloc
 * map, purge and unmap. Then the worker publishes its results and spins;
 * main checks them and the lock block's exact counts and exits.
 *
 * With MEMSCOPE_LOCK_SCOPE=report the same worker must die of SIGSYS (the
 * control: the filter bites, and report mode changes nothing). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "seccomp.h"
#include "segment_find.h"

#define KEPT 128

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long ops = 100000;
static volatile int done, stop_churn;
static volatile long refused, corrupt, sections, allocs, frees;
static uint64_t bytes;

static size_t pick(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    unsigned r = (unsigned)(*x % 100);
    size_t cap = r < 90 ? 4096 : r < 99 ? 65536 : 262144;
    return 16 + (size_t)((*x >> 20) % cap);
}

static void fill(unsigned char *p, size_t n, unsigned char seed)
{
    size_t k = n < 64 ? n : 64;
    memset(p, seed, k);
    memset(p + n - k, seed, k);
}

static int intact(const unsigned char *p, size_t n, unsigned char seed)
{
    size_t k = n < 64 ? n : 64;
    for (size_t i = 0; i < k; i++)
        if (p[i] != seed || p[n - k + i] != seed)
            return 0;
    return 1;
}

static void *worker(void *arg)
{
    (void)arg;
    /* The thread's first section, outside the filter: its set-up. */
    pthread_mutex_lock(&mu);
    free(malloc(64));
    pthread_mutex_unlock(&mu);
    static const long allowed[] = {SYS_write, SYS_exit_group};
    if (allow_only_syscalls(allowed, 2) != 0) {
        say("seccomp filter not installed\n");
        _exit(3);
    }
    unsigned char *kept[KEPT] = {0};
    size_t size[KEPT] = {0};
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (long i = 0; i < ops; i++) {
        pthread_mutex_lock(&mu);
        sections++;
        for (int k = 0; k < 3; k++) {
            unsigned j = (unsigned)((x >> 33) % KEPT);
            if (kept[j]) {
                if (!intact(kept[j], size[j], (unsigned char)j))
                    corrupt++;
                if ((x & 7) == 0) {
                    size_t n = pick(&x);
                    unsigned char *q = realloc(kept[j], n);
                    allocs++;
                    bytes += n;
                    if (!q) {
                        refused++;
                        continue;
                    }
                    kept[j] = q;
                    size[j] = n;
                    fill(q, n, (unsigned char)j);
                    continue;
                }
                free(kept[j]);
                frees++;
                kept[j] = NULL;
            }
            size_t n = pick(&x);
            unsigned char *p = malloc(n);
            allocs++;
            bytes += n;
            if (!p) {
                refused++;
                continue;
            }
            fill(p, n, (unsigned char)j);
            kept[j] = p;
            size[j] = n;
        }
        pthread_mutex_unlock(&mu);
    }
    done = 1;
    for (;;)
        ;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!stop_churn) {
        void *p = malloc(8 << 20);
        if (p)
            memset(p, 1, 1 << 20);
        free(p);
        malloc_trim(0);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        ops = strtol(argv[1], NULL, 10);
    free(malloc(1));
    const struct memscope_stats_header *h = segment();
    pthread_t w, c;
    pthread_create(&c, NULL, churn, NULL);
    pthread_create(&w, NULL, worker, NULL);
    while (!done)
        usleep(1000);
    stop_churn = 1;
    pthread_join(c, NULL);
    CHECK_MSG(refused == 0, "%ld of %ld requests under the lock refused", refused, allocs);
    CHECK_MSG(corrupt == 0, "%ld blocks overwritten", corrupt);
    uint64_t s = 0, a = 0, f = 0, b = 0;
    for (uint32_t i = 0; h && i < h->slot_count; i++) {
        const struct memscope_lock_stats *l =
            (const void *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size);
        s += l->sections;
        a += l->allocs;
        f += l->frees;
        b += l->alloc_bytes;
    }
    /* The worker's set-up section (one malloc(64), one free) comes on top. */
    CHECK_MSG(s == (uint64_t)sections + 1 && a == (uint64_t)allocs + 1 && f == (uint64_t)frees + 1 &&
                  b == bytes + 64,
              "lock blocks: %lu sections (want %ld), %lu allocs (%ld), %lu frees (%ld), %lu bytes (%lu)",
              (unsigned long)s, sections + 1, (unsigned long)a, allocs + 1, (unsigned long)f, frees + 1,
              (unsigned long)b, (unsigned long)bytes + 64);
    say("locks_strict: %ld sections, %ld allocations (%lu bytes), %ld frees, none refused\n", sections, allocs,
        (unsigned long)bytes, frees);
    exit(check_result());
}
