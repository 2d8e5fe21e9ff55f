//! Names readers print, in ABI order (append only).

/// Operations, indexed by `OP_*`.
pub const OPS: [&str; crate::OPS] = ["alloc", "free", "realloc"];
/// Contexts, indexed by `CTX_*`.
pub const CONTEXTS: [&str; crate::CONTEXTS] = ["normal", "noreclaim", "nofail"];

/// Gauges, `Header::gauges` order (ABI 1.3; the last one since 1.4). Each line: name (the
/// Prometheus metric is `memscope_<name>`), meaning. Bytes, except
/// `memory_limit_from` (a code).
pub const GAUGES: [(&str, &str); 16] = [
    (
        "pool_reserved_bytes",
        "address space reserved for the NORECLAIM pool and the NOFAIL reserve (not memory)",
    ),
    (
        "pool_committed_bytes",
        "of it, mapped and pre-faulted: memory the pool and the reserve hold",
    ),
    (
        "pool_carved_bytes",
        "of that, made into blocks (handed to the pool's and the reserve's arenas)",
    ),
    (
        "pool_ready_bytes",
        "free NORECLAIM blocks in the shared depot, ready for any scoped thread",
    ),
    (
        "reserve_ready_bytes",
        "free NOFAIL reserve blocks in the depot, plus reserve memory not yet carved",
    ),
    (
        "heap_allocated_bytes",
        "bytes in blocks the program holds (jemalloc stats.allocated, pool arenas included)",
    ),
    (
        "heap_active_bytes",
        "bytes in pages holding those blocks (stats.active)",
    ),
    (
        "heap_resident_bytes",
        "bytes jemalloc keeps resident, metadata and unpurged pages included (stats.resident)",
    ),
    (
        "heap_mapped_bytes",
        "bytes jemalloc has mapped in active extents (stats.mapped)",
    ),
    (
        "heap_retained_bytes",
        "address space jemalloc kept for reuse instead of unmapping (stats.retained)",
    ),
    (
        "pool_thread_held_bytes",
        "free NORECLAIM blocks kept in threads' own lists (not in use, not in the depot)",
    ),
    (
        "memory_limit_bytes",
        "the memory limit percentages are of: the cgroup's (memory.max, else memory.high, else v1) or physical memory",
    ),
    (
        "memory_limit_from",
        "where memory_limit_bytes came from: 0 physical memory, 1 memory.max, 2 memory.high, 3 v1 memory.limit_in_bytes",
    ),
    (
        "soft_limit_bytes",
        "MEMSCOPE_SOFT_LIMIT in bytes as resolved now (0: off)",
    ),
    (
        "pool_self_carved_bytes",
        "pool memory scoped threads carved into blocks themselves (part of pool_carved_bytes; stays blocks of its class)",
    ),
    (
        "pool_noreclaim_bytes",
        "the NORECLAIM pool's resident memory: committed, less the NOFAIL reserve's share, the arenas' metadata and the pool arena's decommitted free extents; follows use",
    ),
];

/// Event counters, `Header::events` order. Each line: name, meaning.
pub const EVENTS: [(&str, &str); 35] = [
    (
        "pool_refills",
        "the maintenance thread committed and pre-faulted more NORECLAIM pool",
    ),
    (
        "pool_low_watermark_hits",
        "the pool's uncommitted headroom fell below its low watermark",
    ),
    (
        "noreclaim_fast_fails",
        "NORECLAIM allocations that found the pool empty and returned NULL",
    ),
    (
        "deferred_frees",
        "frees of non-pool blocks inside NORECLAIM, handed to the maintenance thread",
    ),
    (
        "deferred_free_overflows",
        "deferred frees that found the hand-off queue full",
    ),
    (
        "noreclaim_os_calls",
        "OS calls the allocator may have made on a NORECLAIM thread (must stay 0)",
    ),
    ("scope_misuse", "pops that matched no push"),
    (
        "trims_deferred",
        "malloc_trim calls inside NORECLAIM, handed to the maintenance thread",
    ),
    ("maintenance_purges", "purges run by the maintenance thread"),
    (
        "noreclaim_without_pool",
        "NORECLAIM scopes entered while the pool could not be created",
    ),
    ("nofail_retries", "rounds of the NOFAIL retry loop"),
    ("reserve_hits", "NOFAIL allocations served from the reserve"),
    (
        "reserve_exhausted",
        "NOFAIL attempts that found the reserve unable to serve",
    ),
    (
        "policy_too_large",
        "impossible NOFAIL requests (above MEMSCOPE_NOFAIL_MAX)",
    ),
    (
        "policy_deadline",
        "NOFAIL requests that ran past MEMSCOPE_NOFAIL_DEADLINE_MS",
    ),
    (
        "policy_noreclaim_empty",
        "NOFAIL inside NORECLAIM with pool and reserve empty",
    ),
    ("reclaimer_calls", "reclaimer callbacks run"),
    ("backoff_waits", "back-off waits of the NOFAIL retry loop"),
    (
        "soft_limit_reclaims",
        "reclaim rounds run for MEMSCOPE_SOFT_LIMIT",
    ),
    (
        "nofail_stalls",
        "NOFAIL requests still waiting, once per 10 s of waiting (a line each unless NOWARN)",
    ),
    (
        "lock_waits_arenas",
        "contended waits on ordinary arenas' mutexes (all outside NORECLAIM, which takes no lock)",
    ),
    (
        "lock_waits_pool_arenas",
        "contended waits on the pool's and reserve's arena mutexes (maintenance thread, NOFAIL outside NORECLAIM)",
    ),
    (
        "lock_waits_global",
        "contended waits on jemalloc's global mutexes (background threads, mallctl)",
    ),
    (
        "scopes_bypassed",
        "scopes that found the program's allocations served by another allocator",
    ),
    (
        "pressure_triggers",
        "memory pressure (PSI) reached MEMSCOPE_PRESSURE's stall within its window",
    ),
    (
        "memory_high_events",
        "the cgroup's memory use went over memory.high (memory.events)",
    ),
    (
        "pressure_reclaims",
        "reclaim rounds (reclaimers, then a purge) run for memory pressure",
    ),
    (
        "noreclaim_pool_exhausted",
        "NORECLAIM allocations refused with the pool exhausted (nothing ready serves them, committed memory used up)",
    ),
    (
        "noreclaim_refused_with_free",
        "NORECLAIM allocations refused while committed pool memory was still free (must stay 0)",
    ),
    (
        "noreclaim_carves",
        "spans scoped threads carved from committed pool memory themselves (a class not stocked yet)",
    ),
    (
        "policy_impossible",
        "impossible NOFAIL requests: a size that overflows, an alignment none can give, or in NORECLAIM larger than any pool block",
    ),
    (
        "maintenance_start_failures",
        "attempts to start the maintenance thread that failed (the pool does not refill)",
    ),
    (
        "sites_dropped",
        "call-site records dropped: a shared table (overflow threads, exiting threads) stayed busy",
    ),
    (
        "sites_evicted",
        "call sites evicted from a full table (32 per thread), their counts with them",
    ),
    (
        "pool_shrinks",
        "times a quiet NORECLAIM pool gave committed headroom back to the OS (it follows use)",
    ),
];

/// Call-site record kinds (`Site::kind` - 1 order), with whether their
/// counts are exact.
pub const SITE_KINDS: [(&str, &str, bool); 7] = [
    ("refused", "NORECLAIM allocations refused", true),
    (
        "policy",
        "impossible NOFAIL requests answered by MEMSCOPE_NOFAIL_POLICY",
        true,
    ),
    (
        "nofail_wait",
        "NOFAIL requests that waited (reclaimers, retries)",
        true,
    ),
    (
        "noreclaim_alloc",
        "allocations inside NORECLAIM, sampled (count and bytes estimated)",
        false,
    ),
    (
        "scope",
        "timed NORECLAIM scopes (a few a second) by where they were pushed: time held",
        false,
    ),
    (
        "lock_alloc",
        "allocations made while the thread held a program lock",
        true,
    ),
    (
        "lock_taken",
        "lock calls whose sections allocated: sections, bytes they allocated",
        true,
    ),
];

/// Slow-event timers, `Header::timers` order: always timed.
pub const TIMERS: [(&str, &str); 4] = [
    ("pool_refill", "one background refill step of the NORECLAIM pool"),
    ("reclaimer_call", "one reclaimer callback"),
    (
        "nofail_slow_path",
        "a NOFAIL allocation from its first failure to its answer",
    ),
    (
        "purge",
        "a purge of every arena (malloc_trim, the maintenance thread, the soft limit)",
    ),
];

/// Every option the library reads (`MEMSCOPE_*` environment variables):
/// name, default (as a user would write it), what it does. The library
/// parses them (`memscope-core`'s `config`), the CLI documents them (its
/// man page), the README's table repeats them (a test checks).
pub const OPTIONS: [(&str, &str, &str); 14] = [
    (
        "MEMSCOPE_NORECLAIM_POOL",
        "32M",
        "free pre-faulted memory the NORECLAIM pool keeps ready (high watermark; refills start below half of it, higher while scoped threads carve fast); 2M to 512M. Sizes take K/M/G/T.",
    ),
    (
        "MEMSCOPE_NORECLAIM_MAX",
        "4G",
        "the most the NORECLAIM pool and the NOFAIL reserve may grow to together: address space reserved at start (committed only as used); 64M to 1T",
    ),
    (
        "MEMSCOPE_RESERVE",
        "16M",
        "pre-faulted reserve that NOFAIL requests fall back on; at most 256M",
    ),
    (
        "MEMSCOPE_POOL_MLOCK",
        "0",
        "`mlock` the pool and the reserve so they cannot be swapped out",
    ),
    (
        "MEMSCOPE_NOFAIL_MAX",
        "100%",
        "largest request NOFAIL retries for (bytes, or a percentage of the memory limit: the cgroup's memory.max, else memory.high, else physical memory); larger ones follow the policy",
    ),
    (
        "MEMSCOPE_NOFAIL_POLICY",
        "null",
        "an impossible NOFAIL request: `null` (NULL + `ENOMEM`) or `abort`",
    ),
    (
        "MEMSCOPE_LOCK_SCOPE",
        "report",
        "with libmemscope_locks.so: the scope a thread holding a program lock is in: `report` (counted only), `noreclaim` or `noreclaim,nofail`",
    ),
    (
        "MEMSCOPE_NOFAIL_DEADLINE_MS",
        "0",
        "give up retrying a NOFAIL request after this long (0: never)",
    ),
    (
        "MEMSCOPE_SOFT_LIMIT",
        "0",
        "RSS above which the maintenance thread runs reclaimers (bytes, or a percentage of the memory limit as for MEMSCOPE_NOFAIL_MAX; 0: off)",
    ),
    (
        "MEMSCOPE_PRESSURE",
        "200ms/2s",
        "run reclaimers and purge when the cgroup's memory pressure (PSI) reaches STALL within WINDOW, or its memory.high is hit; `off`: never",
    ),
    (
        "MEMSCOPE_STATS",
        "on",
        "publish counters and latency histograms in shared memory (docs/STATS.md)",
    ),
    (
        "MEMSCOPE_STATS_SAMPLE",
        "1024",
        "time one call in this many on average (random intervals), per thread, operation and scope (1: every call, exact tails); counts are exact regardless",
    ),
    (
        "MEMSCOPE_STATS_DIR",
        "/dev/shm",
        "directory of the stats segment `memscope.<pid>`",
    ),
    (
        "MEMSCOPE_LOG",
        "warn",
        "`warn`: one rate-limited stderr line per problem; `off`: silent",
    ),
];
