/* sites: known call sites for `memscope-stat sites` (issue "Name the
 * code"), in the main thread:
 *   long_scope_here  one NORECLAIM scope held 30 ms (the thread's first
 *                    scope: timed);
 *   refused_here     3 requests of 8 MiB inside NORECLAIM|NOWARN (larger
 *                    than any pool block: refused);
 *   nofail_here      2 NOFAIL requests whose first ordinary attempt fails
 *                    (memscope_test_fail_next): each waits once;
 *   plain_here       20,000 allocations of 64 bytes inside NORECLAIM
 *                    (sampled; with MEMSCOPE_STATS_SAMPLE=1 every one).
 * Then prints "ready" and waits for stdin to close, so that the runner
 * reads the segment of a live process. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

#define PLAIN 20000
static void *kept[PLAIN];

__attribute__((noinline)) static void long_scope_here(void)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    struct timespec t = {0, 30 * 1000 * 1000};
    nanosleep(&t, NULL);
    memscope_pop(s);
}

__attribute__((noinline)) static void *refused_here(void)
{
    return malloc(8u << 20);
}

__attribute__((noinline)) static void *nofail_here(void)
{
    memscope_test_fail_next(1);
    return malloc(4096);
}

__attribute__((noinline)) static void *plain_here(void)
{
    return malloc(64);
}

int main(void)
{
    CHECK(memscope_loaded());
    long_scope_here();

    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 3; i++)
        CHECK(refused_here() == NULL);
    for (int i = 0; i < PLAIN; i++)
        CHECK((kept[i] = plain_here()) != NULL);
    memscope_pop(s);
    for (int i = 0; i < PLAIN; i++)
        free(kept[i]);

    s = memscope_push(MEMSCOPE_NOFAIL);
    for (int i = 0; i < 2; i++) {
        void *p = nofail_here();
        CHECK(p != NULL);
        free(p);
    }
    memscope_pop(s);
    if (check_failures)
        return check_result();

    printf("ready\n");
    fflush(stdout);
    char buf[16];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return check_result();
}
