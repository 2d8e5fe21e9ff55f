/* locks_refused: a program that dies on a refused request made under a
 * lock, as a C++ daemon dies of std::bad_alloc: inside a mutex section
 * (MEMSCOPE_LOCK_SCOPE=noreclaim) it asks for 8 MiB, more than any
 * NORECLAIM pool block, from refused_under_lock(), and aborts on the NULL.
 * Its segment, left behind by the abort, must still name the refusal, its
 * size and its site (c-tests/locks/run.sh reads it). */
#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *volatile sink;

__attribute__((noinline)) static void *refused_under_lock(size_t n)
{
    return malloc(n);
}

int main(void)
{
    sink = malloc(16);
    pthread_mutex_lock(&mu);
    void *p = refused_under_lock((size_t)8 << 20);
    if (!p)
        abort();
    sink = p;
    pthread_mutex_unlock(&mu);
    return 0;
}
