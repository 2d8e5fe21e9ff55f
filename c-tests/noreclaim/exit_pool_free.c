/* Pool blocks freed in a key destructor, after memscope's exit hook (its
 * key is older than the program's), go back to the pool: none is stranded
 * on the lists of a thread whose hook has already drained them. Run with
 * a 2 MiB pool and no reserve: each round, a thread takes 1 MiB inside
 * NORECLAIM and a key destructor frees it (plainly, or inside NORECLAIM);
 * a stranded block per round left the pool unable to serve 1 MiB after
 * about 30 rounds. Every round must be served within a few seconds (the
 * maintenance thread restocks the class in the background).
 *
 *   exit_pool_free ROUNDS */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "memscope.h"
#include "check.h"

#define BIG (1u << 20)

static pthread_key_t key;
static int round_no;
static int served;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs after memscope's exit hook on the same thread. */
static void release(void *p)
{
    if (round_no % 2) {
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        free(p);
        memscope_pop(s);
    } else {
        free(p);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    /* A pool block freed outside the scope first: the thread's lists then
     * hold pool blocks, and its exit hook is registered for them. */
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    void *small = malloc(64);
    void *big = NULL;
    for (int tries = 0; tries < 300 && !big; tries++) {
        big = malloc(BIG);
        if (!big) {
            memscope_pop(s);
            sleep_ms(10); /* the maintenance thread restocks the class */
            s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        }
    }
    memscope_pop(s);
    free(small);
    if (big) {
        served++;
        ((volatile char *)big)[BIG - 1] = 1;
        CHECK(pthread_setspecific(key, big) == 0);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 150;
    CHECK(memscope_loaded());
    if (!memscope_loaded())
        return check_result();
    /* memscope's exit key is made at the process's first allocation. */
    free(malloc(1));
    CHECK(pthread_key_create(&key, release) == 0);
    for (round_no = 0; round_no < rounds; round_no++) {
        pthread_t th;
        int before = served;
        CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        if (served == before) {
            say("round %d of %d: 1 MiB refused for 3 s (pool blocks stranded?)\n", round_no, rounds);
            CHECK(served > before);
            break;
        }
    }
    say("%d of %d rounds served\n", served, rounds);
    return check_result();
}
