/* reserve_carve: inside NORECLAIM|NOFAIL the reserve serves any request it
 * has room for, not only the sizes its stacks hold (an outside review saw
 * a 334,762-byte request refused under a 2 MiB pool while the reserve had
 * 13.2 MiB ready).
 *
 * usage: reserve_carve SIZE COUNT      (MEMSCOPE_NORECLAIM_POOL=2M)
 *
 * The thread is set up (one NORECLAIM|NOFAIL scope), then inside one
 * scope keeps COUNT blocks of SIZE bytes live, each written whole: every
 * one must be served while their total stays below the reserve
 * (MEMSCOPE_RESERVE, 16 MiB) plus the pool. A request beyond the reserve's
 * room is answered by the policy (null), counted. Then, outside the scope,
 * everything is freed and the maintenance thread has a second to commit
 * what the reserve gave away: the same burst is served again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

static int burst(size_t size, int count, void **p)
{
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
    int served = 0;
    for (int i = 0; i < count; i++) {
        p[i] = malloc(opaque(size));
        if (p[i]) {
            memset(p[i], 0x5a, size);
            served++;
        }
    }
    memscope_pop(s);
    for (int i = 0; i < count; i++)
        free(p[i]);
    return served;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    size_t size = (size_t)atol(argv[1]);
    int count = atoi(argv[2]);
    void **p = calloc((size_t)count, sizeof *p);
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL));
    int first = burst(size, count, p);
    CHECK_MSG(first == count, "first burst: %d of %d blocks of %zu bytes served", first, count, size);
    sleep(1);
    int second = burst(size, count, p);
    CHECK_MSG(second == count, "second burst: %d of %d blocks of %zu bytes served", second, count, size);
    free(p);
    return check_result();
}
