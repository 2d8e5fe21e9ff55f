/* signal_reentry: a signal handler may push NORECLAIM, allocate, keep a
 * block and free older ones, landing anywhere in the thread's own
 * NORECLAIM mallocs and frees (its per-thread lists and its deferred
 * frees are plain loads and stores). A thread runs small NORECLAIM
 * malloc/free pairs (every block checked) and frees blocks made outside
 * the scope (deferred), while another thread signals it as fast as it
 * can. Before, the handler's list operation corrupted the interrupted one
 * and the process died in the depot (3 runs of 3).
 *   signal_reentry SECONDS */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

enum { KEPT = 64, LIVE = 256, OUTSIDE = 4096 };

static void *handler_kept[KEPT];
static volatile sig_atomic_t handled, handler_nulls, handler_bad;
static _Atomic int stop;

static void on_signal(int sig)
{
    (void)sig;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    int k = handled % KEPT;
    size_t size = 16 + (size_t)(handled % 7) * 16;
    unsigned char *p = malloc(size);
    if (p)
        memset(p, 0x77, size);
    else
        handler_nulls++;
    unsigned char *old = handler_kept[k];
    if (old && (old[0] != 0x77 || old[15] != 0x77))
        handler_bad++;
    free(old);
    handler_kept[k] = p;
    handled++;
    memscope_pop(s);
}

static void *signaller(void *arg)
{
    pthread_t target = *(pthread_t *)arg;
    while (!stop) {
        pthread_kill(target, SIGUSR1);
        for (volatile int i = 0; i < 200; i++)
            ;
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    /* Blocks made outside the scope, freed inside it (deferred frees). */
    void **outside = malloc(OUTSIDE * sizeof *outside);
    CHECK(outside != NULL);
    if (!outside)
        return check_result();
    for (int i = 0; i < OUTSIDE; i++)
        outside[i] = malloc(200);
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM)); /* set-up, outside */
    pthread_t self = pthread_self(), t;
    CHECK(pthread_create(&t, NULL, signaller, &self) == 0);
    unsigned char *live[LIVE] = {0};
    size_t live_size[LIVE] = {0};
    uint64_t r = 88172645463325252ull;
    long ops = 0, bad = 0, nulls = 0;
    int next_outside = 0;
    double end = now() + seconds;
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    while (now() < end) {
        for (int j = 0; j < 1000; j++, ops++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            int i = (int)(r % LIVE);
            if (live[i]) {
                for (size_t b = 0; b < live_size[i]; b += 8)
                    if (live[i][b] != (unsigned char)i) {
                        bad++;
                        break;
                    }
                free(live[i]);
                live[i] = NULL;
            } else {
                live_size[i] = 16 + (size_t)(r >> 32) % 240;
                live[i] = malloc(live_size[i]);
                if (live[i])
                    memset(live[i], i, live_size[i]);
                else
                    nulls++;
            }
            if (next_outside < OUTSIDE && (r >> 40) % 64 == 0)
                free(outside[next_outside++]);
        }
    }
    memscope_pop(s);
    stop = 1;
    pthread_join(t, NULL);
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
    while (next_outside < OUTSIDE)
        free(outside[next_outside++]);
    free(outside);
    CHECK_MSG(bad == 0 && handler_bad == 0, "%ld blocks overwritten (%d in the handler)", bad, (int)handler_bad);
    CHECK_MSG(nulls == 0 && handler_nulls == 0, "%ld refused (%d in the handler)", nulls, (int)handler_nulls);
    CHECK_MSG(handled > 1000, "only %d signals handled", (int)handled);
    say("signal_reentry: %ld operations, %d handlers allocating inside them\n", ops, (int)handled);
    return check_result();
}
