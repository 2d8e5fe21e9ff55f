/* stats_layout: prints "name value" for every offset and size of
 * memscope_stats.h, for abi/tests/c_header.rs to compare with the Rust
 * definition. */
#include <stddef.h>
#include <stdio.h>

#include "memscope_stats.h"

#define H(f) printf("header.%s %zu\n", #f, offsetof(struct memscope_stats_header, f))
#define S(f) printf("slot.%s %zu\n", #f, offsetof(struct memscope_stats_slot, f))
#define G(f) printf("histogram.%s %zu\n", #f, offsetof(struct memscope_histogram, f))
#define E(f) printf("site.%s %zu\n", #f, offsetof(struct memscope_site, f))
#define T(f) printf("site_table.%s %zu\n", #f, offsetof(struct memscope_site_table, f))

int main(void)
{
    H(magic); H(byte_order); H(abi_major); H(abi_minor); H(header_size); H(ready);
    H(segment_size); H(pid); H(slot_count); H(slot_size); H(bucket_count);
    H(slots_offset); H(start_unix_ns); H(sample_period); H(folds_started);
    H(folds_finished); H(threads_seen); H(threads_overflowed); H(event_count);
    H(timer_count); H(cmdline_len); H(cmdline); H(events); H(timers);
    H(profile_request); H(profile_done); H(profile_status); H(lib_version);
    H(gauges_unix_ns); H(gauges);
    H(sites_offset); H(site_entries); H(site_frames); H(site_table_size);
    H(locks_offset); H(lock_stats_size); H(lock_scope);
#define L(f) printf("lock_stats.%s %zu\n", #f, offsetof(struct memscope_lock_stats, f))
    L(sections); L(sections_allocating); L(allocs); L(frees); L(alloc_bytes); L(largest);
    L(refused); L(refused_last_bytes); L(sizes); L(latency);
    printf("size.lock_stats %zu\n", sizeof(struct memscope_lock_stats));
    printf("const.lock_size_buckets %d\n", MEMSCOPE_LOCK_SIZE_BUCKETS);
    E(kind); E(depth); E(frames); E(count); E(bytes); E(max); E(last);
    T(seq); T(clock); T(lock); T(entries);
    printf("size.site %zu\n", sizeof(struct memscope_site));
    printf("size.site_table %zu\n", sizeof(struct memscope_site_table));
    printf("const.site_frames %d\n", MEMSCOPE_SITE_FRAMES);
    printf("const.site_entries %d\n", MEMSCOPE_SITE_ENTRIES);
    S(seq); S(state); S(tid); S(name); S(threads); S(allocated_bytes);
    S(deallocated_bytes); S(ops); S(latency); S(nofail_wait_since_ns); S(nofail_wait_bytes);
    S(noreclaim_scope);
    G(count); G(sum_ns); G(max_ns); G(buckets);
    printf("size.header %zu\n", sizeof(struct memscope_stats_header));
    printf("size.slot %zu\n", sizeof(struct memscope_stats_slot));
    printf("size.histogram %zu\n", sizeof(struct memscope_histogram));
    printf("size.scope_histogram %zu\n", sizeof(struct memscope_scope_histogram));
    printf("const.scope_buckets %d\n", MEMSCOPE_STATS_SCOPE_BUCKETS);
    printf("const.buckets %d\n", MEMSCOPE_STATS_BUCKETS);
    printf("const.thread_slots %d\n", MEMSCOPE_STATS_THREAD_SLOTS);
    printf("const.slot_total %d\n", MEMSCOPE_SLOT_TOTAL);
    printf("const.event_slots %d\n", MEMSCOPE_STATS_EVENT_SLOTS);
    printf("const.timer_slots %d\n", MEMSCOPE_STATS_TIMER_SLOTS);
    printf("const.gauge_slots %d\n", MEMSCOPE_STATS_GAUGE_SLOTS);
    printf("const.ready %u\n", MEMSCOPE_STATS_READY);
    printf("const.byte_order %u\n", MEMSCOPE_STATS_BYTE_ORDER);
    printf("const.abi_major %d\n", MEMSCOPE_STATS_ABI_MAJOR);
    return 0;
}
