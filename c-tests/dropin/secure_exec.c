/* secure_exec: built linked against libmemscope.so (not preloaded: the
 * loader ignores LD_PRELOAD paths in secure-execution mode) and installed
 * set-user-id to another user, then run by c-tests/dropin/run.sh with
 * MEMSCOPE_* and MALLOC_CONF set to values that would each show: a stats
 * directory of the caller's choosing, bad values that warn, an option
 * jemalloc rejects. In AT_SECURE mode memscope must ignore them all.
 *
 *   secure_exec DIR    exits 0 if AT_SECURE is set, memscope is live, its
 *                      segment is in /dev/shm (the default) and not in DIR */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    CHECK_MSG(getauxval(AT_SECURE) != 0, "not in secure-execution mode: the test proves nothing");
    CHECK_MSG(memscope_loaded(), "libmemscope.so is not loaded");
    void *volatile p = malloc(100);
    free(p);
    char path[512];
    snprintf(path, sizeof path, "%s/memscope.%d", argv[1], (int)getpid());
    CHECK_MSG(access(path, F_OK) != 0, "%s exists: MEMSCOPE_STATS_DIR was obeyed", path);
    snprintf(path, sizeof path, "/dev/shm/memscope.%d", (int)getpid());
    CHECK_MSG(access(path, F_OK) == 0, "%s missing: stats are not in the default directory", path);
    return check_result();
}
