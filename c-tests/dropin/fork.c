/* fork() from a multithreaded process while other threads allocate; the
 * child allocates, frees and spawns a thread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static volatile int stop;

static void *churn(void *arg)
{
    (void)arg;
    while (!stop) {
        void *p = malloc(4096 + (size_t)(rand() % 100000));
        memset(p, 3, 4096);
        free(p);
    }
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++)
        free(malloc((size_t)i % 3000 + 1));
    return NULL;
}

int main(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, churn, NULL);
    for (int round = 0; round < 50; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *ps[100];
            for (int i = 0; i < 100; i++) {
                ps[i] = malloc((size_t)i * 1000 + 1);
                if (!ps[i])
                    _exit(2);
                memset(ps[i], 7, (size_t)i * 1000 + 1);
            }
            for (int i = 0; i < 100; i++)
                free(ps[i]);
            pthread_t ct;
            if (pthread_create(&ct, NULL, child_thread, NULL) != 0)
                _exit(3);
            pthread_join(ct, NULL);
            _exit(0);
        }
        CHECK(pid > 0);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    }
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return check_result();
}
