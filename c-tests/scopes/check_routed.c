/* check_routed: memscope_check_routed() from C. A probe whose allocation
 * goes through malloc is served (1); one that allocates elsewhere (here:
 * nothing through malloc) is reported (0: one stderr line per process and
 * the scopes_bypassed event, read by the runner while this waits on
 * stdin); inside NORECLAIM the check declines (-1). */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "memscope.h"

static void probe_malloc(void)
{
    void *volatile p = malloc(64);
    free(p);
}

static void probe_elsewhere(void)
{
    /* An allocator other than memscope would serve this program here. */
}

int main(void)
{
    CHECK(memscope_loaded());
    CHECK(memscope_check_routed(probe_malloc) == 1);
    CHECK(memscope_check_routed(probe_elsewhere) == 0);
    CHECK(memscope_check_routed(probe_elsewhere) == 0); /* said once */
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM);
    int in_scope = memscope_check_routed(probe_malloc);
    memscope_pop(s);
    CHECK(in_scope == -1);
    CHECK(memscope_check_routed(NULL) == -1);
    printf("ready\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return check_result();
}
