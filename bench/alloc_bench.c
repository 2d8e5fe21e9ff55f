/* alloc_bench: the allocator benchmarks, one mode per run, run by
 * bench/run.sh under each allocator by LD_PRELOAD. Prints one line:
 * "<metric> <value>" (lower is better unless the metric ends in _ops).
 *
 *   pair SIZE N          ns per malloc+free pair of SIZE bytes
 *   scoped-pair SIZE N   the same inside MEMSCOPE_NORECLAIM (memscope only)
 *   realloc N            ns per growth step of realloc 16 B -> 1 MiB
 *   calloc SIZE N        ns per calloc+free pair
 *   pushpop N            ns per memscope_push+memscope_pop pair
 *   lockpair N           ns per uncontended pthread_mutex_lock+unlock pair
 *                        (what libmemscope_locks.so adds to it)
 *   xthread T N          producer/consumer pairs: Mops/s, blocks freed on
 *                        the other thread
 *   rss                  resident KiB of a process that allocated a little
 *                        and never entered a scope
 *   latency MODE SECS    tail latency of a critical thread's free+malloc+
 *                        first touch (MODE: none, noreclaim, nofail) while
 *                        churn threads provoke purges; prints percentiles
 *                        in ns and the noise floor (an empty timed interval);
 *                        with BENCH_HIST=FILE, also the histogram
 *                        ("ns count" lines) for the CCDF plot
 *   tails MODE T SECS    T critical threads (MODE none or noreclaim), each
 *                        timing its malloc (with the first touch of every
 *                        page) and its free separately, with fenced
 *                        timestamps, by request size (up to 4 KiB, 4-64 KiB,
 *                        256 KiB-1 MiB), while 2 churn threads provoke
 *                        purges; prints p99/p99.9/p99.99 in ns per size
 *                        and operation, and the same percentiles of an
 *                        empty timed interval and of a 150 ns busy one
 *   xthread-scoped T N   xthread with the producer inside NORECLAIM and the
 *                        consumer freeing outside any scope (memscope only)
 *   xthread-rss T N      xthread, then the process's peak RSS in KiB
 *   mixed N              one thread replacing random blocks of a working set
 *                        of 4096 (sizes 8-1024 B, skewed small, as
 *                        mimalloc-bench's glibc-simple): ns per free+malloc
 *   server T N           larson-like: T threads replacing random blocks of a
 *                        shared array of 8192 (16-2048 B), most blocks freed
 *                        by another thread than the one that made them:
 *                        Mops/s (one op is a free and a malloc)
 *   server-rss T N       server, then the peak RSS in KiB
 *   spawn N [PROG ARG..] us per posix_spawn+wait of PROG (a path; default
 *                        /bin/true, which makes no allocator call), which
 *                        inherits LD_PRELOAD: start-up cost of an exec
 *                        under the allocator (PROG's stdout: /dev/null)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "../ffi-include/memscope.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keeps the compiler from eliding allocations. */
static void *volatile sink;

static double bench_pair(size_t size, long n)
{
    for (long i = 0; i < n / 10; i++) { /* warm the caches */
        void *p = malloc(size);
        sink = p;
        free(p);
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        void *p = malloc(size);
        sink = p;
        free(p);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static double bench_calloc(size_t size, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        void *p = calloc(1, size);
        sink = p;
        free(p);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static double bench_realloc(long n)
{
    long steps = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        void *p = NULL;
        for (size_t s = 16; s <= (1u << 20); s += s / 2 + 16) {
            p = realloc(p, s);
            ((char *)p)[s - 1] = 1;
            steps++;
        }
        free(p);
    }
    return (now_s() - t0) * 1e9 / (double)steps;
}

static double bench_pushpop(long n)
{
    if (!memscope_loaded())
        return 0;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM); /* first push: setup */
    memscope_pop(s);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        unsigned t = memscope_push(MEMSCOPE_NORECLAIM);
        __asm__ volatile("" ::: "memory");
        memscope_pop(t);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static pthread_mutex_t bench_mutex = PTHREAD_MUTEX_INITIALIZER;

static double bench_lockpair(long n)
{
    pthread_mutex_lock(&bench_mutex); /* the thread's first section: setup */
    pthread_mutex_unlock(&bench_mutex);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&bench_mutex);
        __asm__ volatile("" ::: "memory");
        pthread_mutex_unlock(&bench_mutex);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

/* ---- cross-thread producer/consumer ---------------------------------- */

#define RING 1024
struct ring {
    void *_Atomic slot[RING];
    long n;
};

static void *producer(void *arg)
{
    struct ring *r = arg;
    for (long i = 0; i < r->n; i++) {
        void *p = malloc(16 + (size_t)(i % 32) * 16);
        while (p == NULL) /* NORECLAIM: the pool is being restocked */
            p = malloc(16 + (size_t)(i % 32) * 16);
        while (__atomic_load_n(&r->slot[i % RING], __ATOMIC_ACQUIRE) != NULL)
            __builtin_ia32_pause();
        __atomic_store_n(&r->slot[i % RING], p, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct ring *r = arg;
    for (long i = 0; i < r->n; i++) {
        void *p;
        while ((p = __atomic_load_n(&r->slot[i % RING], __ATOMIC_ACQUIRE)) == NULL)
            __builtin_ia32_pause();
        __atomic_store_n(&r->slot[i % RING], NULL, __ATOMIC_RELEASE);
        free(p);
    }
    return NULL;
}

static int producer_scoped;

static void *producer_maybe_scoped(void *arg)
{
    unsigned s = producer_scoped ? memscope_push(MEMSCOPE_NORECLAIM) : 0;
    producer(arg);
    if (producer_scoped)
        memscope_pop(s);
    return NULL;
}

static double bench_xthread(int pairs, long n)
{
    pthread_t t[64];
    struct ring *rings = calloc((size_t)pairs, sizeof *rings);
    double t0 = now_s();
    for (int i = 0; i < pairs; i++) {
        rings[i].n = n;
        pthread_create(&t[2 * i], NULL, producer_maybe_scoped, &rings[i]);
        pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]);
    }
    for (int i = 0; i < 2 * pairs; i++)
        pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    free(rings);
    return (double)n * pairs / dt / 1e6;
}

/* ---- working sets: one thread, and a shared server array --------------- */

/* xorshift64*, per caller. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dULL;
}

/* Sizes skewed small: half 8-64 B, a quarter 64-256 B, the rest to 1 KiB. */
static size_t skewed_size(uint64_t r)
{
    switch (r & 3) {
    case 0:
    case 1:
        return 8 + (r >> 8) % 57;
    case 2:
        return 64 + (r >> 8) % 193;
    default:
        return 256 + (r >> 8) % 769;
    }
}

#define MIXED_SET 4096
static double bench_mixed(long n)
{
    static void *set[MIXED_SET];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < MIXED_SET; i++)
        set[i] = malloc(skewed_size(next_rand(&x)));
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        uint64_t r = next_rand(&x);
        size_t k = (size_t)(r >> 40) % MIXED_SET;
        free(set[k]);
        set[k] = malloc(skewed_size(r));
        ((char *)set[k])[0] = (char)i;
    }
    double dt = now_s() - t0;
    for (int i = 0; i < MIXED_SET; i++)
        free(set[i]);
    return dt * 1e9 / (double)n;
}

#define SERVER_SET 8192
static void *_Atomic server_set[SERVER_SET];
static long server_n;

static void *server_worker(void *arg)
{
    uint64_t x = 0x2545f4914f6cdd1dULL ^ (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL;
    for (long i = 0; i < server_n; i++) {
        uint64_t r = next_rand(&x);
        void *fresh = malloc(16 + (size_t)(r >> 8) % 2033);
        ((char *)fresh)[0] = (char)i;
        /* Whoever made the block it replaces, it frees it. */
        void *old = __atomic_exchange_n(&server_set[(r >> 40) % SERVER_SET], fresh, __ATOMIC_ACQ_REL);
        free(old);
    }
    return NULL;
}

static double bench_server(int threads, long n)
{
    pthread_t t[64];
    server_n = n;
    for (int i = 0; i < SERVER_SET; i++)
        server_set[i] = malloc(16 + (size_t)i % 2033);
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, server_worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    for (int i = 0; i < SERVER_SET; i++)
        free(server_set[i]);
    return (double)n * threads / dt / 1e6;
}

/* A "Name: N kB" line of /proc/self/status (VmRSS, VmHWM), or -1. */
static long status_kib(const char *format)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, format, &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static long peak_rss_kib(void)
{
    return status_kib("VmHWM: %ld kB");
}

/* ---- start-up: exec under the allocator ------------------------------- */

extern char **environ;

/* `argv`: the program and its arguments, NULL-terminated. Its output goes
 * to /dev/null (a hello-world's lines are not this program's result). */
static double bench_spawn(long n, char **argv)
{
    posix_spawn_file_actions_t quiet;
    if (posix_spawn_file_actions_init(&quiet) != 0 ||
        posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0) != 0)
        return -1;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        pid_t pid;
        if (posix_spawn(&pid, argv[0], &quiet, NULL, argv, environ) != 0)
            return -1;
        int status;
        waitpid(pid, &status, 0);
    }
    double us = (now_s() - t0) * 1e6 / (double)n;
    posix_spawn_file_actions_destroy(&quiet);
    return us;
}

/* ---- tail latency ----------------------------------------------------- */

/* Log-linear histogram: 16 sub-buckets per power of two of cycles. */
#define SUB 16
#define BUCKETS (64 * SUB)
static uint64_t hist[BUCKETS], noise[BUCKETS];
static uint64_t max_cycles, max_noise;

static int bucket_of(uint64_t v)
{
    if (v < SUB)
        return (int)v;
    int lg = 63 - __builtin_clzll(v);
    int sub = (int)((v >> (lg - 4)) & (SUB - 1));
    return (lg - 3) * SUB + sub;
}

static uint64_t bucket_low(int b)
{
    if (b < SUB)
        return (uint64_t)b;
    int lg = b / SUB + 3;
    return ((uint64_t)SUB + (uint64_t)(b % SUB)) << (lg - 4);
}

/* Writes one byte per page of a fresh block: where fresh memory costs a
 * page fault. */
static void touch_pages(char *p, size_t n)
{
    if (p)
        for (size_t off = 0; off < n; off += 4096)
            p[off] = 1;
}

static volatile int stop_churn;

static void *churn(void *arg)
{
    uint64_t s = (uintptr_t)arg * 7919 + 1;
    while (!stop_churn) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        size_t n = (1u << 20) + s % (24u << 20);
        char *big = malloc(n);
        if (big) {
            for (size_t i = 0; i < n; i += 4096)
                big[i] = 1;
            free(big);
        }
        void *burst[4000];
        for (int i = 0; i < 4000; i++)
            burst[i] = malloc(16 + (s + (uint64_t)i) % 2000);
        for (int i = 0; i < 4000; i++)
            free(burst[i]);
    }
    return NULL;
}

static double cycles_per_ns(void)
{
    double t0 = now_s();
    uint64_t c0 = __rdtsc();
    while (now_s() - t0 < 0.05)
        ;
    return (double)(__rdtsc() - c0) / ((now_s() - t0) * 1e9);
}

static double pct(const uint64_t *h, uint64_t total, double q, double cpn)
{
    uint64_t want = (uint64_t)((double)total * q), seen = 0;
    for (int b = 0; b < BUCKETS; b++) {
        seen += h[b];
        if (seen > want)
            return (double)bucket_low(b) / cpn;
    }
    return 0;
}

static void bench_latency(const char *mode, double secs)
{
    unsigned flags = !strcmp(mode, "noreclaim") ? MEMSCOPE_NORECLAIM
                     : !strcmp(mode, "nofail")  ? MEMSCOPE_NOFAIL
                                                : 0;
    if (flags && !memscope_loaded()) {
        printf("skipped (needs libmemscope.so)\n");
        return;
    }
    double cpn = cycles_per_ns();
    pthread_t c[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&c[i], NULL, churn, (void *)i);
    static void *slot[1024];
    uint64_t s = 12345, total = 0, nulls = 0;
    unsigned saved = flags ? memscope_push(flags) : 0;
    double end = now_s() + secs;
    while (now_s() < end) {
        for (int k = 0; k < 1000; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            int i = (int)(s % 1024);
            uint64_t r = (s >> 20) % 1000;
            size_t n = r < 900 ? 16 + r : r < 995 ? 4096 + r * 16 : (256u << 10) + r * 512;
            /* Timed: the free, the malloc, and the first touch of every
             * page, which is where fresh memory costs a page fault. */
            uint64_t t0 = __rdtsc();
            free(slot[i]);
            char *p = malloc(n);
            touch_pages(p, n);
            uint64_t dt = __rdtsc() - t0;
            uint64_t t1 = __rdtsc();
            uint64_t empty = __rdtsc() - t1;
            hist[bucket_of(dt)]++;
            noise[bucket_of(empty)]++;
            if (dt > max_cycles)
                max_cycles = dt;
            if (empty > max_noise)
                max_noise = empty;
            total++;
            slot[i] = p;
            nulls += p == NULL;
        }
    }
    if (flags)
        memscope_pop(saved);
    stop_churn = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    /* The whole distribution, for the CCDF plot (bench/run.py). */
    const char *dump = getenv("BENCH_HIST");
    FILE *hf = dump ? fopen(dump, "w") : NULL;
    for (int b = 0; hf && b < BUCKETS; b++)
        if (hist[b])
            fprintf(hf, "%.1f %llu\n", (double)bucket_low(b) / cpn, (unsigned long long)hist[b]);
    if (hf)
        fclose(hf);
    printf("latency_ns p50 %.0f p99 %.0f p99.9 %.0f p99.99 %.0f max %.0f | noise p99.99 %.0f max %.0f | calls %llu nulls %llu\n",
           pct(hist, total, 0.5, cpn), pct(hist, total, 0.99, cpn), pct(hist, total, 0.999, cpn),
           pct(hist, total, 0.9999, cpn), (double)max_cycles / cpn, pct(noise, total, 0.9999, cpn),
           (double)max_noise / cpn, (unsigned long long)total, (unsigned long long)nulls);
}

/* ---- tails by size, one or more critical threads ----------------------- */

static inline uint64_t fenced_tsc(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}

enum { SIZE_SMALL, SIZE_MEDIUM, SIZE_LARGE, SIZE_KINDS };
enum { OP_MALLOC, OP_FREE, OP_EMPTY, OP_BUSY, OP_CALL, OPS };
struct tails {
    uint64_t h[SIZE_KINDS][OPS][BUCKETS];
    uint64_t n[SIZE_KINDS][OPS];
    unsigned flags;
    double secs;
    int id;
    uint64_t busy_cycles;
};

static void *tails_worker(void *arg)
{
    struct tails *t = arg;
    /* A thread's first scope sets it up: not timed. */
    if (t->flags)
        memscope_pop(memscope_push(t->flags));
    void **slot = calloc(1024, sizeof *slot);
    int *kind = calloc(1024, sizeof *kind);
    uint64_t s = 12345 + (uint64_t)t->id * 7919;
    unsigned saved = t->flags ? memscope_push(t->flags) : 0;
    double end = now_s() + t->secs;
    while (now_s() < end) {
        for (int k = 0; k < 1000; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            int i = (int)(s % 1024);
            uint64_t r = (s >> 20) % 1000;
            int kd = r < 900 ? SIZE_SMALL : r < 990 ? SIZE_MEDIUM : SIZE_LARGE;
            size_t n = kd == SIZE_SMALL    ? 16 + (s >> 40) % 4080
                       : kd == SIZE_MEDIUM ? 4096 + (s >> 40) % (60 << 10)
                                           : (256u << 10) + (s >> 40) % (768u << 10);
            if (slot[i]) {
                uint64_t t0 = fenced_tsc();
                free(slot[i]);
                uint64_t dt = fenced_tsc() - t0;
                t->h[kind[i]][OP_FREE][bucket_of(dt)]++;
                t->n[kind[i]][OP_FREE]++;
            }
            uint64_t t0 = fenced_tsc();
            char *p = malloc(n);
            uint64_t call = fenced_tsc() - t0;
            touch_pages(p, n);
            uint64_t dt = fenced_tsc() - t0;
            uint64_t t1 = fenced_tsc();
            uint64_t empty = fenced_tsc() - t1;
            /* A busy interval as long as a small malloc's median: its tail
             * is what interrupts and preemption alone put into intervals
             * that long (an empty one is too short to be hit as often). */
            uint64_t t2 = fenced_tsc(), busy;
            while ((busy = fenced_tsc() - t2) < t->busy_cycles)
                ;
            t->h[kd][OP_BUSY][bucket_of(busy)]++;
            t->n[kd][OP_BUSY]++;
            if (p) {
                t->h[kd][OP_MALLOC][bucket_of(dt)]++;
                t->n[kd][OP_MALLOC]++;
                t->h[kd][OP_CALL][bucket_of(call)]++;
                t->n[kd][OP_CALL]++;
            }
            t->h[kd][OP_EMPTY][bucket_of(empty)]++;
            t->n[kd][OP_EMPTY]++;
            slot[i] = p;
            kind[i] = kd;
        }
    }
    for (int i = 0; i < 1024; i++)
        free(slot[i]);
    if (t->flags)
        memscope_pop(saved);
    free(slot);
    free(kind);
    return NULL;
}

static void bench_tails(const char *mode, int threads, double secs)
{
    unsigned flags = !strcmp(mode, "noreclaim") ? MEMSCOPE_NORECLAIM : 0;
    if (flags && !memscope_loaded()) {
        printf("skipped (needs libmemscope.so)\n");
        return;
    }
    double cpn = cycles_per_ns();
    pthread_t c[2], w[16];
    struct tails *t = calloc((size_t)threads, sizeof *t);
    for (long i = 0; i < 2; i++)
        pthread_create(&c[i], NULL, churn, (void *)i);
    for (int i = 0; i < threads; i++) {
        t[i].flags = flags;
        t[i].secs = secs;
        t[i].id = i;
        t[i].busy_cycles = (uint64_t)(150 * cpn);
        pthread_create(&w[i], NULL, tails_worker, &t[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(w[i], NULL);
    stop_churn = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    static uint64_t all[SIZE_KINDS][OPS][BUCKETS];
    uint64_t n[SIZE_KINDS][OPS] = {{0}};
    for (int i = 0; i < threads; i++)
        for (int k = 0; k < SIZE_KINDS; k++)
            for (int o = 0; o < OPS; o++) {
                n[k][o] += t[i].n[k][o];
                for (int b = 0; b < BUCKETS; b++)
                    all[k][o][b] += t[i].h[k][o][b];
            }
    static const char *kname[] = {"small", "medium", "large"}, *oname[] = {"malloc", "free", "empty", "busy150", "call"};
    printf("tails_ns");
    for (int k = 0; k < SIZE_KINDS; k++)
        for (int o = 0; o < OPS; o++)
            printf(" %s.%s %.0f/%.0f/%.0f", kname[k], oname[o], pct(all[k][o], n[k][o], 0.99, cpn),
                   pct(all[k][o], n[k][o], 0.999, cpn), pct(all[k][o], n[k][o], 0.9999, cpn));
    printf("\n");
    free(t);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: see the comment at the top of alloc_bench.c\n");
        return 2;
    }
    const char *m = argv[1];
    if (!strcmp(m, "pair") && argc == 4)
        printf("pair_ns %.2f\n", bench_pair((size_t)atol(argv[2]), atol(argv[3])));
    else if (!strcmp(m, "scoped-pair") && argc == 4) {
        if (!memscope_loaded()) {
            printf("skipped\n");
            return 0;
        }
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
        double ns = bench_pair((size_t)atol(argv[2]), atol(argv[3]));
        memscope_pop(s);
        printf("scoped_pair_ns %.2f\n", ns);
    } else if (!strcmp(m, "calloc") && argc == 4)
        printf("calloc_ns %.2f\n", bench_calloc((size_t)atol(argv[2]), atol(argv[3])));
    else if (!strcmp(m, "realloc") && argc == 3)
        printf("realloc_step_ns %.2f\n", bench_realloc(atol(argv[2])));
    else if (!strcmp(m, "pushpop") && argc == 3)
        printf("pushpop_ns %.2f\n", bench_pushpop(atol(argv[2])));
    else if (!strcmp(m, "lockpair") && argc == 3)
        printf("lockpair_ns %.2f\n", bench_lockpair(atol(argv[2])));
    else if (!strcmp(m, "xthread") && argc == 4)
        printf("xthread_mops %.2f\n", bench_xthread(atoi(argv[2]), atol(argv[3])));
    else if (!strcmp(m, "xthread-scoped") && argc == 4) {
        if (!memscope_loaded()) {
            printf("skipped\n");
            return 0;
        }
        producer_scoped = 1;
        printf("xthread_scoped_mops %.2f\n", bench_xthread(atoi(argv[2]), atol(argv[3])));
    } else if (!strcmp(m, "xthread-rss") && argc == 4) {
        bench_xthread(atoi(argv[2]), atol(argv[3]));
        printf("peak_rss_kib %ld\n", peak_rss_kib());
    } else if (!strcmp(m, "mixed") && argc == 3)
        printf("mixed_ns %.2f\n", bench_mixed(atol(argv[2])));
    else if (!strcmp(m, "server") && argc == 4)
        printf("server_mops %.2f\n", bench_server(atoi(argv[2]), atol(argv[3])));
    else if (!strcmp(m, "server-rss") && argc == 4) {
        bench_server(atoi(argv[2]), atol(argv[3]));
        printf("peak_rss_kib %ld\n", peak_rss_kib());
    } else if (!strcmp(m, "spawn") && argc >= 3) {
        char *true_argv[] = {"/bin/true", NULL};
        printf("spawn_us %.1f\n", bench_spawn(atol(argv[2]), argc > 3 ? argv + 3 : true_argv));
    }
    else if (!strcmp(m, "tails") && argc == 5)
        bench_tails(argv[2], atoi(argv[3]), atof(argv[4]));
    else if (!strcmp(m, "rss") && argc == 2) {
        for (int i = 0; i < 1000; i++)
            sink = malloc(64);
        printf("rss_kib %ld\n", status_kib("VmRSS: %ld kB"));
    } else if (!strcmp(m, "latency") && argc == 4)
        bench_latency(argv[2], atof(argv[3]));
    else {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    return 0;
}
