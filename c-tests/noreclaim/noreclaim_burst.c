/* noreclaim_burst: a thread that, every 20 ms, takes a burst of blocks
 * inside one NORECLAIM scope and frees them all before leaving it (net
 * demand zero, peak demand the whole burst). The first bursts may be
 * refused in part (a cold class is stocked from the demand it showed);
 * from the fifth on, none may be: the stock must follow the peak.
 *   noreclaim_burst COUNT SIZE */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "memscope.h"

int main(int argc, char **argv)
{
    CHECK(argc == 3);
    if (argc != 3)
        return check_result();
    int n = atoi(argv[1]);
    size_t size = (size_t)atol(argv[2]);
    void **p = calloc((size_t)n, sizeof *p);
    CHECK(p != NULL && n > 0);
    memscope_pop(memscope_push(MEMSCOPE_NORECLAIM));
    int late = 0;
    for (int round = 0; round < 30; round++) {
        int refused = 0;
        unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        for (int i = 0; i < n; i++) {
            p[i] = malloc(size);
            refused += p[i] == NULL;
        }
        for (int i = 0; i < n; i++)
            free(p[i]);
        memscope_pop(s);
        if (round >= 4)
            late += refused;
        usleep(20000);
    }
    CHECK_MSG(late == 0, "%d blocks of %zu bytes refused after the fourth burst of %d", late, size, n);
    free(p);
    if (late == 0)
        say("noreclaim_burst: %d x %zu bytes, nothing refused after warm-up\n", n, size);
    return check_result();
}
