/* align_sweep: every aligned entry point, every power-of-two alignment from
 * 1 to 64 KiB, sizes from 0 to twice the alignment (all of them up to 512
 * bytes, then every eighth of the alignment and its neighbours), outside
 * any scope and inside NORECLAIM, NOFAIL and both. Every block must be
 * aligned, non-NULL, and usable over its whole size; each is freed with
 * the matching call. (glibc's and jemalloc's own tests check single
 * cases; Debian's jemalloc 5.3.0 segfaulted and mimalloc 2.0.9 returned
 * misaligned blocks on sweeps like this one.)
 *
 * mallocx/rallocx/sdallocx are looked up at run time: present under the
 * preload, skipped (and reported) without it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"

#define MAX_ALIGN ((size_t)64 << 10)

typedef void *(*mallocx_fn)(size_t, int);
typedef void *(*rallocx_fn)(void *, size_t, int);
typedef void (*sdallocx_fn)(void *, size_t, int);
static mallocx_fn p_mallocx;
static rallocx_fn p_rallocx;
static sdallocx_fn p_sdallocx;

/* jemalloc's MALLOCX_LG_ALIGN(la). */
static int lg_align_flag(size_t align)
{
    int lg = 0;
    while (((size_t)1 << lg) < align)
        lg++;
    return lg;
}

static long blocks;

static void use(void *p, size_t align, size_t size, const char *what, unsigned scope)
{
    blocks++;
    CHECK_MSG(p != NULL, "%s(align %zu, size %zu) in scope %#x: NULL", what, align, size, scope);
    if (p == NULL)
        return;
    CHECK_MSG(((uintptr_t)p & (align - 1)) == 0, "%s(align %zu, size %zu) in scope %#x: %p misaligned", what,
              align, size, scope, p);
    if (size > 0) {
        memset(p, 0xa5, size);
        CHECK(((unsigned char *)p)[size - 1] == 0xa5);
    }
}

/* Two blocks from each call, both live at once: a lone block freed and
 * asked for again comes back at the same address, which hides an 8-byte
 * class handed out for a 16-byte alignment half of the time. */
static void one(size_t align, size_t size, unsigned scope)
{
    void *p[2];
    size_t pm_align = align < sizeof(void *) ? sizeof(void *) : align;

    for (int k = 0; k < 2; k++) {
        p[k] = memalign(align, size);
        use(p[k], align, size, "memalign", scope);
    }
    free(p[0]);
    free(p[1]);

    for (int k = 0; k < 2; k++) {
        p[k] = NULL;
        int rc = posix_memalign(&p[k], pm_align, size);
        CHECK_MSG(rc == 0, "posix_memalign(%zu, %zu) = %d in scope %#x", pm_align, size, rc, scope);
        use(p[k], pm_align, size, "posix_memalign", scope);
    }
    free(p[0]);
    free(p[1]);

    for (int k = 0; k < 2; k++) {
        p[k] = aligned_alloc(align, size);
        use(p[k], align, size, "aligned_alloc", scope);
    }
    free(p[0]);
    free(p[1]);

    if (p_mallocx) {
        int flags = lg_align_flag(align);
        size_t n = size ? size : 1; /* mallocx(0) is undefined in jemalloc */
        for (int k = 0; k < 2; k++) {
            p[k] = p_mallocx(n, flags);
            use(p[k], align, n, "mallocx", scope);
            if (!p[k])
                continue;
            /* Grow and shrink it, keeping the alignment. */
            void *q = p_rallocx(p[k], n * 2 + 1, flags);
            use(q, align, n * 2 + 1, "rallocx (grow)", scope);
            if (q) {
                p[k] = q;
                q = p_rallocx(p[k], n, flags);
                use(q, align, n, "rallocx (shrink)", scope);
                if (q)
                    p[k] = q;
            }
        }
        for (int k = 0; k < 2; k++)
            if (p[k])
                p_sdallocx(p[k], n, flags);
    }
}

static void sweep(unsigned scope)
{
    unsigned saved = memscope_save(scope);
    for (size_t align = 1; align <= MAX_ALIGN; align *= 2) {
        size_t top = 2 * align;
        for (size_t size = 0; size <= top; size++) {
            if (size > 512) {
                /* Past 512 bytes: each eighth of the alignment and the
                 * sizes either side of it. */
                size_t step = align / 8;
                size_t r = size % step;
                if (r != 0 && r != 1 && r != step - 1) {
                    size += step - r - 2;
                    continue;
                }
            }
            one(align, size, scope);
        }
    }
    /* valloc and pvalloc: page-aligned, every size up to two pages, then
     * a few large ones. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t size = 0; size <= 2 * page + 1; size += (size < 64 ? 1 : 61)) {
        void *p = valloc(size);
        use(p, page, size, "valloc", scope);
        free(p);
        p = pvalloc(size);
        use(p, page, size, "pvalloc", scope);
        /* Whole pages (glibc itself gives less than a page for 0). */
        if (p && size > 0)
            CHECK(malloc_usable_size(p) >= (size + page - 1) / page * page);
        free(p);
    }
    memscope_restore(saved);
}

int main(void)
{
    p_mallocx = (mallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallocx");
    p_rallocx = (rallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "rallocx");
    p_sdallocx = (sdallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "sdallocx");
    if (!p_mallocx || !p_rallocx || !p_sdallocx) {
        say("align_sweep: no mallocx in this process; the jemalloc entry points are skipped\n");
        p_mallocx = NULL;
    }
    /* Warm the thread outside any scope, as the README asks. */
    free(malloc(1));
    const unsigned scopes[] = {0, MEMSCOPE_NORECLAIM, MEMSCOPE_NOFAIL, MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL};
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
        if (memscope_loaded() || scopes[i] == 0)
            sweep(scopes[i]);
    say("align_sweep: %ld blocks checked\n", blocks);
    return check_result();
}
