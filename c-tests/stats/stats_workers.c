/* stats_workers: programs whose allocator calls are known exactly, for
 * c-tests/stats/run.sh to compare with what memscope-stat reads from
 * their live stats segment.
 *
 *   live T N M      T threads named worker-<i>, each: N malloc+free pairs
 *                   inside NOFAIL, M inside NORECLAIM, one flush; then
 *                   they wait. Prints "ready" and waits for stdin to close.
 *   churn T K C     T short-lived threads (at most 64 at once), each K
 *                   malloc+free pairs inside NOFAIL; then C threads alive at
 *                   once (more than the slots: some overflow), each K pairs;
 *                   prints "ready" after all exited, waits for stdin.
 *   hammer SECS     two threads allocating in every context until SECS
 *                   passed; prints "ready" at the start.
 *   fork            the child gets its own segment: prints "child <pid>"
 *                   and "ready"; both wait for stdin.
 *   bystanders N    N threads, one after another, that never call the
 *                   allocator themselves (glibc still frees for them as
 *                   they exit); prints "ready", waits for stdin.
 *   exited N        two workers, each N mallocs kept (worker-plain
 *                   outside any scope, worker-noreclaim inside NORECLAIM),
 *                   both exit before "ready"; waits for stdin.
 *   idle N M        worker-idle makes N plain malloc+free pairs and M
 *                   inside NORECLAIM, then waits without flushing; prints
 *                   "ready" once it is idle, waits for stdin.
 *   alternate N     worker-alt alternates a NORECLAIM and a NOFAIL
 *                   malloc+free, N of each; prints "ready", waits.
 *   held N US       worker-held enters N outermost NORECLAIM scopes, each
 *                   held US microseconds (a malloc, a nested NORECLAIM
 *                   scope, a busy wait, a free), and N NOFAIL-only
 *                   scopes; prints "ready", waits for stdin.
 *   stall           worker-stall waits in a NOFAIL request of 12345 bytes
 *                   that cannot be served (run with MEMSCOPE_RESERVE=0 and
 *                   a deadline); prints "ready" while it waits; after
 *                   stdin closes, waits for it to give up
 *   contend SECS    four threads allocating and freeing as fast as they can
 *                   on one arena without caches (run with
 *                   MALLOC_CONF=narenas:1,tcache:false) while a fifth runs
 *                   the same loop inside NORECLAIM, for SECS; then waits
 *                   for the maintenance thread's lock-wait refresh, prints
 *                   "ready", waits for stdin
 *   bytes T K       T threads named bytes-<i>, each K+i*100 plain mallocs
 *                   of 64 B, freed, then bytes-freer freeing K blocks the
 *                   main thread made; each reads jemalloc's own
 *                   thread.allocated and thread.deallocated, flushes and
 *                   waits; prints "<name> <allocated> <deallocated>" per
 *                   thread and "ready", waits for stdin.
 *   events          makes each timed slow event happen: NOFAIL failures
 *                   (injected) that run a reclaimer, malloc_trim, and
 *                   NORECLAIM use deep enough to make the pool refill;
 *                   prints "ready", waits for stdin.
 *   shapes N        the shapes of threads users have, none touching the
 *                   API: a thread making N malloc+free pairs, joined; the
 *                   same detached; two threads keeping N blocks of 32 to
 *                   2,031 B, one inside NORECLAIM (push and pop found with
 *                   dlsym); a thread whose key destructors make N/100 pairs
 *                   over two destructor rounds. All exit within
 *                   milliseconds, before "ready"; prints what they did
 *                   ("expect ...") and "ready"; waits for stdin.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

static void *volatile sink; /* keeps allocations from being elided */
static int n_pairs, m_pairs;
static pthread_barrier_t started;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void pairs(unsigned flags, int n)
{
    unsigned saved = memscope_push(flags);
    for (int i = 0; i < n; i++) {
        void *p = malloc(16 + (size_t)(i % 200));
        CHECK(p != NULL);
        sink = p;
        free(p);
    }
    memscope_pop(saved);
}

static void wait_gate(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void *live_worker(void *arg)
{
    char name[16];
    snprintf(name, sizeof name, "worker-%d", (int)(long)arg);
    pthread_setname_np(pthread_self(), name);
    pairs(MEMSCOPE_NOFAIL, n_pairs);
    pairs(MEMSCOPE_NORECLAIM, m_pairs);
    memscope_stats_flush();
    pthread_barrier_wait(&started);
    wait_gate();
    return NULL;
}

static void wait_stdin(void)
{
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
}

static void ready(void)
{
    printf("ready\n");
    fflush(stdout);
}

static int live(int t, int n, int m)
{
    n_pairs = n;
    m_pairs = m;
    pthread_t *th = calloc((size_t)t, sizeof *th);
    CHECK(th != NULL);
    pthread_barrier_init(&started, NULL, (unsigned)t + 1);
    for (long i = 0; i < t; i++)
        CHECK(pthread_create(&th[i], NULL, live_worker, (void *)i) == 0);
    pthread_barrier_wait(&started);
    ready();
    wait_stdin();
    open_gate();
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    free(th);
    return 0;
}

static void *churn_worker(void *arg)
{
    (void)arg;
    pairs(MEMSCOPE_NOFAIL, n_pairs);
    return NULL;
}

static void *crowd_worker(void *arg)
{
    (void)arg;
    pairs(MEMSCOPE_NOFAIL, n_pairs);
    pthread_barrier_wait(&started); /* all alive at once */
    return NULL;
}

static int churn(int t, int k, int crowd)
{
    n_pairs = k;
    pthread_t th[64];
    for (int done = 0; done < t;) {
        int batch = t - done < 64 ? t - done : 64;
        for (int i = 0; i < batch; i++)
            CHECK(pthread_create(&th[i], NULL, churn_worker, NULL) == 0);
        for (int i = 0; i < batch; i++)
            pthread_join(th[i], NULL);
        done += batch;
    }
    pthread_t *c = calloc((size_t)crowd, sizeof *c);
    CHECK(c != NULL);
    pthread_barrier_init(&started, NULL, (unsigned)crowd);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    for (int i = 0; i < crowd; i++)
        CHECK(pthread_create(&c[i], &attr, crowd_worker, NULL) == 0);
    for (int i = 0; i < crowd; i++)
        pthread_join(c[i], NULL);
    free(c);
    ready();
    wait_stdin();
    return 0;
}

static volatile int stop;

static void *hammer_worker(void *arg)
{
    unsigned ctx[] = {0, MEMSCOPE_NORECLAIM, MEMSCOPE_NOFAIL};
    unsigned i = (unsigned)(long)arg;
    while (!stop) {
        unsigned saved = memscope_push(ctx[i++ % 3]);
        void *p = malloc(32 + i % 4000);
        sink = p;
        p = realloc(p, 64 + i % 9000);
        sink = p;
        free(p);
        memscope_pop(saved);
    }
    return NULL;
}

static int hammer(int secs)
{
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, hammer_worker, (void *)i) == 0);
    ready();
    sleep((unsigned)secs);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    return 0;
}

static int forked(void)
{
    pairs(MEMSCOPE_NOFAIL, 100);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pairs(MEMSCOPE_NOFAIL, 7);
        memscope_stats_flush();
        printf("child %d\n", (int)getpid());
        ready();
        wait_stdin();
        exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static size_t give_back(size_t want, void *arg)
{
    (void)arg;
    return want; /* pretend: the test only needs the call */
}

static int events(void)
{
    int id = memscope_reclaimer_register("stats test", give_back, NULL, 0);
    CHECK(id > 0);
    memscope_test_fail_next(3);
    {
        MEMSCOPE_SCOPE(MEMSCOPE_NOFAIL);
        void *p = malloc(1000);
        CHECK(p != NULL);
        free(p);
    }
    memscope_reclaimer_unregister(id);
    malloc_trim(0);
    /* 28 MiB held inside NORECLAIM from a 32 MiB pool: below the low
     * watermark, so the maintenance thread refills. */
    static void *blocks[28];
    {
        MEMSCOPE_SCOPE(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        for (int i = 0; i < 28; i++)
            blocks[i] = malloc(1 << 20);
    }
    usleep(300 * 1000);
    for (int i = 0; i < 28; i++)
        free(blocks[i]);
    memscope_stats_flush();
    ready();
    wait_stdin();
    return 0;
}

static void *bystander(void *arg)
{
    (void)arg;
    return NULL;
}

static int bystanders(int n)
{
    /* pthread_create and join allocate on this thread, never on theirs. */
    for (int i = 0; i < n; i++) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, bystander, NULL) == 0);
        CHECK(pthread_join(th, NULL) == 0);
    }
    ready();
    wait_stdin();
    return 0;
}

static void *keeper(void *arg)
{
    unsigned flags = (unsigned)(long)arg;
    pthread_setname_np(pthread_self(), flags ? "worker-noreclaim" : "worker-plain");
    void **kept = calloc((size_t)n_pairs, sizeof *kept);
    CHECK(kept != NULL);
    unsigned saved = memscope_push(flags);
    for (int i = 0; i < n_pairs; i++) {
        kept[i] = malloc(64 + (size_t)(i % 64));
        CHECK(kept[i] != NULL);
    }
    memscope_pop(saved);
    sink = kept; /* kept (leaked) on purpose: no frees to count */
    return NULL;
}

static int exited(int n)
{
    n_pairs = n;
    pthread_t th[2];
    CHECK(pthread_create(&th[0], NULL, keeper, (void *)0L) == 0);
    CHECK(pthread_create(&th[1], NULL, keeper, (void *)(long)MEMSCOPE_NORECLAIM) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    ready();
    wait_stdin();
    return 0;
}

static void *idle_worker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "worker-idle");
    for (int i = 0; i < n_pairs; i++) {
        void *p = malloc(16 + (size_t)(i % 200));
        sink = p;
        free(p);
    }
    pairs(MEMSCOPE_NORECLAIM, m_pairs);
    /* No memscope_stats_flush(): the counts must reach the segment anyway. */
    pthread_barrier_wait(&started);
    wait_gate();
    return NULL;
}

/* Runs `worker` on one thread until it has done its calls and waits at
 * the gate; prints "ready", waits for stdin to close, lets it finish. */
static int one_worker(void *(*worker)(void *))
{
    pthread_t th;
    pthread_barrier_init(&started, NULL, 2);
    CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
    pthread_barrier_wait(&started);
    ready();
    wait_stdin();
    open_gate();
    pthread_join(th, NULL);
    return 0;
}

static int idle(int n, int m)
{
    n_pairs = n;
    m_pairs = m;
    return one_worker(idle_worker);
}

static void *alternate_worker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "worker-alt");
    for (int i = 0; i < n_pairs; i++) {
        pairs(MEMSCOPE_NORECLAIM, 1);
        pairs(MEMSCOPE_NOFAIL, 1);
    }
    pthread_barrier_wait(&started);
    wait_gate();
    return NULL;
}

static int alternate(int n)
{
    n_pairs = n;
    return one_worker(alternate_worker);
}

static long held_us;

static void busy_wait_us(long us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

static void *held_worker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "worker-held");
    for (int i = 0; i < n_pairs; i++) {
        unsigned outer = memscope_push(MEMSCOPE_NORECLAIM);
        void *p = malloc(64);
        CHECK(p != NULL);
        sink = p;
        pairs(MEMSCOPE_NORECLAIM, 1); /* nested: not a scope of its own */
        busy_wait_us(held_us);
        free(p);
        memscope_pop(outer);
        pairs(MEMSCOPE_NOFAIL, 1); /* not NORECLAIM: not counted */
    }
    pthread_barrier_wait(&started);
    wait_gate();
    return NULL;
}

static int held(int n, long us)
{
    n_pairs = n;
    held_us = us;
    return one_worker(held_worker);
}

static volatile int stalling;

static void *stall_worker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "worker-stall");
    free(malloc(1)); /* its slot first */
    memscope_test_fail_next(1ul << 40);
    stalling = 1;
    unsigned saved = memscope_push(MEMSCOPE_NOFAIL);
    sink = malloc(12345);
    memscope_pop(saved);
    memscope_test_fail_next(0);
    return NULL;
}

static int stall(void)
{
    pthread_t th;
    CHECK(pthread_create(&th, NULL, stall_worker, NULL) == 0);
    while (!stalling)
        usleep(1000);
    usleep(300 * 1000);
    ready();
    wait_stdin();
    pthread_join(th, NULL);
    return 0;
}

static volatile int contend_stop;

static void *contend_worker(void *arg)
{
    unsigned flags = (unsigned)(uintptr_t)arg;
    pthread_setname_np(pthread_self(), flags ? "worker-scoped" : "worker-plain");
    if (flags)
        memscope_pop(memscope_push(flags)); /* set up outside the loop */
    unsigned saved = flags ? memscope_push(flags) : 0;
    unsigned seed = 7;
    while (!contend_stop) {
        void *p[16];
        for (int i = 0; i < 16; i++)
            p[i] = malloc(16 + (size_t)(rand_r(&seed) % 4000));
        for (int i = 0; i < 16; i++)
            free(p[i]);
    }
    if (flags)
        memscope_pop(saved);
    return NULL;
}

static int contend(int secs)
{
    pthread_t t[5];
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM)); /* the maintenance thread */
    for (int i = 0; i < 5; i++)
        CHECK(pthread_create(&t[i], NULL, contend_worker, (void *)(uintptr_t)(i == 4 ? MEMSCOPE_NORECLAIM : 0)) ==
              0);
    sleep((unsigned)secs);
    contend_stop = 1;
    for (int i = 0; i < 5; i++)
        pthread_join(t[i], NULL);
    sleep(2); /* a lock-wait refresh after the work */
    ready();
    wait_stdin();
    return 0;
}

/* ---- bytes: each thread's byte counts equal jemalloc's own ------------ */

#define BYTES_MAX_THREADS 16
struct bytes_worker {
    char name[16];
    int blocks;
    void **given; /* blocks to free, made by another thread */
    uint64_t allocated, deallocated;
};

static uint64_t jemalloc_counter(const char *name)
{
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "mallctl");
    memcpy(&mallctl, &sym, sizeof sym); /* ISO C has no object-to-function cast */
    uint64_t v = 0;
    size_t len = sizeof v;
    CHECK(mallctl != NULL && mallctl(name, &v, &len, NULL, 0) == 0);
    return v;
}

static void *bytes_worker(void *arg)
{
    struct bytes_worker *w = arg;
    pthread_setname_np(pthread_self(), w->name);
    if (w->given) {
        for (int i = 0; i < w->blocks; i++)
            free(w->given[i]);
    } else {
        void *blocks[2000];
        for (int i = 0; i < w->blocks; i++)
            sink = blocks[i] = malloc(64);
        for (int i = 0; i < w->blocks; i++)
            free(blocks[i]);
    }
    /* Read, then publish: nothing in between allocates or frees. */
    w->allocated = jemalloc_counter("thread.allocated");
    w->deallocated = jemalloc_counter("thread.deallocated");
    memscope_stats_flush();
    pthread_barrier_wait(&started);
    wait_gate();
    return NULL;
}

static int bytes(int t, int k)
{
    static struct bytes_worker w[BYTES_MAX_THREADS + 1];
    pthread_t th[BYTES_MAX_THREADS + 1];
    if (t < 1 || t > BYTES_MAX_THREADS || k < 1 || k + 100 * t > 2000)
        return 2;
    void **given = calloc((size_t)k, sizeof *given);
    CHECK(given != NULL);
    for (int i = 0; i < k; i++)
        given[i] = malloc(64);
    pthread_barrier_init(&started, NULL, (unsigned)t + 2);
    for (int i = 0; i <= t; i++) {
        if (i < t) {
            snprintf(w[i].name, sizeof w[i].name, "bytes-%d", i);
            w[i].blocks = k + i * 100;
        } else {
            /* Last, so that the maintenance thread is started already. */
            snprintf(w[i].name, sizeof w[i].name, "bytes-freer");
            w[i].blocks = k;
            w[i].given = given;
        }
        CHECK(pthread_create(&th[i], NULL, bytes_worker, &w[i]) == 0);
    }
    pthread_barrier_wait(&started);
    for (int i = 0; i <= t; i++)
        printf("%s %llu %llu\n", w[i].name, (unsigned long long)w[i].allocated,
               (unsigned long long)w[i].deallocated);
    ready();
    wait_stdin();
    open_gate();
    for (int i = 0; i <= t; i++)
        pthread_join(th[i], NULL);
    free(given);
    return 0;
}

/* ---------------------------------------------------------------- shapes */

static int shape_n;
static pthread_key_t shape_key;
static void *shape_kept[2][10000];
static sem_t shape_done;

static void shape_pairs(int n)
{
    for (int i = 0; i < n; i++) {
        void *p = malloc(32 + (size_t)(i % 2000));
        CHECK(p != NULL);
        sink = p;
        free(p);
    }
}

static void *shape_plain(void *arg)
{
    shape_pairs(shape_n);
    if (arg)
        sem_post(&shape_done);
    return NULL;
}

static void *shape_keeper(void *arg)
{
    long k = (long)arg;
    unsigned (*push)(unsigned) = NULL;
    void (*pop)(unsigned) = NULL;
    unsigned saved = 0;
    if (k) {
        /* As a program that does not include memscope.h finds them. */
        *(void **)&push = dlsym(RTLD_DEFAULT, "memscope_lib_push");
        *(void **)&pop = dlsym(RTLD_DEFAULT, "memscope_lib_pop");
        CHECK(push != NULL && pop != NULL);
        saved = push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    }
    /* Refusals (NULL, a cold pool) are calls too: counted all the same. */
    for (int i = 0; i < shape_n; i++)
        shape_kept[k][i] = malloc(32 + (size_t)(i % 2000));
    if (k)
        pop(saved);
    sink = shape_kept[k];
    return NULL;
}

/* Runs after memscope's own exit hook (its key is older): two rounds. */
static void shape_destructor(void *value)
{
    shape_pairs(shape_n / 200);
    if (value == (void *)1)
        CHECK(pthread_setspecific(shape_key, (void *)2) == 0);
}

static void *shape_keyed(void *arg)
{
    (void)arg;
    shape_pairs(shape_n / 100);
    CHECK(pthread_setspecific(shape_key, (void *)1) == 0);
    return NULL;
}

static int shapes(int n)
{
    if (n > 10000)
        n = 10000;
    shape_n = n;
    /* The main thread allocates first: memscope's exit key exists before
     * the program's, so the program's destructor runs after memscope's. */
    sink = malloc(1);
    free(sink);
    /* The pool and the maintenance thread are made here, so that what the
     * workers' calls are is known exactly (the first scope or second
     * thread of a process starts that thread, allocating on the way). */
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    CHECK(pthread_key_create(&shape_key, shape_destructor) == 0);
    CHECK(sem_init(&shape_done, 0, 0) == 0);
    /* glibc frees on each exiting thread's behalf after the last key
     * destructor (2 per thread in 2.36): counted too. A thread that makes
     * one pair tells how many, read from the retired slot. */
    const struct memscope_stats_header *h = segment();
    CHECK(h != NULL);
    if (!h)
        return 1;
    const struct memscope_stats_slot *retired =
        (const void *)((const char *)h + h->slots_offset + MEMSCOPE_SLOT_RETIRED * (size_t)h->slot_size);
    pthread_t th;
    shape_n = 1;
    CHECK(pthread_create(&th, NULL, shape_plain, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    shape_n = n;
    long glibc_frees = (long)__atomic_load_n(&retired->ops[MEMSCOPE_OP_FREE][MEMSCOPE_CTX_NORMAL], __ATOMIC_RELAXED) - 1;
    CHECK(pthread_create(&th, NULL, shape_plain, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(pthread_create(&th, NULL, shape_plain, (void *)1L) == 0);
    CHECK(pthread_detach(th) == 0);
    sem_wait(&shape_done);
    pthread_t keepers[2];
    for (long k = 0; k < 2; k++)
        CHECK(pthread_create(&keepers[k], NULL, shape_keeper, (void *)k) == 0);
    for (int k = 0; k < 2; k++)
        CHECK(pthread_join(keepers[k], NULL) == 0);
    CHECK(pthread_create(&th, NULL, shape_keyed, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    usleep(100000); /* the detached thread finishes exiting */
    /* What the six exited threads called, by operation and context. */
    long plain = 1 + 2L * n + n / 100 + 2 * (n / 200);
    printf("expect alloc.normal %ld free.normal %ld alloc.noreclaim %d threads 6 glibc_exit_frees %ld\n", plain + n,
           plain + 6 * glibc_frees, n, glibc_frees);
    ready();
    wait_stdin();
    return check_failures;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "stall"))
        return stall();
    if (argc >= 3 && !strcmp(argv[1], "bystanders"))
        return bystanders(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "exited"))
        return exited(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "idle"))
        return idle(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "held"))
        return held(atoi(argv[2]), atol(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "alternate"))
        return alternate(atoi(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "live"))
        return live(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "churn"))
        return churn(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "hammer"))
        return hammer(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "fork"))
        return forked();
    if (argc >= 3 && !strcmp(argv[1], "contend"))
        return contend(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "events"))
        return events();
    if (argc >= 3 && !strcmp(argv[1], "shapes"))
        return shapes(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "bytes"))
        return bytes(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: see the comment at the top of stats_workers.c\n");
    return 2;
}
