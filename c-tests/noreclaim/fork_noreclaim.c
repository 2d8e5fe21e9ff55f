/* fork_noreclaim: forks while two threads allocate and free inside
 * NORECLAIM as fast as they can. Each child (one thread: the forking one)
 * enters NORECLAIM itself and must be served, starting its own maintenance
 * thread and stocking cache; 200 forks. A fork may land while a parent
 * thread is between taking a chain off a depot stack and keeping it (the
 * chain is lost to the child, never handed out twice) or while the parent's
 * maintenance thread uses its explicit jemalloc cache (the child makes its
 * own). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

static volatile int stop;

static void *worker(void *arg)
{
    (void)arg;
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    unsigned seed = 1;
    while (!stop) {
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
        void *p[32];
        for (int i = 0; i < 32; i++)
            p[i] = malloc(16 + (size_t)(rand_r(&seed) % 3000));
        for (int i = 0; i < 32; i++)
            free(p[i]);
        memscope_pop(s);
    }
    return NULL;
}

static int child(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    long served = 0;
    for (int i = 0; i < 20000; i++) {
        char *p = malloc(16 + (size_t)(i % 2000));
        if (p) {
            memset(p, 1, 16);
            served++;
        }
        free(p);
    }
    memscope_pop(s);
    return served > 0 ? 0 : 1;
}

int main(void)
{
    CHECK(memscope_loaded());
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    int failed = 0;
    for (int k = 0; k < 200; k++) {
        pid_t c = fork();
        if (c == 0)
            _exit(child());
        int st = 0;
        CHECK(waitpid(c, &st, 0) == c);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_MSG(failed == 0, "%d of 200 children failed or died", failed);
    say("fork_noreclaim: 200 forks under NORECLAIM load, %d children failed\n", failed);
    return check_result();
}
