/* A program that keeps replacing its threads keeps the stats segment
 * small: each new thread takes the lowest free slot, whose pages are
 * resident already, so the segment's resident size follows the most
 * threads alive at once, not how many ever ran (docs/STATS.md). Taking
 * slots in turn faulted in all 256 slots, 3 MiB, over any long run.
 *
 * Runs 200 threads one after another, each allocating, then reads the
 * segment mapping's Rss from /proc/self/smaps. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define THREADS 200
/* Header 12 KiB, two aggregate slots and a few live threads' slots (this
 * one, a worker, memscope's own threads), 12 KiB each: far below what 200
 * slots would take (2400 KiB). */
#define MAX_KIB 240

static void *worker(void *arg)
{
    void *volatile p = malloc(100);
    free(p);
    return arg;
}

/* Rss of the mapping of memscope's segment, in KiB; -1 if none. */
static long segment_rss_kib(void)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in_segment = 0;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in_segment = strstr(line, "/memscope.") != NULL;
            continue;
        }
        if (in_segment && strncmp(line, "Rss:", 4) == 0) {
            kib = (kib < 0 ? 0 : kib) + atol(line + 4);
            in_segment = 0;
        }
    }
    fclose(f);
    return kib;
}

int main(void)
{
    for (int i = 0; i < THREADS; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    long kib = segment_rss_kib();
    CHECK_MSG(kib >= 0, "no memscope segment mapped (stats off?)\n");
    CHECK_MSG(kib <= MAX_KIB, "segment resident %ld KiB after %d threads in turn (at most %d wanted)\n", kib, THREADS,
              MAX_KIB);
    say("segment resident: %ld KiB after %d threads\n", kib, THREADS);
    return check_failures;
}
