/* A program compiled with memscope.h runs without libmemscope.so (scopes
 * are no-ops) and gets real scopes when the same binary is preloaded.
 *
 *   no_library absent    run without LD_PRELOAD
 *   no_library present   run with LD_PRELOAD=libmemscope.so */
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "check.h"

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    if (argc != 2)
        return check_result();
    int present = strcmp(argv[1], "present") == 0;
    CHECK(memscope_loaded() == present);
    unsigned s = memscope_noreclaim_save();
    CHECK(s == 0);
    CHECK(memscope_current_flags() == (present ? MEMSCOPE_NORECLAIM : 0u));
    void *p = malloc(4096);
    CHECK(p != NULL);
    free(p);
    {
        MEMSCOPE_SCOPE(MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN);
        CHECK(memscope_current_flags() ==
              (present ? (MEMSCOPE_NORECLAIM | MEMSCOPE_NOFAIL | MEMSCOPE_NOWARN) : 0u));
    }
    memscope_noreclaim_restore(s);
    CHECK(memscope_current_flags() == 0);
    return check_result();
}
