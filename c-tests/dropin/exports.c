/* Every exported allocator function with its edge cases, as glibc
 * documents them: NULL, 0, overflow, huge sizes, every alignment up to
 * 1 MiB, usable sizes, realloc growth and shrink keeping contents. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* A failed realloc leaves its block alive: reading it after is the point. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
/* mallinfo is deprecated in glibc but still called by programs. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u + seed);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31u + seed))
            return 0;
    return 1;
}

static void test_malloc_free(void)
{
    void *p = malloc(0);
    CHECK(p != NULL); /* glibc: a unique pointer */
    free(p);
    free(NULL);
    for (size_t n = 1; n <= (8u << 20); n = n * 3 + 1) {
        unsigned char *q = malloc(n);
        CHECK_MSG(q != NULL, "malloc(%zu)", n);
        if (!q)
            continue;
        CHECK(((uintptr_t)q & 15) == 0);
        CHECK(malloc_usable_size(q) >= n);
        fill(q, n, 7);
        CHECK(same(q, n, 7));
        free(q);
    }
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX / 2 + 1)) == NULL && errno == ENOMEM);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void)
{
    for (size_t n = 1; n <= (4u << 20); n *= 4) {
        unsigned char *p = malloc(n);
        if (p) {
            memset(p, 0xAB, n); /* dirty memory calloc may get back */
            free(p);
        }
        unsigned char *z = calloc(n, 1);
        CHECK(z != NULL);
        if (!z)
            continue;
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++)
            nonzero += z[i] != 0;
        CHECK_MSG(nonzero == 0, "calloc(%zu) has %zu non-zero bytes", n, nonzero);
        free(z);
    }
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(opaque((size_t)1 << 33), (size_t)1 << 33) == NULL && errno == ENOMEM);
    void *p = calloc(0, 0);
    CHECK(p != NULL);
    free(p);
}

static void test_realloc(void)
{
    unsigned char *p = realloc(NULL, 100); /* = malloc */
    CHECK(p != NULL);
    fill(p, 100, 1);
    size_t n = 100;
    for (size_t next = 200; next <= (16u << 20); next *= 3) {
        unsigned char *q = realloc(p, next);
        CHECK_MSG(q != NULL, "grow to %zu", next);
        if (!q)
            break;
        CHECK_MSG(same(q, n, 1), "contents lost growing %zu -> %zu", n, next);
        fill(q, next, 1);
        p = q;
        n = next;
    }
    for (size_t next = n / 7; next >= 8; next /= 7) {
        unsigned char *q = realloc(p, next);
        CHECK(q != NULL);
        if (!q)
            break;
        CHECK_MSG(same(q, next, 1), "contents lost shrinking to %zu", next);
        p = q;
    }
    errno = 0;
    CHECK(realloc(p, opaque(SIZE_MAX - 4096)) == NULL && errno == ENOMEM);
    CHECK(same(p, 8, 1)); /* the failed realloc left the block alone */
    errno = 0;
    CHECK(realloc(p, 0) == NULL); /* glibc: frees, returns NULL */
    CHECK(errno == 0);

    unsigned char *a = reallocarray(NULL, 10, 10);
    CHECK(a != NULL);
    errno = 0;
    CHECK(reallocarray(a, opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    a = reallocarray(a, 100, 10);
    CHECK(a != NULL && malloc_usable_size(a) >= 1000);
    free(a);
}

static void test_alignment(void)
{
    for (size_t align = 1; align <= (1u << 20); align *= 2) {
        void *p = NULL;
        int rc = posix_memalign(&p, align, 100);
        if (align < sizeof(void *)) {
            CHECK_MSG(rc == EINVAL, "posix_memalign(%zu) -> %d", align, rc);
        } else {
            CHECK_MSG(rc == 0 && p && ((uintptr_t)p % align) == 0, "posix_memalign(%zu)", align);
            free(p);
        }
        void *q = aligned_alloc(align, align * 3);
        CHECK_MSG(q && ((uintptr_t)q % align) == 0, "aligned_alloc(%zu)", align);
        if (q)
            memset(q, 1, align * 3);
        free(q);
        void *m = memalign(align, 10);
        CHECK_MSG(m && ((uintptr_t)m % align) == 0, "memalign(%zu)", align);
        free(m);
    }
    void *p = (void *)1;
    CHECK(posix_memalign(&p, 24, 10) == EINVAL && p == (void *)1);
    CHECK(posix_memalign(&p, 0, 10) == EINVAL);
    CHECK(posix_memalign(&p, 64, opaque(SIZE_MAX - 100)) == ENOMEM && p == (void *)1);
    CHECK(posix_memalign(&p, 64, 0) == 0 && p != (void *)1);
    free(p);
    errno = 0;
    CHECK(aligned_alloc(24, 48) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(0, 48) == NULL && errno == EINVAL);
    void *m = memalign(24, 100); /* glibc rounds up to 32 */
    CHECK(m && ((uintptr_t)m % 32) == 0);
    free(m);
    errno = 0;
    CHECK(memalign(SIZE_MAX / 2 + 2, 1) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(64, opaque(SIZE_MAX - 10)) == NULL && errno == ENOMEM);

    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v && ((uintptr_t)v % (uintptr_t)page) == 0);
    free(v);
    void *pv = pvalloc(1);
    CHECK(pv && ((uintptr_t)pv % (uintptr_t)page) == 0 && malloc_usable_size(pv) >= (size_t)page);
    free(pv);
    pv = pvalloc(0); /* memscope: one page (glibc 2.36 gives a minimal block) */
    CHECK(pv && ((uintptr_t)pv % (uintptr_t)page) == 0);
    free(pv);
    errno = 0;
    CHECK(pvalloc(opaque(SIZE_MAX - 10)) == NULL && errno == ENOMEM);
}

extern void free_sized(void *, size_t) __attribute__((weak));
extern void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));

static void test_c23_frees(void)
{
    CHECK(free_sized != NULL && free_aligned_sized != NULL);
    if (!free_sized || !free_aligned_sized)
        return;
    free_sized(malloc(100), 100);
    free_sized(NULL, 5);
    free_aligned_sized(aligned_alloc(4096, 8192), 4096, 8192);
}

static void test_glibc_extras(void)
{
    void *keep = malloc(1 << 20);
    memset(keep, 1, 1 << 20);
    struct mallinfo2 mi = mallinfo2();
    CHECK_MSG(mi.uordblks >= (1 << 20), "mallinfo2().uordblks = %zu", mi.uordblks);
    CHECK(mi.arena >= mi.uordblks);
    struct mallinfo m1 = mallinfo();
    CHECK(m1.uordblks > 0);
    free(keep);
    /* Make dirty pages, then trim them. */
    void *ps[64];
    for (int i = 0; i < 64; i++) {
        ps[i] = malloc(256 << 10);
        memset(ps[i], 2, 256 << 10);
    }
    for (int i = 0; i < 64; i++)
        free(ps[i]);
    CHECK(malloc_trim(0) == 1);
    CHECK(mallopt(M_ARENA_MAX, 2) == 1);
    CHECK(mallopt(M_MXFAST, 64) == 1);
    CHECK(mallopt(M_MXFAST, 100000) == 0);
    CHECK(mallopt(12345, 1) == 1); /* unknown: accepted, as glibc */
}

int main(void)
{
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_alignment();
    test_c23_frees();
    test_glibc_extras();
    return check_result();
}
