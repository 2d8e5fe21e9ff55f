//! Process-wide event counters: plain relaxed atomics, cheap enough for
//! any path (a NORECLAIM thread included), exported by the stats segment.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Every event memscope counts. The order is the stats ABI: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// The maintenance thread committed and pre-faulted more pool memory.
    PoolRefill,
    /// The pool's uncommitted headroom fell below its low watermark.
    PoolLowWatermark,
    /// A NORECLAIM allocation found the pool empty and returned NULL.
    NoreclaimFastFail,
    /// A NORECLAIM thread freed a block from outside the pool: deferred.
    DeferredFree,
    /// Deferred frees that found the hand-off queue full and were freed on
    /// the scoped thread through its own cache (no purge with background
    /// threads on; see docs/DESIGN.md).
    DeferredFreeOverflow,
    /// OS calls the allocator may have made on a NORECLAIM thread (an
    /// oversize free that overflowed the queue). Must stay 0.
    NoreclaimOsCall,
    /// `memscope_pop` with a value that no `memscope_push` returned.
    ScopeMisuse,
    /// `malloc_trim` inside NORECLAIM, handed to the maintenance thread.
    TrimDeferred,
    /// Purges run by the maintenance thread.
    MaintenancePurge,
    /// NORECLAIM scopes entered with no pool (it could not be created).
    NoreclaimWithoutPool,
    /// Rounds of the NOFAIL retry loop (reclaim, retry, reserve).
    NofailRetry,
    /// NOFAIL allocations served from the reserve.
    ReserveHit,
    /// NOFAIL attempts that found the reserve unable to serve.
    ReserveExhausted,
    /// Impossible NOFAIL requests: larger than `MEMSCOPE_NOFAIL_MAX`.
    PolicyTooLarge,
    /// NOFAIL requests that ran past `MEMSCOPE_NOFAIL_DEADLINE_MS`.
    PolicyDeadline,
    /// NOFAIL inside NORECLAIM with the pool and the reserve both empty.
    PolicyNoreclaimEmpty,
    /// Reclaimer callbacks run.
    ReclaimerCall,
    /// Back-off waits of the NOFAIL retry loop.
    BackoffWait,
    /// Reclaim rounds the maintenance thread ran for `MEMSCOPE_SOFT_LIMIT`.
    SoftLimitReclaim,
}

pub const EVENT_COUNT: usize = Event::SoftLimitReclaim as usize + 1;

/// Names as the stats segment and the CLI print them.
pub const EVENT_NAMES: [&str; EVENT_COUNT] = [
    "pool_refills",
    "pool_low_watermark_hits",
    "noreclaim_fast_fails",
    "deferred_frees",
    "deferred_free_overflows",
    "noreclaim_os_calls",
    "scope_misuse",
    "trims_deferred",
    "maintenance_purges",
    "noreclaim_without_pool",
    "nofail_retries",
    "reserve_hits",
    "reserve_exhausted",
    "policy_too_large",
    "policy_deadline",
    "policy_noreclaim_empty",
    "reclaimer_calls",
    "backoff_waits",
    "soft_limit_reclaims",
];

static EVENTS: [AtomicU64; EVENT_COUNT] = [const { AtomicU64::new(0) }; EVENT_COUNT];

#[inline]
pub fn count(e: Event) {
    EVENTS[e as usize].fetch_add(1, Relaxed);
}

pub fn get(e: Event) -> u64 {
    EVENTS[e as usize].load(Relaxed)
}

/// Writes every counter once (adding 0), so that the pages holding them
/// are faulted in before a NORECLAIM thread first counts something.
pub fn touch_all() {
    for e in &EVENTS {
        e.fetch_add(0, Relaxed);
    }
}

/// A snapshot of every counter, in `Event` order.
pub fn snapshot() -> [u64; EVENT_COUNT] {
    core::array::from_fn(|i| EVENTS[i].load(Relaxed))
}
