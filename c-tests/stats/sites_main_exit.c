/* sites_main_exit: call sites survive the exit of the thread in the first
 * thread slot. The main thread (the first to allocate: the first slot)
 * starts a worker that records 5 refusals (NORECLAIM, 8 MiB) and exits:
 * they join the retired table. Then main leaves with pthread_exit while a
 * watcher thread lives on; the watcher waits for main's exit to be folded
 * and counts the refusals still in the segment's tables: 5 + main's own 3.
 * (The tables were once indexed by the thread's slot number, not its
 * slot's: the first slot's thread wrote the retired table itself, and its
 * exit folded that table into itself and cleared it.) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

static const struct memscope_stats_header *h;
static void *volatile sink;

static void refuse(int n)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < n; i++)
        sink = malloc(opaque((size_t)8 << 20));
    memscope_pop(s);
}

static uint64_t refusals(void)
{
    uint64_t n = 0;
    for (uint32_t t = 0; t < h->slot_count; t++) {
        const struct memscope_site_table *tab =
            (const void *)((const char *)h + h->sites_offset + (size_t)t * h->site_table_size);
        for (int e = 0; e < MEMSCOPE_SITE_ENTRIES; e++)
            if (tab->entries[e].kind == MEMSCOPE_SITE_REFUSED)
                n += tab->entries[e].count;
    }
    return n;
}

static void *worker(void *arg)
{
    (void)arg;
    refuse(5);
    return NULL;
}

static void *watcher(void *arg)
{
    uint64_t folds = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < 5000 && __atomic_load_n(&h->folds_finished, __ATOMIC_ACQUIRE) <= folds; i++)
        usleep(1000);
    CHECK_MSG(h->folds_finished > folds, "main's exit was not folded");
    uint64_t n = refusals();
    CHECK_MSG(n == 8, "%lu refusals left in the tables after the first slot's thread exited, want 8",
              (unsigned long)n);
    exit(check_result());
}

int main(void)
{
    sink = malloc(16);
    h = segment();
    if (!h) {
        say("no segment\n");
        return 1;
    }
    refuse(3);
    pthread_t w;
    pthread_create(&w, NULL, worker, NULL);
    pthread_join(w, NULL);
    CHECK_MSG(refusals() == 8, "%lu refusals before main exits", (unsigned long)refusals());
    pthread_t t;
    pthread_create(&t, NULL, watcher, (void *)(uintptr_t)h->folds_finished);
    pthread_exit(NULL);
}
