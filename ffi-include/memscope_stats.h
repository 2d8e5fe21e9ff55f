/* memscope_stats.h: the layout of memscope's stats segment, for readers
 * written in C. The Rust definition (crate memscope-abi, abi/src/lib.rs)
 * is the source of truth; a test compiles c-tests/stats/stats_layout.c against
 * this header and holds every offset and size equal to it.
 *
 * The segment: $MEMSCOPE_STATS_DIR/memscope.<pid>[.<n>] (default
 * /dev/shm), mode 0600, one per process, removed at normal exit. A live
 * writer holds a shared flock(2) on it: a reader that can take an
 * exclusive one is looking at a segment whose process is gone.
 *
 * Reading rules (see docs/STATS.md):
 *  - Check magic, byte_order, abi_major, ready == MEMSCOPE_STATS_READY and
 *    that segment_size fits the file before trusting anything else.
 *  - Thread slots (state == MEMSCOPE_SLOT_LIVE): copy the slot between two
 *    loads of seq that are equal and even; retry otherwise.
 *  - Totals over all slots: load folds_finished first and folds_started
 *    last; if they differ, a thread exit moved numbers meanwhile: retry.
 *  - Every field is written with atomic stores of its own size. */

#ifndef MEMSCOPE_STATS_H
#define MEMSCOPE_STATS_H

#include <stdint.h>

#define MEMSCOPE_STATS_MAGIC "MEMSCOPE" /* 8 bytes, no NUL */
#define MEMSCOPE_STATS_BYTE_ORDER 0x01020304u
#define MEMSCOPE_STATS_ABI_MAJOR 1
#define MEMSCOPE_STATS_ABI_MINOR 6
#define MEMSCOPE_STATS_READY 0x52454459u

#define MEMSCOPE_STATS_OPS 3 /* alloc, free, realloc */
#define MEMSCOPE_OP_ALLOC 0
#define MEMSCOPE_OP_FREE 1
#define MEMSCOPE_OP_REALLOC 2

#define MEMSCOPE_STATS_CONTEXTS 3 /* scope in force at the call */
#define MEMSCOPE_CTX_NORMAL 0
#define MEMSCOPE_CTX_NORECLAIM 1
#define MEMSCOPE_CTX_NOFAIL 2

/* Latency buckets in nanoseconds: bucket i < 4 holds exactly i ns; above,
 * four buckets per power of two: bucket 4*(e-1)+s holds
 * [2^e + s*2^(e-2), 2^e + (s+1)*2^(e-2)). The last also holds all above. */
#define MEMSCOPE_STATS_BUCKETS 160

/* Scope-duration buckets (ABI 1.3): bucket i holds [2^i, 2^(i+1)) ns,
 * bucket 0 also 0 and 1, the last everything from 2^39 ns up. */
#define MEMSCOPE_STATS_SCOPE_BUCKETS 40

#define MEMSCOPE_STATS_EVENT_SLOTS 64 /* names: docs/STATS.md, append-only */
#define MEMSCOPE_STATS_TIMER_SLOTS 8
#define MEMSCOPE_STATS_GAUGE_SLOTS 16 /* ABI 1.3; names: docs/STATS.md */
#define MEMSCOPE_STATS_CMDLINE_MAX 512
#define MEMSCOPE_STATS_THREAD_NAME_MAX 16
#define MEMSCOPE_STATS_THREAD_SLOTS 256

#define MEMSCOPE_SLOT_RETIRED 0 /* exited threads, folded in */
#define MEMSCOPE_SLOT_OVERFLOW 1 /* threads beyond the slots (atomic adds) */
#define MEMSCOPE_SLOT_FIRST_THREAD 2
#define MEMSCOPE_SLOT_TOTAL (MEMSCOPE_STATS_THREAD_SLOTS + MEMSCOPE_SLOT_FIRST_THREAD)

#define MEMSCOPE_SLOT_FREE 0u
#define MEMSCOPE_SLOT_LIVE 1u
#define MEMSCOPE_SLOT_AGGREGATE 2u

struct memscope_histogram {
    uint64_t count; /* samples; equals the sum of buckets in a consistent read */
    uint64_t sum_ns;
    uint64_t max_ns;
    uint64_t buckets[MEMSCOPE_STATS_BUCKETS];
};

struct memscope_scope_histogram { /* ABI 1.3 */
    uint64_t count;
    uint64_t sum_ns;
    uint64_t max_ns;
    uint64_t buckets[MEMSCOPE_STATS_SCOPE_BUCKETS];
};

struct __attribute__((aligned(4096))) memscope_stats_header {
    /* prologue: these 32 bytes never change across ABI versions */
    char magic[8];
    uint32_t byte_order;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t header_size;
    uint32_t ready; /* MEMSCOPE_STATS_READY, stored last */
    uint64_t segment_size;
    /* ABI 1 */
    uint32_t pid;
    uint32_t slot_count;
    uint32_t slot_size;
    uint32_t bucket_count;
    uint64_t slots_offset;
    uint64_t start_unix_ns;
    uint64_t sample_period; /* one call in this many timed, per thread and op */
    uint64_t folds_started;
    uint64_t folds_finished;
    uint64_t threads_seen;
    uint64_t threads_overflowed;
    uint32_t event_count;
    uint32_t timer_count;
    uint32_t cmdline_len;
    uint32_t reserved0;
    char cmdline[MEMSCOPE_STATS_CMDLINE_MAX]; /* NUL-separated */
    uint64_t events[MEMSCOPE_STATS_EVENT_SLOTS];
    struct memscope_histogram timers[MEMSCOPE_STATS_TIMER_SLOTS];
    /* ABI 1.2: heap-profile requests (memscope-stat profile). A reader
     * stores profile_done + 1 in profile_request; the process writes
     * <stats dir>/memscope.<pid>.<request>.heap and then stores the request
     * in profile_done, with profile_status 0 or an errno (ENOTSUP:
     * profiling is off). */
    uint64_t profile_request;
    uint64_t profile_done;
    uint32_t profile_status;
    uint32_t lib_version; /* the writer's MAJOR << 16 | MINOR << 8 | PATCH */
    /* ABI 1.3: memory gauges (bytes, names in docs/STATS.md), refreshed
     * about once a second by the maintenance thread; gauges_unix_ns says
     * when (CLOCK_REALTIME), 0 if never. */
    uint64_t gauges_unix_ns;
    uint64_t gauges[MEMSCOPE_STATS_GAUGE_SLOTS];
    /* ABI 1.5: call-site tables, one per slot (table i for slot i), at
     * sites_offset bytes from the segment's start, site_table_size bytes
     * each; 0 if the writer has none. */
    uint64_t sites_offset;
    uint32_t site_entries;
    uint32_t site_frames;
    uint32_t site_table_size;
    uint32_t reserved1;
    /* ABI 1.6: lock sections, one block per slot (block i for slot i), at
     * locks_offset bytes from the segment's start, lock_stats_size bytes
     * each; 0 if the writer has none. lock_scope: MEMSCOPE_LOCK_SCOPE, 0
     * for `report`, else the MEMSCOPE_* flags a section enters. */
    uint64_t locks_offset;
    uint32_t lock_stats_size;
    uint32_t lock_scope;
};

/* ABI 1.5: call sites (docs/STATS.md, "Call sites"). */
#define MEMSCOPE_SITE_FRAMES 4
#define MEMSCOPE_SITE_ENTRIES 32
#define MEMSCOPE_SITE_REFUSED 1       /* exact */
#define MEMSCOPE_SITE_POLICY 2        /* exact */
#define MEMSCOPE_SITE_NOFAIL_WAIT 3   /* exact */
#define MEMSCOPE_SITE_SAMPLED_ALLOC 4 /* sampled: count and bytes estimated */
#define MEMSCOPE_SITE_SCOPE 5         /* timed scopes: bytes = total ns */
/* ABI 1.6 */
#define MEMSCOPE_SITE_LOCK_ALLOC 6 /* exact: allocations while holding a lock */
#define MEMSCOPE_SITE_LOCK_TAKEN 7 /* exact: lock calls whose sections allocated */

struct memscope_site {
    uint32_t kind; /* MEMSCOPE_SITE_*, 0: empty */
    uint32_t depth;
    uint64_t frames[MEMSCOPE_SITE_FRAMES]; /* return addresses, the call's first */
    uint64_t count;
    uint64_t bytes;
    uint64_t max;
    uint64_t last;
};

struct __attribute__((aligned(64))) memscope_site_table {
    uint64_t seq; /* odd while written */
    uint64_t clock;
    uint32_t lock;
    uint32_t reserved[11];
    struct memscope_site entries[MEMSCOPE_SITE_ENTRIES];
};

struct __attribute__((aligned(4096))) memscope_stats_slot {
    uint64_t seq; /* odd while the owning thread writes */
    uint32_t state;
    uint32_t tid;
    char name[MEMSCOPE_STATS_THREAD_NAME_MAX];
    uint64_t threads;
    uint64_t allocated_bytes;
    uint64_t deallocated_bytes;
    uint64_t ops[MEMSCOPE_STATS_OPS][MEMSCOPE_STATS_CONTEXTS];
    struct memscope_histogram latency[MEMSCOPE_STATS_OPS][MEMSCOPE_STATS_CONTEXTS];
    /* ABI 1.1: while the thread waits in a NOFAIL retry, when the wait began
     * (CLOCK_MONOTONIC ns) and the size asked for; both 0 otherwise. */
    uint64_t nofail_wait_since_ns;
    uint64_t nofail_wait_bytes;
    /* ABI 1.3: sampled durations of the thread's outermost NORECLAIM scopes,
     * push to pop (the first, then the next one after each stats harvest,
     * about every 40 ms). */
    struct memscope_scope_histogram noreclaim_scope;
};

/* ABI 1.6: what a thread did while it held program locks (docs/STATS.md,
 * "Lock sections"). Bucket i of sizes holds requests of i significant bits
 * ([2^(i-1), 2^i); bucket 0 the zero-byte ones; the last also everything
 * larger). */
#define MEMSCOPE_LOCK_SIZE_BUCKETS 48

struct __attribute__((aligned(64))) memscope_lock_stats {
    uint64_t sections;            /* first lock taken .. last released */
    uint64_t sections_allocating; /* of those, the ones that allocated */
    uint64_t allocs;
    uint64_t frees;
    uint64_t alloc_bytes; /* asked for */
    uint64_t largest;
    uint64_t refused; /* allocations that returned NULL */
    uint64_t refused_last_bytes;
    uint64_t sizes[MEMSCOPE_LOCK_SIZE_BUCKETS];
    struct memscope_histogram latency; /* the timed ones */
};

/* Slot i is at byte offset slots_offset + i * slot_size. */

#endif /* MEMSCOPE_STATS_H */
