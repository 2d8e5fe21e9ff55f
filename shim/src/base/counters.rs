//! Process-wide event counters: plain relaxed atomics, cheap enough for
//! any path (a NORECLAIM thread included), exported by the stats segment.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};

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
    /// No longer counted (always 0): deferred frees once went through a
    /// bounded queue that could fill; the hand-off is now a lock-free list
    /// that cannot. Kept: the order of events is the stats ABI.
    #[allow(dead_code)]
    DeferredFreeOverflow,
    /// No longer counted (always 0): OS calls the allocator could make on
    /// a NORECLAIM thread, when a full queue made it free an oversize
    /// block itself. Kept for the ABI, as above.
    #[allow(dead_code)]
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
    /// A NOFAIL request still waiting, once per `nofail::STALL_REPORT_NS`.
    NofailStall,
    /// Waits on the mutexes of jemalloc's ordinary arenas (bins, extents,
    /// decay...), a total refreshed by the maintenance thread (`lockstats`).
    LockWaitsArenas,
    /// Waits on the mutexes of the NORECLAIM pool's and reserve's arenas.
    LockWaitsPoolArenas,
    /// Waits on jemalloc's global mutexes (background threads, ctl).
    LockWaitsGlobal,
    /// A scope found that the program's allocations bypass memscope
    /// (`memscope_lib_check_routed`, run by the Rust guard at the first
    /// NORECLAIM scope).
    ScopesBypassed,
    /// The PSI trigger on the cgroup's (or the machine's) memory pressure
    /// fired (`pressure`).
    PressureTrigger,
    /// The cgroup's `memory.events` `high` count rose.
    MemoryHigh,
    /// Reclaim rounds (reclaimers, then a purge) run for memory pressure.
    PressureReclaim,
    /// A NORECLAIM allocation refused because the pool was exhausted: no
    /// block that serves it ready, and too little committed memory left
    /// uncarved for one.
    NoreclaimPoolExhausted,
    /// A NORECLAIM allocation refused while committed memory that no
    /// thread held was still free (must stay 0: it would be a bug).
    NoreclaimRefusedWithFree,
    /// Spans scoped threads carved from committed pool memory themselves.
    NoreclaimCarve,
    /// Impossible NOFAIL requests: a size that overflows, an alignment no
    /// allocator can give, or (in NORECLAIM) larger than any pool block.
    PolicyImpossible,
    /// Attempts to start the maintenance thread that failed (`clone`
    /// refused); scopes then run without it (`mailbox::start_failed`).
    MaintenanceStartFailure,
    /// Call-site records dropped: a shared table (overflow threads,
    /// exiting threads folding theirs) was busy (`stats::sites`).
    SitesDropped,
    /// Call sites evicted from a full table, their counts with them.
    SitesEvicted,
    /// A quiet pool gave committed headroom back (`pool::follow_use`).
    PoolShrink,
}

pub const EVENT_COUNT: usize = Event::PoolShrink as usize + 1;

/// Where counts go before the stats segment exists, or when stats are off.
static LOCAL: [AtomicU64; EVENT_COUNT] = [const { AtomicU64::new(0) }; EVENT_COUNT];
/// The live array: `LOCAL`, or the segment's `Header::events`.
static EVENTS: AtomicPtr<AtomicU64> = AtomicPtr::new(LOCAL.as_ptr().cast_mut());

#[inline]
fn at(e: usize) -> &'static AtomicU64 {
    // SAFETY: EVENTS points at LOCAL or at the mapped segment's array,
    // both at least EVENT_COUNT long and alive for the process's life.
    unsafe { &*EVENTS.load(Acquire).add(e) }
}

#[inline]
pub fn count(e: Event) {
    at(e as usize).fetch_add(1, Relaxed);
}

/// Sets a counter that mirrors a total kept elsewhere (`lockstats`).
pub fn store(e: Event, v: u64) {
    at(e as usize).store(v, Relaxed);
}

pub fn get(e: Event) -> u64 {
    at(e as usize).load(Relaxed)
}

/// Makes the segment's array the live one, carrying over what was counted.
/// Called while the process (or forked child) has one user of stats.
pub fn move_into(dst: &'static [AtomicU64; memscope_abi::EVENT_SLOTS]) {
    for (i, d) in dst.iter().enumerate().take(EVENT_COUNT) {
        d.store(at(i).load(Relaxed), Relaxed);
    }
    EVENTS.store(dst.as_ptr().cast_mut(), Release);
}

/// Points counting back at process memory, from zero: a forked child
/// before it drops the parent's segment (the child counts its own events).
pub fn detach() {
    for c in &LOCAL {
        c.store(0, Relaxed);
    }
    EVENTS.store(LOCAL.as_ptr().cast_mut(), Release);
}

/// Writes every counter once (adding 0), so that the pages holding them
/// are faulted in before a NORECLAIM thread first counts something.
pub fn touch_all() {
    for i in 0..EVENT_COUNT {
        at(i).fetch_add(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names as the stats segment and the CLI print them: this crate's
    /// order must match the ABI crate's table.
    fn name(e: usize) -> &'static str {
        memscope_abi::names::EVENTS[e].0
    }

    #[test]
    fn names_match_the_abi_table() {
        assert_eq!(memscope_abi::names::EVENTS.len(), EVENT_COUNT);
        assert_eq!(name(Event::PoolRefill as usize), "pool_refills");
        assert_eq!(name(Event::SoftLimitReclaim as usize), "soft_limit_reclaims");
        assert_eq!(name(Event::NofailRetry as usize), "nofail_retries");
    }
}
