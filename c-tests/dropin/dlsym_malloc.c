/* The malloc a program (or a library resolving it by name) gets is the
 * shim's, not glibc's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int from_shim(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname) /* dladdr takes the address as data */
        return 0;
    int ok = strstr(info.dli_fname, "libmemscope.so") != NULL;
    if (!ok)
        say("%s resolves to %s\n", name, info.dli_fname);
    return ok;
}

int main(void)
{
    const char *names[] = {"malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc",
                           "memalign", "valloc", "pvalloc", "malloc_usable_size", "reallocarray",
                           "malloc_trim", "mallinfo2", "mallopt", "mallocx", "sdallocx", "mallctl",
                           "memscope_push", "memscope_pop", "memscope_current"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK_MSG(from_shim(names[i]), "%s", names[i]);
    /* And the direct call too: a block from malloc() is known to mallctl's
     * jemalloc (sallocx answers for it). */
    size_t (*sallocx)(const void *, int);
    *(void **)&sallocx = dlsym(RTLD_DEFAULT, "sallocx");
    void *p = malloc(100);
    CHECK(sallocx && sallocx(p, 0) == 112);
    free(p);
    return check_result();
}
