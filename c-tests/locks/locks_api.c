/* locks_api: a lock memscope cannot see (a spinlock of the program's own,
 * on a C11 atomic) told to memscope with memscope_lock_acquired() and
 * memscope_lock_released(), without libmemscope_locks.so.
 *
 * usage: locks_api noreclaim|absent
 *   noreclaim  under the preload with MEMSCOPE_LOCK_SCOPE=noreclaim: the
 *              section holds NORECLAIM, nests, counts exactly (sections,
 *              allocations, bytes), and a release with no count begun
 *              returns 0 and changes nothing;
 *   absent     without the library: both calls do nothing (0). */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memscope.h"
#include "segment_find.h"

static atomic_flag spin = ATOMIC_FLAG_INIT;
static void *volatile sink;

__attribute__((noinline)) static void my_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&spin, memory_order_acquire))
        ;
    memscope_lock_acquired(&spin, __builtin_return_address(0));
}

__attribute__((noinline)) static void my_unlock(void)
{
    memscope_lock_released(&spin);
    atomic_flag_clear_explicit(&spin, memory_order_release);
}

static uint64_t field(size_t off)
{
    const struct memscope_stats_header *h = segment();
    uint64_t n = 0;
    for (uint32_t i = 0; h && i < h->slot_count; i++)
        n += *(const uint64_t *)((const char *)h + h->locks_offset + (size_t)i * h->lock_stats_size + off);
    return n;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "absent")) {
        memscope_lock_acquired(&spin, NULL);
        CHECK(memscope_current() == 0);
        CHECK(memscope_lock_released(&spin) == 0);
        return check_result();
    }
    sink = malloc(1);
    CHECK_MSG(memscope_lock_released(&spin) == 0, "a release with no lock counted");
    CHECK(memscope_current() == 0);
    uint64_t s0 = field(offsetof(struct memscope_lock_stats, sections));
    uint64_t a0 = field(offsetof(struct memscope_lock_stats, allocs));
    uint64_t b0 = field(offsetof(struct memscope_lock_stats, alloc_bytes));
    for (int i = 0; i < 100; i++) {
        my_lock();
        CHECK(memscope_current() == MEMSCOPE_NORECLAIM);
        static int other, never;
        memscope_lock_acquired(&other, NULL); /* a nested lock of another kind */
        sink = malloc(40);
        free(sink);
        CHECK_MSG(memscope_lock_released(&never) == 0, "a release of a lock never taken counts");
        CHECK(memscope_current() == MEMSCOPE_NORECLAIM);
        CHECK(memscope_lock_released(&other) == 1);
        CHECK(memscope_current() == MEMSCOPE_NORECLAIM);
        my_unlock();
        CHECK(memscope_current() == 0);
    }
    uint64_t s = field(offsetof(struct memscope_lock_stats, sections)) - s0;
    uint64_t a = field(offsetof(struct memscope_lock_stats, allocs)) - a0;
    uint64_t b = field(offsetof(struct memscope_lock_stats, alloc_bytes)) - b0;
    CHECK_MSG(s == 100 && a == 100 && b == 4000, "sections %lu allocs %lu bytes %lu, want 100 100 4000",
              (unsigned long)s, (unsigned long)a, (unsigned long)b);
    return check_result();
}
