/* fork() while another thread is making the NORECLAIM pool must not hang.
 *
 * Making the pool holds memscope's creation lock and then takes jemalloc's
 * ctl_mtx (arenas.create). memscope's fork handler waits for a pool being
 * made, so it must run before jemalloc's, which takes ctl_mtx and every
 * other jemalloc lock for the fork: memscope registers its handlers after
 * jemalloc's (the constructor initialises jemalloc first). In the other
 * order the forking thread holds ctl_mtx while it waits for the maker, and
 * the maker waits for ctl_mtx: a deadlock (fork_noreclaim hit it about one
 * run in ten when the order was wrong).
 *
 * Here it is made certain: run with a pool large enough that populating it
 * takes a good part of a second (MEMSCOPE_NORECLAIM_POOL=512M), the main
 * thread forks while the maker is populating, holding the creation lock
 * and not yet ctl_mtx. Prints how long the fork waited. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

static volatile int making;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *maker(void *arg)
{
    (void)arg;
    making = 1;
    unsigned saved = memscope_push(MEMSCOPE_NORECLAIM); /* makes the pool */
    void *volatile p = malloc(64);
    free(p);
    memscope_pop(saved);
    return NULL;
}

int main(void)
{
    if (!memscope_loaded()) {
        say("fork_during_pool_creation: needs the library preloaded\n");
        return 1;
    }
    void *volatile warm = malloc(64); /* jemalloc set up in this thread */
    free(warm);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, maker, NULL) == 0);
    while (!making)
        ;
    usleep(20000); /* the maker is inside the pool's creation now */
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        void *volatile q = malloc(64); /* the child's allocator works */
        free(q);
        _exit(0);
    }
    double waited = now_ms() - t0;
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    say("fork waited %.0f ms for the pool being made\n", waited);
    return check_failures;
}
