/* fork_cow: after a fork, NORECLAIM writes private pages again. A fork
 * makes every resident page of the pool (and memscope's writable image)
 * copy-on-write, shared with the child: the parent's first write to each
 * one faults, on a scoped thread too (1,813 faults in the next NORECLAIM
 * phase of an outside review's program, once). The parent's fork handler
 * has the maintenance thread write them again (D65).
 *
 *   1. The pool is made and used (NORECLAIM rounds of 64 B-16 KiB).
 *   2. The process forks a child that exits at once; the parent waits
 *      for it, then 1 s for the maintenance thread.
 *   3. A short NORECLAIM round of every size warms the thread's own stack
 *      and TLS, and the array of pointers is written (the program's
 *      pages, copy-on-write too: not memscope's to touch).
 *   4. 2,048 blocks of 64 B-16 KiB, about 9 MiB, allocated inside
 *      NORECLAIM and each written whole (a refused one asked again after
 *      1 ms), take no page fault. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

static const size_t sizes[] = {64, 256, 1024, 4096, 16384};
static void *blocks[2048];

int main(void)
{
    for (int round = 0; round < 5; round++) {
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        for (int i = 0; i < 512; i++) {
            blocks[i] = malloc(opaque(sizes[i % 5]));
            if (blocks[i])
                memset(blocks[i], 1, sizes[i % 5]);
        }
        for (int i = 0; i < 512; i++)
            free(blocks[i]);
        memscope_pop(s);
        pause_us(100000);
    }

    pid_t child = fork();
    if (child == 0)
        _exit(0);
    int status = -1;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pause_us(1000000);

    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 64; i++)
        free(malloc(opaque(sizes[i % 5])));
    memscope_pop(s);
    /* The program's own array of pointers: its pages are shared too. */
    memset(blocks, 0, sizeof blocks);

    long refused = 0, faults = minor_faults();
    s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    for (int i = 0; i < 2048; i++) {
        size_t size = sizes[i % 5];
        while (!(blocks[i] = malloc(opaque(size)))) {
            refused++;
            pause_us(1000);
            if (refused >= 20000)
                break;
        }
        if (blocks[i])
            memset(blocks[i], 2, size);
    }
    memscope_pop(s);
    faults = minor_faults() - faults;
    say("fork_cow: 2,048 blocks after a fork: %ld refusals asked again, %ld page faults\n", refused, faults);
    CHECK_MSG(refused < 20000, "the pool does not serve after the fork");
    CHECK_MSG(faults == 0, "%ld page faults inside NORECLAIM after a fork", faults);
    for (int i = 0; i < 2048; i++)
        free(blocks[i]);
    return check_result();
}
