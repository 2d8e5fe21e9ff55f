/* check.h: the tiny test helper every C test uses. A failed CHECK prints
 * the expression and location and counts; main returns the count. Output
 * goes through snprintf + write(2) so that it works on threads where stdio
 * could allocate (seccomp-filtered ones). */
#ifndef MEMSCOPE_CHECK_H
#define MEMSCOPE_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int check_failures;

__attribute__((format(printf, 1, 2))) static inline void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            __atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED);          \
            say("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
        }                                                                      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            __atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED);          \
            say("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            say(__VA_ARGS__);                                                  \
            say("\n");                                                         \
        }                                                                      \
    } while (0)

/* Hides a value from the optimiser, so absurd sizes reach the allocator
 * instead of compile-time warnings. */
static inline size_t opaque(size_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

#ifdef _GNU_SOURCE
/* For tests built with _GNU_SOURCE: the calling thread's minor page
 * faults so far, and a sleep of `us` microseconds. */
static inline long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

static inline void pause_us(long us)
{
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}
#endif

/* The exit status of a test: its failure count, capped below 126. */
static inline int check_result(void)
{
    int n = __atomic_load_n(&check_failures, __ATOMIC_RELAXED);
    return n > 125 ? 125 : n;
}

/* For a test read live by the runner (memscope-stat against its segment):
 * unless a check failed already, says "ready" on stdout and waits until
 * the runner closes stdin; returns the test's exit status. */
static inline int ready_then_wait(void)
{
    if (check_failures)
        return check_result();
    printf("ready\n");
    fflush(stdout);
    char buf[16];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return check_result();
}

#endif
