/*
 * Where jemalloc keeps the calling thread's byte counters (the pointers
 * `thread.allocatedp` and `thread.deallocatedp` name), found without a
 * mallctl. Any mallctl builds jemalloc's control tree on first use (its
 * per-arena statistics, about 40 page faults and 0.2 ms per exec here)
 * and gives the calling thread a thread cache; this reads the address of
 * a field of jemalloc's thread-local data and touches nothing.
 *
 * Compiled by shim/build.rs against the headers of the jemalloc that
 * tikv-jemalloc-sys built (its own configuration, its `_rjem_` prefix),
 * so the layout is that jemalloc's by construction.
 */
#include "jemalloc/internal/jemalloc_preamble.h"
#include "jemalloc/internal/jemalloc_internal_includes.h"

/*
 * jemalloc's TSD is an initial-exec thread-local of the module jemalloc
 * is linked into; tsd_get(false) returns the calling thread's instance
 * without initialising it (its fields read 0 until jemalloc does). The
 * `_unsafe` getters skip the state assertion, which a debug jemalloc
 * would make on a thread jemalloc has not set up yet.
 */
void memscope_jemalloc_byte_counters(uint64_t **allocated, uint64_t **deallocated)
{
    tsd_t *tsd = tsd_get(false);
    *allocated = tsd_thread_allocatedp_get_unsafe(tsd);
    *deallocated = tsd_thread_deallocatedp_get_unsafe(tsd);
}
