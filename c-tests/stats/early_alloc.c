/* libearly_alloc.so, for segment_cmdline.c built with -DEARLY: a library
 * whose constructor allocates, as libstdc++'s does, before memscope's
 * initialiser has run; it records what the stats segment held then. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "segment_find.h"

int early_cmdline_len = -1;

__attribute__((constructor)) static void allocate_early(void)
{
    void *volatile p = malloc(32);
    free(p);
    const struct memscope_stats_header *h = segment();
    if (h)
        early_cmdline_len = (int)h->cmdline_len;
}
