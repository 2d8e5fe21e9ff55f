/* sized_pool_free: blocks made inside NORECLAIM, freed outside any scope
 * with a sized free (C23 free_sized, jemalloc's sdallocx) giving the size
 * that was asked for.
 *
 * usage: sized_pool_free free_sized|sdallocx   (run with a small pool,
 *        MEMSCOPE_NORECLAIM_POOL=2M, so that many requests are served from
 *        a larger class than their own while their class is restocked)
 *
 * jemalloc trusts a sized free's size to find the block's bin: a pool block
 * of a larger class freed that way through jemalloc lands in the wrong bin
 * and corrupts the slab. The test then makes 40,000 blocks of the same size
 * outside the scope, patterns each, and checks none overlaps another. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"

#define N 4000
#define ROUNDS 16
#define M 40000
static void *kept[N * ROUNDS], *after[M];

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    void (*free_sized_fn)(void *, size_t) = (void (*)(void *, size_t))(uintptr_t)dlsym(RTLD_DEFAULT, "free_sized");
    void (*sdallocx_fn)(void *, size_t, int) = (void (*)(void *, size_t, int))(uintptr_t)dlsym(RTLD_DEFAULT, "sdallocx");
    CHECK(memscope_loaded() && free_sized_fn && sdallocx_fn);
    if (check_failures)
        return check_result();
    int use_sdallocx = strcmp(argv[1], "sdallocx") == 0;

    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    /* Rounds of N until some request was served from a larger class: since
     * scoped threads carve for themselves, a class runs dry only when the
     * uncarved memory does, which takes a varying number of blocks (one
     * round of N was not always enough, 1 run in 12). */
    int got = 0, bigger = 0, made = 0;
    for (int r = 0; r < ROUNDS && bigger == 0; r++) {
        for (int i = 0; i < N; i++, made++) {
            kept[made] = malloc(100);
            if (kept[made]) {
                got++;
                bigger += malloc_usable_size(kept[made]) > 112; /* 112: 100's own class */
            }
        }
    }
    memscope_pop(s);
    CHECK_MSG(bigger > 0, "no request was served from a larger class: the test would prove nothing");
    for (int i = 0; i < made; i++) {
        if (!kept[i])
            continue;
        if (use_sdallocx)
            sdallocx_fn(kept[i], 100, 0);
        else
            free_sized_fn(kept[i], 100);
    }
    for (int i = 0; i < M; i++) {
        after[i] = malloc(100);
        CHECK(after[i] != NULL);
        memset(after[i], i & 0xff, 100);
    }
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int k = 0; k < 100; k++)
            if (((unsigned char *)after[i])[k] != (i & 0xff)) {
                bad++;
                break;
            }
    CHECK_MSG(bad == 0, "%d of %d blocks overwritten by another", bad, M);
    for (int i = 0; i < M; i++)
        free(after[i]);
    malloc_trim(0);
    say("sized_pool_free (%s): %d served in scope, %d from a larger class, freed sized outside; %d of %d later "
        "blocks damaged\n",
        argv[1], got, bigger, bad, M);
    return check_result();
}
