/* huge_requests: requests no allocator can meet (sizes near SIZE_MAX,
 * alignments up to 2^62, products that overflow) through every entry
 * point, in every scope. Each must fail (NULL with ENOMEM, or EINVAL
 * where C says so) and hand out no memory: a size rounded up to an
 * alignment once wrapped inside NORECLAIM and returned a 64-byte block
 * for posix_memalign(64, SIZE_MAX - 1). realloc must leave the old block
 * intact. Under NOFAIL such a request is impossible and follows
 * MEMSCOPE_NOFAIL_POLICY: with `null` it fails at once (an alignment of
 * 2^62 used to retry forever), with `abort` it aborts (checked one
 * request per child process).
 *   huge_requests sweep | abort-each */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

typedef void *(*mallocx_fn)(size_t, int);
typedef void *(*rallocx_fn)(void *, size_t, int);
static mallocx_fn mallocx_p;
static rallocx_fn rallocx_p;

#define ALIGN_BITS(a) (__builtin_ctzl(a))
#define ZERO_BIT 0x40

static const size_t sizes[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 100, SIZE_MAX - 4095, SIZE_MAX / 2 + 1, SIZE_MAX / 2, (size_t)1 << 62,
    ((size_t)1 << 62) + 1, (size_t)1 << 56, (size_t)1 << 48,
};
static const size_t aligns[] = {0, 16, 64, 4096, 8192, (size_t)1 << 20, (size_t)1 << 30, (size_t)1 << 40,
                                (size_t)1 << 62};
static const unsigned scopes[] = {0, MEMSCOPE_NORECLAIM, MEMSCOPE_NOFAIL, MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL};

enum entry { MALLOC, CALLOC_1N, CALLOC_2N, REALLOC, REALLOCARRAY, POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN, VALLOC,
             PVALLOC, MALLOCX, MALLOCX_ZERO, RALLOCX, ENTRIES };
static const char *const entry_names[] = {"malloc", "calloc(1,n)", "calloc(2,n)", "realloc", "reallocarray",
                                          "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc",
                                          "mallocx", "mallocx(ZERO)", "rallocx"};

/* One request; returns what it handed out (NULL expected) and sets *err
 * to errno (or posix_memalign's result). `old` is the block realloc and
 * rallocx resize. */
static void *request(enum entry e, size_t size, size_t align, void *old, int *err)
{
    void *p = NULL;
    int rc;
    errno = 0;
    switch (e) {
    case MALLOC:
        p = malloc(size);
        break;
    case CALLOC_1N:
        p = calloc(1, size);
        break;
    case CALLOC_2N:
        p = calloc(2, size);
        break;
    case REALLOC:
        p = realloc(old, size);
        break;
    case REALLOCARRAY:
        p = reallocarray(old, 2, size);
        break;
    case POSIX_MEMALIGN:
        rc = posix_memalign(&p, align ? align : 8, size);
        if (rc != 0)
            p = NULL;
        errno = rc;
        break;
    case ALIGNED_ALLOC:
        p = aligned_alloc(align ? align : 1, size);
        break;
    case MEMALIGN:
        p = memalign(align ? align : 1, size);
        break;
    case VALLOC:
        p = valloc(size);
        break;
    case PVALLOC:
        p = pvalloc(size);
        break;
    case MALLOCX:
        p = mallocx_p ? mallocx_p(size, align ? ALIGN_BITS(align) : 0) : NULL;
        break;
    case MALLOCX_ZERO:
        p = mallocx_p ? mallocx_p(size, (align ? ALIGN_BITS(align) : 0) | ZERO_BIT) : NULL;
        break;
    case RALLOCX:
        p = rallocx_p ? rallocx_p(old, size, align ? ALIGN_BITS(align) : 0) : NULL;
        break;
    default:
        break;
    }
    *err = errno;
    return p;
}

static int resizes(enum entry e) { return e == REALLOC || e == REALLOCARRAY || e == RALLOCX; }

static void sweep(void)
{
    long cases = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (size_t ai = 0; ai < sizeof aligns / sizeof *aligns; ai++)
            for (size_t sc = 0; sc < sizeof scopes / sizeof *scopes; sc++)
                for (int e = 0; e < ENTRIES; e++) {
                    size_t size = sizes[si], align = aligns[ai];
                    /* The resized block, made before the scope. */
                    char *old = resizes((enum entry)e) ? malloc(100) : NULL;
                    if (old)
                        memset(old, 0x5a, 100);
                    unsigned s = memscope_push(scopes[sc] | MEMSCOPE_NOWARN);
                    int err = 0;
                    void *p = request((enum entry)e, size, align, old, &err);
                    memscope_pop(s);
                    cases++;
                    if (p != NULL) {
                        say("%s(size %#zx, align %#zx) in scope %#x handed out %p\n", entry_names[e], size, align,
                            scopes[sc], p);
                        check_failures++;
                        continue; /* never free what may overlap the heap */
                    }
                    /* jemalloc's mallocx and rallocx promise nothing of errno. */
                    int sets_errno = e != MALLOCX && e != MALLOCX_ZERO && e != RALLOCX;
                    if (sets_errno && err != ENOMEM && err != EINVAL) {
                        say("%s(size %#zx, align %#zx) in scope %#x: errno %d, wanted ENOMEM or EINVAL\n",
                            entry_names[e], size, align, scopes[sc], err);
                        check_failures++;
                    }
                    if (old) {
                        for (int k = 0; k < 100; k++)
                            if (old[k] != 0x5a) {
                                say("%s(size %#zx) in scope %#x damaged the old block\n", entry_names[e], size,
                                    scopes[sc]);
                                check_failures++;
                                break;
                            }
                        free(old);
                    }
                }
    if (check_failures == 0)
        say("huge_requests: %ld impossible requests, every one refused\n", cases);
}

/* Each impossible request under NOFAIL, alone in a child: it must die of
 * SIGABRT (MEMSCOPE_NOFAIL_POLICY=abort). */
static void abort_each(void)
{
    long cases = 0, aborted = 0;
    const size_t few_sizes[] = {SIZE_MAX, SIZE_MAX / 2 + 1, 16};
    const size_t few_aligns[] = {0, 64, (size_t)1 << 62};
    for (size_t si = 0; si < 3; si++)
        for (size_t ai = 0; ai < 3; ai++)
            for (int e = 0; e < ENTRIES; e++) {
                if (few_sizes[si] == 16 && few_aligns[ai] != ((size_t)1 << 62))
                    continue; /* a possible request */
                if (few_sizes[si] == 16 && (e == MALLOC || e == CALLOC_1N || e == CALLOC_2N || e == REALLOC ||
                                            e == REALLOCARRAY || e == VALLOC || e == PVALLOC))
                    continue; /* these take no alignment: 16 bytes is possible */
                for (int nr = 0; nr < 2; nr++) {
                    pid_t pid = fork();
                    if (pid == 0) {
                        char *old = resizes((enum entry)e) ? malloc(100) : NULL;
                        alarm(20);
                        memscope_push(MEMSCOPE_NOFAIL | (nr ? MEMSCOPE_NORECLAIM : 0));
                        int err;
                        void *p = request((enum entry)e, few_sizes[si], few_aligns[ai], old, &err);
                        _exit(p ? 3 : 4);
                    }
                    int st = 0;
                    waitpid(pid, &st, 0);
                    cases++;
                    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) {
                        aborted++;
                    } else {
                        say("%s(size %#zx, align %#zx) under NOFAIL%s: %s %d, wanted SIGABRT\n", entry_names[e],
                            few_sizes[si], few_aligns[ai], nr ? "|NORECLAIM" : "",
                            WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                        check_failures++;
                    }
                }
            }
    say("huge_requests abort-each: %ld of %ld impossible NOFAIL requests aborted\n", aborted, cases);
}

/* An alignment is address space, not memory: one the machine maps
 * without a scope is served under NOFAIL too (NOFAIL counted it against
 * MEMSCOPE_NOFAIL_MAX and refused 2^35 on a 23 GiB machine). */
static void servable_alignments(void)
{
    for (int lg = 30; lg <= 40; lg++) {
        size_t align = (size_t)1 << lg;
        void *plain = aligned_alloc(align, 16);
        if (!plain)
            break;
        free(plain);
        unsigned s = memscope_push(MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
        void *p = aligned_alloc(align, 16);
        memscope_pop(s);
        CHECK_MSG(p != NULL, "aligned_alloc(2^%d, 16) served without a scope, refused under NOFAIL", lg);
        free(p);
    }
}

int main(int argc, char **argv)
{
    mallocx_p = (mallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallocx");
    rallocx_p = (rallocx_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "rallocx");
    CHECK(mallocx_p != NULL && rallocx_p != NULL);
    /* Scopes set up once, outside (the pool made, the thread's lists). */
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL));
    if (argc == 2 && strcmp(argv[1], "sweep") == 0) {
        sweep();
        servable_alignments();
    }
    else if (argc == 2 && strcmp(argv[1], "abort-each") == 0)
        abort_each();
    else
        CHECK_MSG(0, "usage: huge_requests sweep | abort-each");
    return check_result();
}
