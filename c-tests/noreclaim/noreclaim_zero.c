/* noreclaim_zero: a zeroed allocation is zero up to its usable size
 * (malloc_usable_size), as glibc's and jemalloc's are, in every scope.
 * Programs rely on it (they grow into the slack). NORECLAIM's calloc once
 * zeroed only the bytes asked for: 768 dirty slack bytes in 64
 * calloc(1, 100). Each block is first dirtied (made, filled with 0xff,
 * freed) so a reused one shows what was left in it; sizes sweep the small
 * and large classes; calloc, mallocx(MALLOCX_ZERO) and rallocx(ZERO)
 * growing a block are checked. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"

#define ZERO_BIT 0x40
#define N 64

typedef void *(*mallocx_fn)(size_t, int);
typedef void *(*rallocx_fn)(void *, size_t, int);

static long dirty_blocks;

static void check_zero(const char *what, size_t size, unsigned char *p)
{
    if (!p) {
        /* NORECLAIM may refuse once its pool is spent (this sweep leaves
         * each class's blocks behind); zeroing is what is checked here. */
        if (!(memscope_current() & MEMSCOPE_NORECLAIM)) {
            say("%s(%zu) refused\n", what, size);
            check_failures++;
        }
        return;
    }
    size_t usable = malloc_usable_size(p);
    for (size_t i = 0; i < usable; i++)
        if (p[i] != 0) {
            if (dirty_blocks++ < 5)
                say("%s(%zu): byte %zu of %zu usable is %#x\n", what, size, i, usable, p[i]);
            break;
        }
}

/* Blocks per round: 64, or fewer so that a round keeps at most 8 MiB
 * (the NORECLAIM pool's default headroom holds it). */
static int n;

static void dirty(size_t size)
{
    void *b[N];
    for (int i = 0; i < n; i++) {
        b[i] = malloc(size);
        if (b[i])
            memset(b[i], 0xff, malloc_usable_size(b[i]));
    }
    for (int i = 0; i < n; i++)
        free(b[i]);
}

int main(void)
{
    mallocx_fn mallocx_p = (mallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallocx");
    rallocx_fn rallocx_p = (rallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "rallocx");
    CHECK(mallocx_p && rallocx_p);
    if (!mallocx_p || !rallocx_p)
        return check_result();
    const unsigned scopes[] = {0, MEMSCOPE_NORECLAIM, MEMSCOPE_NOFAIL, MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL};
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL));
    long checked = 0;
    for (size_t sc = 0; sc < sizeof scopes / sizeof *scopes; sc++)
        for (size_t size = 1; size <= (1 << 20); size = size * 5 / 3 + 1) {
            unsigned s = memscope_push(scopes[sc]);
            void *b[N];
            n = (int)((8 << 20) / (2 * size + 7));
            n = n < 1 ? 1 : n > N ? N : n;
            dirty(size + 7);
            for (int i = 0; i < n; i++) {
                b[i] = calloc(1, size);
                check_zero("calloc", size, b[i]);
            }
            for (int i = 0; i < n; i++)
                free(b[i]);
            dirty(size + 7);
            for (int i = 0; i < n; i++) {
                b[i] = mallocx_p(size, ZERO_BIT);
                check_zero("mallocx(ZERO)", size, b[i]);
            }
            for (int i = 0; i < n; i++)
                free(b[i]);
            /* Growing a zeroed block keeps it zero to its new usable size. */
            dirty(2 * size + 7);
            for (int i = 0; i < n; i++) {
                b[i] = mallocx_p(size, ZERO_BIT);
                b[i] = b[i] ? rallocx_p(b[i], 2 * size, ZERO_BIT) : NULL;
                check_zero("rallocx(ZERO)", 2 * size, b[i]);
            }
            for (int i = 0; i < n; i++)
                free(b[i]);
            memscope_pop(s);
            checked += 3 * n;
        }
    /* A zeroing rallocx that moves a block to a smaller one: zero past
     * what it copied (it zeroed from the old size only, leaving the
     * reused block's bytes). */
    for (size_t sc = 0; sc < sizeof scopes / sizeof *scopes; sc++) {
        unsigned s = memscope_push(scopes[sc]);
        n = N;
        dirty(16);
        void *b[N];
        for (int i = 0; i < N; i++) {
            b[i] = mallocx_p(1, ZERO_BIT | 6 /* 64-aligned */);
            b[i] = b[i] ? rallocx_p(b[i], 3, ZERO_BIT) : NULL;
            check_zero("rallocx(ZERO) shrinking", 3, b[i]);
        }
        for (int i = 0; i < N; i++)
            free(b[i]);
        memscope_pop(s);
    }
    CHECK_MSG(dirty_blocks == 0, "%ld zeroed blocks with dirty bytes within their usable size", dirty_blocks);
    if (dirty_blocks == 0)
        say("noreclaim_zero: %ld zeroed blocks, each zero to its usable size\n", checked);
    return check_result();
}
