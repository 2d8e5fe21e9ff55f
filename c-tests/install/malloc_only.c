/* malloc_only: a program that calls nothing of memscope's, only the malloc
 * family, linked through `pkg-config --libs memscope` with the linker's
 * --as-needed (gcc's default here). It must still run on memscope's
 * malloc: exits 0 if malloc is jemalloc's (a 100-byte request has 112
 * usable bytes: jemalloc's size class; glibc gives 104). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    void *volatile p = malloc(100);
    size_t usable = malloc_usable_size(p);
    free(p);
    if (usable != 112) {
        fprintf(stderr, "malloc_only: malloc(100) has %zu usable bytes: not memscope's malloc\n", usable);
        return 1;
    }
    return 0;
}
