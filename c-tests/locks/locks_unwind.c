/* A thread blocked inside an interposed lock call can be unwound: a
 * debugger's or profiler's backtrace of a thread waiting for a mutex, a
 * read lock, a write lock or a timed lock passes through
 * libmemscope_locks.so's entry stub (which calls the real function with
 * the lock's address on its stack) to the caller and the caller's
 * caller. Without the stub's CFI the unwinder stopped at the stub.
 *
 * Each waiter blocks on a lock main holds; main sends it SIGUSR1, whose
 * handler takes a backtrace(3) (libgcc's unwinder, .eh_frame) on the
 * blocked thread; main checks the frames name blocked_on and waiter (the
 * program is linked with -rdynamic so that dladdr names them).
 *
 * usage: locks_unwind */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { FRAMES = 64 };
static void *frames[FRAMES];
static volatile sig_atomic_t depth = -1;

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

enum kind { MUTEX, TIMED_MUTEX, READ, WRITE, KINDS };
static const char *names[KINDS] = {"mutex", "timed mutex", "read lock", "write lock"};

static void on_usr1(int sig)
{
    (void)sig;
    depth = backtrace(frames, FRAMES);
}

/* Not inlined, so that it has a frame of its own to be found. */
__attribute__((noinline)) void blocked_on(enum kind k)
{
    struct timespec t;
    switch (k) {
    case MUTEX:
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
        break;
    case TIMED_MUTEX:
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += 60;
        pthread_mutex_timedlock(&m, &t);
        pthread_mutex_unlock(&m);
        break;
    case READ:
        pthread_rwlock_rdlock(&rw);
        pthread_rwlock_unlock(&rw);
        break;
    case WRITE:
        pthread_rwlock_wrlock(&rw);
        pthread_rwlock_unlock(&rw);
        break;
    default:
        break;
    }
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *waiter(void *arg)
{
    blocked_on((enum kind)(long)arg);
    __asm__ volatile("" ::: "memory");
    return NULL;
}

static int named(int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (dladdr((char *)frames[i] - 1, &info) && info.dli_sname && strcmp(info.dli_sname, name) == 0)
            return 1;
    }
    return 0;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    /* backtrace(3) loads libgcc_s on its first call: not in a handler. */
    depth = backtrace(frames, FRAMES);

    for (int k = 0; k < KINDS; k++) {
        if (k == READ || k == WRITE)
            pthread_rwlock_wrlock(&rw);
        else
            pthread_mutex_lock(&m);
        depth = -1;
        pthread_t t;
        pthread_create(&t, NULL, waiter, (void *)(long)k);
        /* Long enough for the waiter to sleep in the kernel. */
        usleep(100 * 1000);
        pthread_kill(t, SIGUSR1);
        for (int i = 0; i < 2000 && depth < 0; i++)
            usleep(1000);
        if (k == READ || k == WRITE)
            pthread_rwlock_unlock(&rw);
        else
            pthread_mutex_unlock(&m);
        pthread_join(t, NULL);
        int n = depth;
        CHECK_MSG(n > 0, "%s: the handler took no backtrace", names[k]);
        CHECK_MSG(named(n, "blocked_on") && named(n, "waiter"),
                  "%s: the backtrace of a blocked thread (%d frames) does not reach its caller", names[k], n);
    }
    return check_result();
}
