/* dlopen of a library that allocates; blocks cross the boundary both ways. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    if (argc != 2)
        return check_result();
    void *h = dlopen(argv[1], RTLD_NOW);
    CHECK_MSG(h != NULL, "%s", dlerror());
    if (!h)
        return check_result();
    /* POSIX's sanctioned way to turn dlsym's void * into a function. */
    char *(*dup)(const char *);
    void (*lfree)(void *);
    int (*kept)(void);
    *(void **)&dup = dlsym(h, "lib_dup");
    *(void **)&lfree = dlsym(h, "lib_free");
    *(void **)&kept = dlsym(h, "lib_kept_ok");
    CHECK(dup && lfree && kept);
    for (int i = 0; i < 1000; i++) {
        char *d = dup("memscope");
        CHECK(strcmp(d, "memscope") == 0);
        free(d); /* freed by the program */
        lfree(malloc(100)); /* freed by the library */
    }
    CHECK(kept());
    CHECK(dlclose(h) == 0);
    return check_result();
}
