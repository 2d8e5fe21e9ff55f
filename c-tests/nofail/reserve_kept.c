/* reserve_kept: the NOFAIL reserve serves NOFAIL requests only. With the
 * NORECLAIM pool exhausted for good (a small MEMSCOPE_NORECLAIM_MAX, every
 * block held), a NORECLAIM|NOFAIL thread and a NORECLAIM-only thread
 * allocate side by side: the NOFAIL thread is served from the reserve,
 * and the other gets nothing. Before, the rest of every reserve chain a
 * NOFAIL request took went to the pool's stacks, where the NORECLAIM-only
 * thread took 2,065 reserve blocks and the NOFAIL one got 73.
 *   run with MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=2M
 *            MEMSCOPE_NORECLAIM_MAX=16M */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

enum { TRIES = 3000, SIZE = 64 };

static _Atomic int go;
static long got[2];

static void *worker(void *arg)
{
    int nofail = arg != NULL;
    unsigned flags = MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN | (nofail ? MEMSCOPE_NOFAIL : 0);
    memscope_pop(memscope_push(flags)); /* set up outside the race */
    while (!go)
        ;
    unsigned s = memscope_push(flags);
    for (int i = 0; i < TRIES; i++) {
        void *p = malloc(SIZE);
        if (p) {
            memset(p, 0xab, SIZE);
            got[nofail]++; /* kept: never freed */
        }
    }
    memscope_pop(s);
    return NULL;
}

int main(void)
{
    /* Exhaust the pool: small blocks (every larger plain class serves
     * them, so the depot's other stock goes too) until the pool has grown
     * to its maximum and nothing is left, kept for good. */
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    long held = 0;
    for (int quiet = 0; quiet < 3;) {
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        long before = held;
        while (malloc(SIZE) != NULL)
            held++;
        memscope_pop(s);
        quiet = held == before ? quiet + 1 : 0;
        usleep(100 * 1000);
    }
    say("reserve_kept: pool exhausted after %ld blocks of %d bytes\n", held, SIZE);
    pthread_t t[2];
    CHECK(pthread_create(&t[0], NULL, worker, NULL) == 0);
    CHECK(pthread_create(&t[1], NULL, worker, (void *)1) == 0);
    usleep(50 * 1000);
    go = 1;
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    CHECK_MSG(got[0] == 0, "the NORECLAIM-only thread got %ld blocks with the pool exhausted (reserve blocks)", got[0]);
    CHECK_MSG(got[1] >= 64, "the NOFAIL thread got only %ld blocks from the reserve", got[1]);
    say("reserve_kept: NOFAIL thread %ld blocks, NORECLAIM-only thread %ld\n", got[1], got[0]);
    return check_result();
}
