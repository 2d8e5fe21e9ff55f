/* The NORECLAIM proof. A thread enters NORECLAIM, then installs a
 * per-thread seccomp filter (no TSYNC) that kills the whole process on
 * mmap, munmap, madvise, mprotect, mremap or brk, and runs a mixed
 * workload: 16 B to 1 MiB allocations (malloc, calloc, realloc,
 * posix_memalign, mallocx), memory touched, frees of blocks allocated
 * before the scope (up to 16 MiB, which jemalloc would purge at once),
 * while churn threads allocate, touch and free large blocks and bursts of
 * small ones and trim, to provoke purging.
 *
 *   seccomp_noreclaim scoped     must finish (exit 0)
 *   seccomp_noreclaim unscoped   the same without the scope: must die of
 *                                SIGSYS, or the test proves nothing
 *
 * The scoped thread never exits (glibc's thread exit madvises the stack):
 * main reports and _exits. It also checks that the workload took no page
 * fault (getrusage(RUSAGE_THREAD) minor faults). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
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

#define OPS 200000
#define SLOTS 2048
#define OUTSIDE 64

/* jemalloc's API, from the preloaded shim. */
void *mallocx(size_t size, int flags) __attribute__((weak));
void sdallocx(void *ptr, size_t size, int flags) __attribute__((weak));

static int scoped;
static volatile int done, stop_churn;
static long faults_in_workload = -1;
static int crit_nulls;
static void *outside[OUTSIDE];
static size_t outside_size[OUTSIDE];

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mostly small, some medium, a few up to 1 MiB. */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 1000;
    if (r < 900)
        return 16 + rnd(s) % 1024;
    if (r < 990)
        return 1024 + rnd(s) % (64 << 10);
    return (64 << 10) + rnd(s) % (960 << 10);
}

static void touch(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (unsigned char)i;
    p[n - 1] = 1;
}

static void *critical(void *arg)
{
    (void)arg;
    static void *slot[SLOTS];
    static size_t slot_size[SLOTS];
    uint64_t s = 0x12345678;
    /* Fault in this thread's stack before the measured part. */
    volatile unsigned char stack_warm[64 << 10];
    memset((void *)stack_warm, 0, sizeof stack_warm);
    memset(slot, 0, sizeof slot);
    memset(slot_size, 0, sizeof slot_size);

    unsigned saved = scoped ? memscope_push(MEMSCOPE_NORECLAIM) : 0;
    if (scoped && !(memscope_current() & MEMSCOPE_NORECLAIM)) {
        say("critical: NORECLAIM not in force\n");
        _exit(90);
    }
    if (forbid_reclaim_syscalls() != 0) {
        say("critical: seccomp filter not installed (errno %d)\n", errno);
        _exit(91);
    }
    long faults_before = minor_faults();
    int nulls = 0, freed_outside = 0;
    for (int op = 0; op < OPS; op++) {
        int i = (int)(rnd(&s) % SLOTS);
        if (slot[i]) {
            if (rnd(&s) % 4 == 0) {
                size_t n = pick_size(&s);
                void *q = realloc(slot[i], n);
                if (q) {
                    slot[i] = q;
                    slot_size[i] = n;
                    touch(q, n);
                } else {
                    nulls++;
                }
                continue;
            }
            if (slot_size[i] & 1)
                sdallocx(slot[i], slot_size[i], 0);
            else
                free(slot[i]);
            slot[i] = NULL;
            continue;
        }
        size_t n = pick_size(&s);
        void *p = NULL;
        switch (op % 4) {
        case 0: p = malloc(n); break;
        case 1: p = calloc(1, n); break;
        case 2: if (posix_memalign(&p, 64, n) != 0) p = NULL; break;
        case 3: p = mallocx(n, 0); break;
        }
        if (!p) {
            nulls++;
            continue;
        }
        touch(p, n);
        slot[i] = p;
        slot_size[i] = n;
        if (op % (OPS / OUTSIDE) == 0 && freed_outside < OUTSIDE) {
            free(outside[freed_outside]);
            freed_outside++;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        free(slot[i]);
    faults_in_workload = minor_faults() - faults_before;
    say("critical: %d ops, %d NULLs, %d outside blocks freed in scope, %ld minor faults\n", OPS, nulls,
        freed_outside, faults_in_workload);
    crit_nulls = nulls;
    if (scoped)
        memscope_pop(saved);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (;;)
        pause(); /* never exit: see the header comment */
}

static void *churn(void *arg)
{
    uint64_t s = (uintptr_t)arg + 99;
    while (!__atomic_load_n(&stop_churn, __ATOMIC_ACQUIRE)) {
        size_t n = (1 << 20) + rnd(&s) % (32 << 20);
        unsigned char *big = malloc(n);
        if (big) {
            touch(big, n);
            free(big);
        }
        void *burst[2000];
        for (int i = 0; i < 2000; i++) {
            burst[i] = malloc(16 + rnd(&s) % 4000);
            if (burst[i])
                memset(burst[i], 1, 16);
        }
        for (int i = 0; i < 2000; i++)
            free(burst[i]);
        if (rnd(&s) % 8 == 0)
            malloc_trim(0);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "scoped") && strcmp(argv[1], "unscoped"))) {
        say("usage: %s scoped|unscoped\n", argv[0]);
        return 2;
    }
    scoped = strcmp(argv[1], "scoped") == 0;
    if (scoped && !memscope_loaded()) {
        say("libmemscope.so is not loaded\n");
        return 2;
    }
    /* Blocks from ordinary arenas, freed later inside the scope. */
    uint64_t s = 7;
    for (int i = 0; i < OUTSIDE; i++) {
        outside_size[i] = i % 8 == 0 ? (16u << 20) : pick_size(&s);
        outside[i] = malloc(outside_size[i]);
        touch(outside[i], outside_size[i]);
    }
    pthread_t c1, c2, crit;
    pthread_create(&c1, NULL, churn, (void *)1);
    pthread_create(&c2, NULL, churn, (void *)2);
    pthread_create(&crit, NULL, critical, NULL);
    struct timespec tick = {0, 10 * 1000 * 1000};
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        nanosleep(&tick, NULL);
    __atomic_store_n(&stop_churn, 1, __ATOMIC_RELEASE);
    pthread_join(c1, NULL);
    pthread_join(c2, NULL);
    if (scoped) {
        CHECK_MSG(faults_in_workload == 0, "%ld page faults on the NORECLAIM thread", faults_in_workload);
        /* Service too, not only no syscall: at least 99.5 % of the ops
         * (about two thirds of them allocate) served with the default
         * pool; a scoped thread carves what is not stocked yet. */
        CHECK_MSG(crit_nulls * 200 <= OPS, "%d of %d operations refused in NORECLAIM", crit_nulls, OPS);
    }
    _exit(check_result());
}
