/* locks_first_signal: a signal handler that takes a lock while its
 * thread's first lock section is being set up (the process's pool being
 * made: tens of milliseconds) does not wait for itself. It once did, for
 * good: the handler's section waited for the pool its own interrupted
 * thread was making (10 of 10 runs hung). Its section goes without the
 * pool (counted only); the thread's own sections are NORECLAIM.
 * (MEMSCOPE_LOCK_SCOPE=noreclaim)
 *
 * A 100 us interval timer runs from before the thread's first lock; the
 * handler takes and releases a spinlock. Its signals go to any thread
 * that does not block them: memscope's own threads must (the handler once
 * ran on the maintenance thread, took the spinlock there while the
 * thread's interrupted stocking held the pool arena's lock, and the same
 * handler on another thread then waited for both): their SigBlk in
 * /proc/self/task/N/status holds SIGALRM. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>

#include "check.h"
#include "memscope.h"

static pthread_spinlock_t spin;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long handled;

static void on_alarm(int sig)
{
    (void)sig;
    int e = errno;
    pthread_spin_lock(&spin);
    pthread_spin_unlock(&spin);
    handled++;
    errno = e;
}

/* memscope's threads (memscope-maint) found, and how many of them do not
 * block SIGALRM. */
static void own_threads(int *found, int *unblocked)
{
    *found = *unblocked = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[288], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int ours = fgets(line, sizeof line, f) && !strncmp(line, "memscope-", 9);
        fclose(f);
        if (!ours)
            continue;
        ++*found;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        unsigned long long blk = 0;
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "SigBlk:", 7))
                blk = strtoull(line + 7, NULL, 16);
        if (f)
            fclose(f);
        if (!(blk & (1ull << (SIGALRM - 1))))
            ++*unblocked;
    }
    if (d)
        closedir(d);
}

int main(void)
{
    pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned bad = 0;
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&m);
        if (memscope_current() != MEMSCOPE_NORECLAIM)
            bad++;
        pthread_mutex_unlock(&m);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    say("locks_first_signal: %lu signals, %u sections without NORECLAIM\n", handled, bad);
    CHECK_MSG(handled > 0, "no signal arrived");
    int found, unblocked;
    own_threads(&found, &unblocked);
    CHECK_MSG(found > 0 && unblocked == 0, "%d of memscope's %d threads take the program's signals", unblocked,
              found);
    CHECK_MSG(bad == 0, "%u of 2000 sections without NORECLAIM", bad);
    return check_result();
}
