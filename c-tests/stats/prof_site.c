/* prof_site: a known allocation site for the heap-profile test. Keeps
 * 64 MiB allocated from `memscope_test_known_site` (never inlined, so the
 * profile's stacks name it), prints "ready", then, by mode:
 *   busy   keeps allocating outside scopes (its sampled calls serve requests)
 *   idle   entered one NOFAIL scope (the maintenance thread runs and serves
 *          requests) and only sleeps
 * until killed. */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memscope.h"

__attribute__((noinline)) void *memscope_test_known_site(size_t n)
{
    void *p = malloc(n);
    if (p)
        memset(p, 0x5a, n);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    static void *keep[64];
    for (int i = 0; i < 64; i++)
        keep[i] = memscope_test_known_site(1 << 20);
    int busy = strcmp(argv[1], "busy") == 0;
    if (!busy)
        memscope_pop(memscope_push(MEMSCOPE_NOFAIL));
    printf("ready\n");
    fflush(stdout);
    for (unsigned long i = 0;; i++) {
        if (busy) {
            void *volatile p = malloc(16 + i % 512);
            free(p);
            if (i % 4096 == 0)
                usleep(1000);
        } else {
            sleep(1);
        }
    }
    return keep[0] == NULL;
}
