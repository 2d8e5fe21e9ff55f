/* A library loaded with dlopen that allocates in its constructor and in
 * its functions, and frees blocks the program allocated. */
#include <stdlib.h>
#include <string.h>

static char *kept;

__attribute__((constructor)) static void init(void)
{
    kept = malloc(12345);
    memset(kept, 'k', 12345);
}

char *lib_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    memcpy(d, s, n);
    return d;
}

void lib_free(void *p) { free(p); }

int lib_kept_ok(void) { return kept[0] == 'k' && kept[12344] == 'k'; }
