/* locks_signal: a signal handler that takes a lock is in the section's
 * scope while it holds it, wherever it lands in the interrupted thread's
 * own lock calls. (MEMSCOPE_LOCK_SCOPE=noreclaim)
 *
 * For 1.5 s the main thread takes and releases 1 or 20 mutexes in a tight
 * loop while a 50 us interval timer interrupts it; the handler takes and
 * releases a spinlock and reads memscope_current() while it holds it: it
 * must be NORECLAIM every time. Once, a handler landing between the
 * interrupted thread's count of its first lock and its section's flags
 * held its spinlock without NORECLAIM (610 of 34,442 signals). The main
 * thread must see NORECLAIM inside every section and nothing outside. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "memscope.h"

static pthread_spinlock_t spin;
static pthread_mutex_t mu[20];
static volatile unsigned long handled, unscoped;

static void on_alarm(int sig)
{
    (void)sig;
    int e = errno;
    pthread_spin_lock(&spin);
    if (memscope_current() != MEMSCOPE_NORECLAIM)
        unscoped++;
    pthread_spin_unlock(&spin);
    handled++;
    errno = e;
}

int main(void)
{
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
            if (memscope_current() != MEMSCOPE_NORECLAIM)
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
    say("locks_signal: %lu loops, %lu signals, %lu handlers unscoped, %lu/%lu bad in/out\n", loops, handled,
        unscoped, bad_in, bad_out);
    CHECK_MSG(handled > 1000, "only %lu signals", handled);
    CHECK_MSG(unscoped == 0, "%lu of %lu handlers held their lock without the section's scope", unscoped, handled);
    CHECK_MSG(bad_in == 0 && bad_out == 0, "main thread: %lu wrong inside, %lu wrong outside", bad_in, bad_out);
    return check_result();
}
