/* kvd: a small storage daemon of the kind memscope is for.
 *
 * A key-value store in a skiplist behind one mutex, on loopback TCP, one
 * thread per connection. Every write allocates (the node, the value copy)
 * and frees (the value it replaces) while holding the lock, as real
 * storage engines do with their btree locks. A "compaction" thread churns
 * large buffers on the side, and with MALLOC_CONF=dirty_decay_ms:0 every
 * free hands pages back to the OS, so plain allocations under the lock
 * meet madvise purges and page faults: the lock is held while the kernel
 * works, and every other connection waits.
 *
 * With --scopes the allocations under the lock run inside
 * MEMSCOPE_NORECLAIM (served from pre-faulted memory, no syscall, frees of
 * outside blocks deferred), the skiplist nodes (metadata that must not
 * fail half-way through an insert) inside NORECLAIM|NOFAIL, and a
 * registered reclaimer drops the read cache when memory runs short.
 *
 *   kvd PORT [--scopes] [--churn-mib N]
 *
 * Protocol, one line per request:
 *   SET key value   -> OK          GET key -> VALUE value | MISS
 *   DEL key         -> OK | MISS   STATS   -> lock-hold percentiles, counts
 *   SHUTDOWN        -> BYE, then the daemon exits cleanly
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"

#define MAX_LEVEL 16
#define LINE_MAX_BYTES 8192
#define CACHE_SLOTS 4096

/* ------------------------------------------------------------ the store */

struct node {
    char *key;
    char *value;
    size_t value_len;
    int level;
    struct node *next[];
};

static struct node *head;
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static int use_scopes;
static atomic_ulong n_keys, n_sets, n_gets, n_dels;

/* Lock-hold times in nanoseconds, updated under the lock: log-linear
 * buckets, four per power of two (as memscope's own histograms). */
#define HOLD_BUCKETS 256
static uint64_t hold_hist[HOLD_BUCKETS];
static uint64_t hold_count, hold_max;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    unsigned i = 4 * (e - 1) + (unsigned)((ns >> (e - 2)) & 3);
    return i < HOLD_BUCKETS ? i : HOLD_BUCKETS - 1;
}

/* One past the largest value of bucket i. */
static uint64_t bucket_upper(unsigned i)
{
    i++;
    if (i < 4)
        return i;
    unsigned e = i / 4 + 1;
    return ((uint64_t)1 << e) + ((uint64_t)(i % 4) << (e - 2));
}

static uint64_t lock_store(void)
{
    pthread_mutex_lock(&store_lock);
    return now_ns();
}

static void unlock_store(uint64_t since)
{
    uint64_t d = now_ns() - since;
    hold_hist[bucket_of(d)]++;
    hold_count++;
    if (d > hold_max)
        hold_max = d;
    pthread_mutex_unlock(&store_lock);
}

static int random_level(unsigned *seed)
{
    int l = 1;
    while (l < MAX_LEVEL && (rand_r(seed) & 3) == 0)
        l++;
    return l;
}

/* Allocations made while holding the store lock. */
static void *alloc_locked(size_t n, unsigned extra_flags)
{
    unsigned saved = use_scopes ? memscope_push(MEMSCOPE_NORECLAIM | extra_flags) : 0;
    void *p = malloc(n);
    if (use_scopes)
        memscope_pop(saved);
    return p;
}

static void free_locked(void *p)
{
    unsigned saved = use_scopes ? memscope_push(MEMSCOPE_NORECLAIM) : 0;
    free(p);
    if (use_scopes)
        memscope_pop(saved);
}

static char *dup_locked(const char *s, size_t n)
{
    char *d = alloc_locked(n + 1, 0);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* The first node whose key is not below `key` (or NULL); `update[i]` gets
 * the last node before it on level i. Call with the store lock held. */
static struct node *find(const char *key, struct node *update[MAX_LEVEL])
{
    struct node *x = head;
    for (int i = MAX_LEVEL - 1; i >= 0; i--) {
        while (x->next[i] && strcmp(x->next[i]->key, key) < 0)
            x = x->next[i];
        update[i] = x;
    }
    return x->next[0];
}

/* Returns 0 on success, -1 when memory ran out (nothing changed). */
static int store_set(const char *key, const char *value, size_t vlen, unsigned *seed)
{
    struct node *update[MAX_LEVEL];
    uint64_t t = lock_store();
    struct node *x = find(key, update);
    int rc = 0;
    if (x && strcmp(x->key, key) == 0) {
        char *v = dup_locked(value, vlen);
        if (v) {
            free_locked(x->value);
            x->value = v;
            x->value_len = vlen;
        } else {
            rc = -1;
        }
    } else {
        int level = random_level(seed);
        /* The node is the structure's metadata: NOFAIL (pool, then the
         * reserve) so that an insert never half-happens. */
        struct node *n = alloc_locked(sizeof *n + (size_t)level * sizeof n->next[0], MEMSCOPE_NOFAIL);
        char *k = n ? dup_locked(key, strlen(key)) : NULL;
        char *v = k ? dup_locked(value, vlen) : NULL;
        if (!v) {
            free_locked(k);
            free_locked(n);
            rc = -1;
        } else {
            n->key = k;
            n->value = v;
            n->value_len = vlen;
            n->level = level;
            for (int i = 0; i < level; i++) {
                n->next[i] = update[i]->next[i];
                update[i]->next[i] = n;
            }
            n_keys++;
        }
    }
    unlock_store(t);
    n_sets++;
    return rc;
}

/* Copies the value into buf (at most cap bytes); returns its length or -1. */
static long store_get(const char *key, char *buf, size_t cap)
{
    long len = -1;
    struct node *update[MAX_LEVEL];
    uint64_t t = lock_store();
    struct node *x = find(key, update);
    if (x && strcmp(x->key, key) == 0) {
        len = (long)(x->value_len < cap ? x->value_len : cap);
        memcpy(buf, x->value, (size_t)len);
    }
    unlock_store(t);
    n_gets++;
    return len;
}

static int store_del(const char *key)
{
    struct node *update[MAX_LEVEL];
    uint64_t t = lock_store();
    struct node *x = find(key, update);
    int found = x && strcmp(x->key, key) == 0;
    if (found) {
        for (int i = 0; i < x->level; i++)
            update[i]->next[i] = x->next[i];
        free_locked(x->key);
        free_locked(x->value);
        free_locked(x);
        n_keys--;
    }
    unlock_store(t);
    n_dels++;
    return found;
}

/* --------------------------------- the read cache, and its reclaimer */

/* Recently read values, copied (a cache the daemon can do without). */
static struct {
    char *key;
    char *value;
    size_t len;
} cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong cache_hits, cache_dropped_bytes;

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static long cache_get(const char *key, char *buf, size_t cap)
{
    long len = -1;
    unsigned i = hash(key) % CACHE_SLOTS;
    pthread_mutex_lock(&cache_lock);
    if (cache[i].key && strcmp(cache[i].key, key) == 0) {
        len = (long)(cache[i].len < cap ? cache[i].len : cap);
        memcpy(buf, cache[i].value, (size_t)len);
        cache_hits++;
    }
    pthread_mutex_unlock(&cache_lock);
    return len;
}

static void cache_forget(unsigned i)
{
    free(cache[i].key);
    free(cache[i].value);
    cache[i].key = cache[i].value = NULL;
    cache[i].len = 0;
}

static void cache_put(const char *key, const char *value, size_t len)
{
    char *k = strdup(key);
    char *v = malloc(len ? len : 1);
    if (!k || !v) {
        free(k);
        free(v);
        return;
    }
    memcpy(v, value, len);
    unsigned i = hash(key) % CACHE_SLOTS;
    pthread_mutex_lock(&cache_lock);
    cache_forget(i);
    cache[i].key = k;
    cache[i].value = v;
    cache[i].len = len;
    pthread_mutex_unlock(&cache_lock);
}

static void cache_invalidate(const char *key)
{
    unsigned i = hash(key) % CACHE_SLOTS;
    pthread_mutex_lock(&cache_lock);
    if (cache[i].key && strcmp(cache[i].key, key) == 0)
        cache_forget(i);
    pthread_mutex_unlock(&cache_lock);
}

/* memscope calls this when a NOFAIL allocation cannot be served, or RSS is
 * above MEMSCOPE_SOFT_LIMIT: drop cached values until `want` bytes went. */
static size_t drop_cache(size_t want, void *arg)
{
    (void)arg;
    size_t freed = 0;
    if (pthread_mutex_trylock(&cache_lock) != 0)
        return 0; /* a reader holds it: never wait inside reclaim */
    for (unsigned i = 0; i < CACHE_SLOTS && freed < want; i++) {
        if (cache[i].key) {
            freed += cache[i].len + strlen(cache[i].key) + 2;
            cache_forget(i);
        }
    }
    pthread_mutex_unlock(&cache_lock);
    cache_dropped_bytes += freed;
    return freed;
}

/* ------------------------------------------------------ memory churn */

static atomic_int stopping;
static size_t churn_mib = 16;

/* A compaction-like thread: large buffers allocated, filled, freed. With
 * dirty_decay_ms:0 each free purges, each new buffer faults its pages in. */
static void *churn(void *arg)
{
    (void)arg;
    unsigned seed = 7;
    while (!atomic_load(&stopping)) {
        size_t n = ((size_t)(rand_r(&seed) % churn_mib) + 1) << 20;
        char *p = malloc(n);
        if (p) {
            for (size_t i = 0; i < n; i += 4096)
                p[i] = (char)i;
            free(p);
        }
        usleep(1000);
    }
    return NULL;
}

/* ------------------------------------------------------------ serving */

static int listen_fd = -1;

static void stats_line(char *out, size_t cap)
{
    uint64_t t = lock_store();
    uint64_t hist[HOLD_BUCKETS], count = hold_count, max = hold_max;
    memcpy(hist, hold_hist, sizeof hist);
    unlock_store(t);
    double q[3] = {0.5, 0.99, 0.999};
    uint64_t v[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        uint64_t rank = (uint64_t)((double)count * q[k]), seen = 0;
        for (unsigned i = 0; i < HOLD_BUCKETS; i++) {
            seen += hist[i];
            if (seen > rank) {
                v[k] = bucket_upper(i) - 1;
                break;
            }
        }
        if (v[k] > max)
            v[k] = max;
    }
    snprintf(out, cap,
             "STATS holds=%llu hold_p50_ns=%llu hold_p99_ns=%llu hold_p999_ns=%llu hold_max_ns=%llu "
             "keys=%lu sets=%lu gets=%lu dels=%lu cache_hits=%lu cache_dropped_bytes=%lu scopes=%d\n",
             (unsigned long long)count, (unsigned long long)v[0], (unsigned long long)v[1],
             (unsigned long long)v[2], (unsigned long long)max, (unsigned long)n_keys, (unsigned long)n_sets,
             (unsigned long)n_gets, (unsigned long)n_dels, (unsigned long)cache_hits,
             (unsigned long)cache_dropped_bytes, use_scopes);
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned seed = (unsigned)fd * 2654435761u;
    char *in = malloc(LINE_MAX_BYTES * 2), *out = malloc(LINE_MAX_BYTES + 64);
    size_t have = 0;
    if (!in || !out)
        goto done;
    /* The first NORECLAIM (or NOFAIL) push of a thread sets things up (the
     * process's pool the first time, the thread's pool cache): milliseconds,
     * which must not be spent holding the store lock. Enter once here. */
    if (use_scopes)
        memscope_pop(memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL));
    for (;;) {
        char *nl = memchr(in, '\n', have);
        if (!nl) {
            if (have == LINE_MAX_BYTES * 2)
                break; /* a line too long: drop the client */
            ssize_t r = recv(fd, in + have, LINE_MAX_BYTES * 2 - have, 0);
            if (r <= 0)
                break;
            have += (size_t)r;
            continue;
        }
        *nl = 0;
        char *line = in, *arg1 = strchr(line, ' '), *arg2 = NULL;
        if (arg1) {
            *arg1++ = 0;
            arg2 = strchr(arg1, ' ');
            if (arg2)
                *arg2++ = 0;
        }
        int n = 0;
        if (!strcmp(line, "SET") && arg1 && arg2) {
            cache_invalidate(arg1);
            n = snprintf(out, 16, "%s\n", store_set(arg1, arg2, strlen(arg2), &seed) == 0 ? "OK" : "ERR nomem");
        } else if (!strcmp(line, "GET") && arg1) {
            memcpy(out, "VALUE ", 6);
            long len = cache_get(arg1, out + 6, LINE_MAX_BYTES);
            if (len < 0) {
                len = store_get(arg1, out + 6, LINE_MAX_BYTES);
                if (len >= 0)
                    cache_put(arg1, out + 6, (size_t)len);
            }
            if (len < 0) {
                n = snprintf(out, 8, "MISS\n");
            } else {
                out[6 + len] = '\n';
                n = (int)len + 7;
            }
        } else if (!strcmp(line, "DEL") && arg1) {
            cache_invalidate(arg1);
            n = snprintf(out, 8, "%s\n", store_del(arg1) ? "OK" : "MISS");
        } else if (!strcmp(line, "STATS")) {
            stats_line(out, LINE_MAX_BYTES);
            n = (int)strlen(out);
        } else if (!strcmp(line, "SHUTDOWN")) {
            send_all(fd, "BYE\n", 4);
            atomic_store(&stopping, 1);
            shutdown(listen_fd, SHUT_RDWR);
            break;
        } else {
            n = snprintf(out, 32, "ERR bad request\n");
        }
        if (send_all(fd, out, (size_t)n) != 0)
            break;
        size_t used = (size_t)(nl + 1 - in);
        memmove(in, nl + 1, have - used);
        have -= used;
    }
done:
    free(in);
    free(out);
    close(fd);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stopping, 1);
    shutdown(listen_fd, SHUT_RDWR);
}

static void free_store(void)
{
    struct node *x = head->next[0];
    while (x) {
        struct node *next = x->next[0];
        free(x->key);
        free(x->value);
        free(x);
        x = next;
    }
    free(head);
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        cache_forget(i);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kvd PORT [--scopes] [--churn-mib N]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--scopes"))
            use_scopes = 1;
        else if (!strcmp(argv[i], "--churn-mib") && i + 1 < argc)
            churn_mib = (size_t)atoi(argv[++i]);
    }
    if (use_scopes && !memscope_loaded()) {
        fprintf(stderr, "kvd: --scopes needs libmemscope.so (LD_PRELOAD or linked)\n");
        return 2;
    }
    head = calloc(1, sizeof *head + MAX_LEVEL * sizeof head->next[0]);
    if (!head)
        return 1;
    head->key = "";
    int reclaimer = use_scopes ? memscope_reclaimer_register("kvd read cache", drop_cache, NULL, 0) : 0;

    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 128) != 0) {
        fprintf(stderr, "kvd: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    pthread_t churner;
    pthread_create(&churner, NULL, churn, NULL);
    pthread_setname_np(churner, "kvd-compact");
    printf("kvd: listening on 127.0.0.1:%d, scopes %s, pid %d\n", port, use_scopes ? "on" : "off", (int)getpid());
    fflush(stdout);

    pthread_t clients[256];
    int client_fds[256];
    int n_clients = 0;
    while (!atomic_load(&stopping)) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (n_clients == 256 || pthread_create(&clients[n_clients], NULL, serve, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        client_fds[n_clients++] = fd;
    }
    atomic_store(&stopping, 1);
    /* Wake connections still waiting for a request. (A descriptor number
     * may have been reused by then; shutting a socket twice is harmless
     * and nothing else opens sockets here.) */
    for (int i = 0; i < n_clients; i++)
        shutdown(client_fds[i], SHUT_RDWR);
    for (int i = 0; i < n_clients; i++)
        pthread_join(clients[i], NULL);
    pthread_join(churner, NULL);
    if (reclaimer > 0)
        memscope_reclaimer_unregister(reclaimer);
    free_store();
    close(listen_fd);
    printf("kvd: clean shutdown\n");
    return 0;
}
