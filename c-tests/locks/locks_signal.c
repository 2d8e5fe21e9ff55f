/* locks_signal: a signal handler that takes a lock is in the section's
 * scope while it holds it, wherever it lands in the interrupted thread's
 * own lock calls.
 *
 * usage: locks_signal noreclaim|report   (= MEMSCOPE_LOCK_SCOPE)
 *
 * For 1.5 s the main thread takes and releases 1 or 20 mutexes in a tight
 * loop while a 50 us interval timer interrupts it; the handler takes and
 * releases a spinlock and reads memscope_current() while it holds it: it
 * must be NORECLAIM every time. Once, a handler landing between the
 * interrupted thread's count of its first lock and its section's flags
 * held its spinlock without NORECLAIM (610 of 34,442 signals). The main
 * thread must see NORECLAIM inside every section and nothing outside.
 *
 * In report mode (the sections the locks library begins and ends itself,
 * D64) nothing shows in memscope_current(): the handler allocates and
 * frees 24 bytes while it holds its spinlock instead, and the stats
 * segment must count exactly one allocation and one free under a lock per
 * signal (a handler whose lock was not seen as held, or that landed
 * between a section's flag word and its countdowns' bias at its start or
 * end, would be missing; the main thread allocates nothing in the loop). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

static pthread_spinlock_t spin;
static pthread_mutex_t mu[20];
static volatile unsigned long handled, unscoped;
static unsigned want; /* the section's flags: MEMSCOPE_NORECLAIM or 0 */

static void on_alarm(int sig)
{
    (void)sig;
    int e = errno;
    pthread_spin_lock(&spin);
    if (memscope_current() != want)
        unscoped++;
    if (!want) {
        void *p = malloc(24);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    pthread_spin_unlock(&spin);
    handled++;
    errno = e;
}

/* The lock blocks' allocations and frees, all slots. */
static void lock_totals(uint64_t *allocs, uint64_t *frees)
{
    const struct memscope_stats_header *h = segment();
    *allocs = *frees = 0;
    if (!h || h->abi_minor < 6 || !h->locks_offset)
        return;
    for (uint32_t i = 0; i < h->slot_count; i++) {
        const struct memscope_lock_stats *b =
            (const void *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size);
        *allocs += __atomic_load_n(&b->allocs, __ATOMIC_RELAXED);
        *frees += __atomic_load_n(&b->frees, __ATOMIC_RELAXED);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "noreclaim") && strcmp(argv[1], "report"))) {
        say("usage: locks_signal noreclaim|report\n");
        return 2;
    }
    want = strcmp(argv[1], "report") ? MEMSCOPE_NORECLAIM : 0;
    pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    for (int i = 0; i < 20; i++)
        pthread_mutex_init(&mu[i], NULL);
    pthread_mutex_lock(&mu[0]); /* the thread's first section: its set-up */
    pthread_mutex_unlock(&mu[0]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    /* Calls outside sections first: the countdowns then have calls left,
     * so an allocation that a section's bias does not send to the slow
     * path takes the fast one, uncounted (a handler that landed between a
     * section's flag word and its bias once did: 516 of 97,000). */
    for (int i = 0; i < 3000; i++)
        free(malloc(24));
    uint64_t allocs0, frees0;
    lock_totals(&allocs0, &frees0);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned long loops = 0, bad_in = 0, bad_out = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        for (int k = 0; k < 1000; k++) {
            int depth = k % 3 == 0 ? 20 : 1;
            for (int i = 0; i < depth; i++)
                pthread_mutex_lock(&mu[i]);
            if (memscope_current() != want)
                bad_in++;
            for (int i = depth - 1; i >= 0; i--)
                pthread_mutex_unlock(&mu[i]);
            if (memscope_current() != 0)
                bad_out++;
            loops++;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 1500000000L);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    uint64_t allocs1, frees1;
    lock_totals(&allocs1, &frees1);
    if (!want)
        CHECK_MSG(allocs1 - allocs0 == handled && frees1 - frees0 == handled,
                  "%lu signals, but %lu allocations and %lu frees counted under a lock", handled,
                  (unsigned long)(allocs1 - allocs0), (unsigned long)(frees1 - frees0));
    say("locks_signal: %lu loops, %lu signals, %lu handlers unscoped, %lu/%lu bad in/out\n", loops, handled,
        unscoped, bad_in, bad_out);
    CHECK_MSG(handled > 1000, "only %lu signals", handled);
    CHECK_MSG(unscoped == 0, "%lu of %lu handlers held their lock without the section's scope", unscoped, handled);
    CHECK_MSG(bad_in == 0 && bad_out == 0, "main thread: %lu wrong inside, %lu wrong outside", bad_in, bad_out);
    return check_result();
}
