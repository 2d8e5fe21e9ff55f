/* prepare: memscope_prepare(size, count) stocks count blocks before a
 * scope, so that a NORECLAIM burst larger than the pool's headroom is
 * served in full, on a thread that may make no syscall at all (write-only
 * seccomp filter), without waiting for the maintenance thread. With a
 * 4 MiB pool, 200 blocks of 100,000 bytes (about 23 MiB): all served when
 * prepared; the control run without memscope_prepare is refused most of
 * them. Bad calls fail with EINVAL: size 0, above the pool's largest
 * block, inside NORECLAIM.
 *   prepare prepared | unprepared */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"
#include "seccomp.h"

enum { COUNT = 200, SIZE = 100000 };

static long rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib / 1024;
}

/* Every syscall but write and exit_group kills the process. */
static int allow_only_write(void)
{
    static const long allowed[] = {SYS_write, SYS_exit_group};
    return allow_only_syscalls(allowed, 2);
}

int main(int argc, char **argv)
{
    int prepared = argc == 2 && strcmp(argv[1], "prepared") == 0;
    errno = 0;
    CHECK(memscope_prepare(0, 1) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(memscope_prepare(5 << 20, 1) == -1 && errno == EINVAL);
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    errno = 0;
    int inside = memscope_prepare(64, 1);
    int inside_errno = errno;
    memscope_pop(s);
    CHECK(inside == -1 && inside_errno == EINVAL);
    if (prepared) {
        CHECK(memscope_prepare(SIZE, COUNT) == 0);
        /* Large blocks, feasible: once refused (stocked through jemalloc,
         * whose extents cost up to twice their size). */
        CHECK_MSG(memscope_prepare(1 << 20, 40) == 0, "prepare(1 MiB, 40) refused (errno %d)", errno);
        /* Beyond the pool's maximum: refused at once, committing nothing
         * (it once committed all 4 GiB, and kept it, before refusing). */
        long before = rss_mib();
        errno = 0;
        CHECK(memscope_prepare(4 << 20, 2000) == -1 && errno == ENOMEM);
        errno = 0;
        CHECK(memscope_prepare(16, (size_t)-1) == -1 && errno == ENOMEM);
        CHECK_MSG(rss_mib() - before < 64, "a refused prepare grew RSS from %ld to %ld MiB", before, rss_mib());
    }
    static void *p[COUNT];
    CHECK(allow_only_write() == 0);
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    int served = 0;
    for (int i = 0; i < COUNT; i++) {
        p[i] = malloc(SIZE);
        if (p[i]) {
            memset(p[i], i, SIZE);
            served++;
        }
    }
    for (int i = 0; i < COUNT; i++)
        free(p[i]);
    memscope_pop(s);
    if (prepared)
        CHECK_MSG(served == COUNT, "prepared: %d of %d blocks of %d bytes served", served, COUNT, SIZE);
    else
        CHECK_MSG(served < COUNT, "unprepared: all %d served: the control proves nothing", COUNT);
    say("prepare (%s): %d of %d blocks of %d bytes served under a write-only filter\n", argv[1], served, COUNT, SIZE);
    _exit(check_result()); /* exit_group only: exit() would run atexit handlers' syscalls */
}
