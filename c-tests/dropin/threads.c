/* Many threads allocating and freeing, with blocks freed on other threads
 * than the ones that allocated them, and threads exiting while others
 * allocate. With the argument "background-at-run-time", the main thread
 * also turns on jemalloc's background threads through mallctl while the
 * workers run: jemalloc creates them under its locks, and the allocations
 * inside their pthread_create reach memscope, which may be building
 * jemalloc's mallctl tree for the first time then (docs/DESIGN.md). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define THREADS 8
#define ROUNDS 20000
#define SLOTS 1024

/* A shared board of blocks: each thread swaps its own block into a random
 * slot and frees what it took out, so most frees are cross-thread. */
static void *_Atomic board[SLOTS];

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int valid(const unsigned char *p)
{
    size_t n = *(const size_t *)p;
    for (size_t i = sizeof n; i < n; i++)
        if (p[i] != (unsigned char)n)
            return 0;
    return 1;
}

static void *worker(void *arg)
{
    uint64_t s = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < ROUNDS; i++) {
        size_t n = 16 + next_rand(&s) % ((i % 64 == 0) ? (256 << 10) : 512);
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        if (!p)
            continue;
        memset(p, (unsigned char)n, n);
        *(size_t *)p = n;
        void *old = __atomic_exchange_n(&board[next_rand(&s) % SLOTS], p, __ATOMIC_ACQ_REL);
        if (old) {
            CHECK(valid(old));
            free(old);
        }
    }
    return NULL;
}

static void *short_lived(void *arg)
{
    (void)arg;
    void *p = malloc(1000);
    memset(p, 1, 1000);
    void *q = realloc(p, 5000);
    free(q);
    return NULL;
}

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

int main(int argc, char **argv)
{
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    if (argc > 1 && strcmp(argv[1], "background-at-run-time") == 0) {
        mallctl_fn ctl = (mallctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallctl");
        CHECK(ctl != NULL);
        bool on = true;
        if (ctl)
            CHECK(ctl("background_thread", NULL, NULL, &on, sizeof on) == 0);
    }
    /* Threads that come and go while the workers run. */
    for (int wave = 0; wave < 200; wave++) {
        pthread_t s[4];
        for (int i = 0; i < 4; i++)
            CHECK(pthread_create(&s[i], NULL, short_lived, NULL) == 0);
        for (int i = 0; i < 4; i++)
            pthread_join(s[i], NULL);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        if (board[i]) {
            CHECK(valid(board[i]));
            free(board[i]);
        }
    }
    return check_result();
}
