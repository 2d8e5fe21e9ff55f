/* kvload: a bounded load generator for kvd, checking every answer.
 *
 *   kvload PORT CLIENTS OPS_PER_CLIENT KEYS_PER_CLIENT
 *
 * Each client owns its keys ("c<client>-<n>") and remembers what it last
 * stored under each, so every GET is checked: the value it set, or MISS
 * after a DEL. Mix: 50% SET (values of 32 B to 2 KiB), 40% GET, 10% DEL.
 * Prints one line: ops, wrong answers, round-trip percentiles (us), ops/s.
 * Exits 1 on any wrong answer or connection failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, ops, keys;

struct client {
    int id;
    uint32_t *lat_ns;
    long wrong;
    int failed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The value stored for `seed`: deterministic, 32 B to 2 KiB. */
static size_t make_value(unsigned seed, char *out)
{
    size_t len = 32 + seed % 2017;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)('a' + (seed + i * 7) % 26);
    return len;
}

static int read_line(int fd, char *buf, size_t cap, size_t *have, char **line_end)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        if (nl) {
            *line_end = nl;
            return 0;
        }
        if (*have == cap)
            return -1;
        ssize_t r = recv(fd, buf + *have, cap - *have, 0);
        if (r <= 0)
            return -1;
        *have += (size_t)r;
    }
}

static void *run(void *arg)
{
    struct client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        c->failed = 1;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int *expect = malloc((size_t)keys * sizeof *expect); /* seed, or -1: absent */
    char *req = malloc(4096), *resp = malloc(8192), *val = malloc(4096);
    for (int k = 0; k < keys; k++)
        expect[k] = -1;
    unsigned rng = (unsigned)c->id * 7919u + 1;
    size_t have = 0;
    for (int i = 0; i < ops; i++) {
        int k = (int)(rand_r(&rng) % (unsigned)keys);
        int dice = (int)(rand_r(&rng) % 10);
        size_t n;
        int kind;
        unsigned seed = (unsigned)rand_r(&rng) & 0x7fffffff;
        if (dice < 5) {
            kind = 0;
            n = (size_t)sprintf(req, "SET c%d-%d ", c->id, k);
            n += make_value(seed, req + n);
            req[n++] = '\n';
        } else if (dice < 9) {
            kind = 1;
            n = (size_t)sprintf(req, "GET c%d-%d\n", c->id, k);
        } else {
            kind = 2;
            n = (size_t)sprintf(req, "DEL c%d-%d\n", c->id, k);
        }
        uint64_t t0 = now_ns();
        char *end;
        if (send(fd, req, n, MSG_NOSIGNAL) != (ssize_t)n || read_line(fd, resp, 8192, &have, &end) != 0) {
            c->failed = 1;
            break;
        }
        uint64_t dt = now_ns() - t0;
        c->lat_ns[i] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
        *end = 0;
        if (kind == 0) {
            if (strcmp(resp, "OK") == 0)
                expect[k] = (int)seed;
            else
                c->wrong++;
        } else if (kind == 1) {
            if (expect[k] < 0) {
                c->wrong += strcmp(resp, "MISS") != 0;
            } else {
                size_t len = make_value((unsigned)expect[k], val);
                c->wrong += strncmp(resp, "VALUE ", 6) != 0 || (size_t)(end - resp - 6) != len ||
                            memcmp(resp + 6, val, len) != 0;
            }
        } else {
            c->wrong += strcmp(resp, expect[k] < 0 ? "MISS" : "OK") != 0;
            expect[k] = -1;
        }
        size_t used = (size_t)(end + 1 - resp);
        memmove(resp, end + 1, have - used);
        have -= used;
    }
    close(fd);
    free(expect);
    free(req);
    free(resp);
    free(val);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: kvload PORT CLIENTS OPS_PER_CLIENT KEYS_PER_CLIENT\n");
        return 2;
    }
    port = atoi(argv[1]);
    int clients = atoi(argv[2]);
    ops = atoi(argv[3]);
    keys = atoi(argv[4]);
    if (clients < 1 || clients > 256 || ops < 1 || keys < 1) {
        fprintf(stderr, "kvload: bad arguments\n");
        return 2;
    }
    struct client *c = calloc((size_t)clients, sizeof *c);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    uint64_t t0 = now_ns();
    for (int i = 0; i < clients; i++) {
        c[i].id = i;
        c[i].lat_ns = calloc((size_t)ops, sizeof(uint32_t));
        pthread_create(&th[i], NULL, run, &c[i]);
    }
    long wrong = 0;
    int failed = 0;
    size_t total = (size_t)clients * (size_t)ops;
    uint32_t *all = malloc(total * sizeof *all);
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        wrong += c[i].wrong;
        failed |= c[i].failed;
        memcpy(all + (size_t)i * (size_t)ops, c[i].lat_ns, (size_t)ops * sizeof *all);
        free(c[i].lat_ns);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    qsort(all, total, sizeof *all, cmp_u32);
#define Q(p) (all[(size_t)((double)(total - 1) * (p))] / 1000.0)
    printf("ops=%zu wrong=%ld failed=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f ops_per_s=%.0f\n", total,
           wrong, failed, Q(0.5), Q(0.99), Q(0.999), all[total - 1] / 1000.0, (double)total / secs);
    free(all);
    free(c);
    free(th);
    return wrong || failed ? 1 : 0;
}
