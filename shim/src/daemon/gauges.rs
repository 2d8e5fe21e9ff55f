//! Memory gauges for operators, in the stats segment's header (ABI 1.3,
//! `names::GAUGES`): what the NORECLAIM pool and the NOFAIL reserve hold
//! (reserved, committed, carved, ready in the depot, held in threads'
//! lists), jemalloc's own totals (allocated, active, resident, mapped,
//! retained), and the limits in force (the memory limit percentages are
//! of, and where it came from; the soft limit).
//!
//! Refreshed by the maintenance thread right after `lockstats` has made
//! jemalloc merge its statistics (`epoch`), about once a second. Nothing
//! here runs on an application thread. A process that never starts the
//! maintenance thread (one thread, no scope) leaves them unset
//! (`gauges_unix_ns` 0), and readers say so.

use core::sync::atomic::Ordering::{Relaxed, Release};

use crate::base::config::CONFIG;
use crate::base::ctl;
use crate::front::depot;
use crate::pool;
use crate::stats::{clock, segment};

/// Reads every gauge and stores it, `names::GAUGES` order; `thread_held`:
/// pool bytes in threads' own lists, as the last harvest summed them. Call
/// after `ctl::refresh_stats`.
pub fn refresh(thread_held: usize) {
    let Some(h) = segment::header() else { return };
    let p = pool::gauges();
    let (pool_ready, reserve_ready) = depot::ready_bytes();
    let heap = |name: &core::ffi::CStr| ctl::read::<usize>(name).unwrap_or(0);
    let values: [usize; memscope_abi::names::GAUGES.len()] = [
        p.reserved,
        p.committed,
        p.carved,
        pool_ready,
        reserve_ready.saturating_add(p.reserve_uncarved),
        heap(c"stats.allocated"),
        heap(c"stats.active"),
        heap(c"stats.resident"),
        heap(c"stats.mapped"),
        heap(c"stats.retained"),
        thread_held,
        CONFIG.memory_limit.load(Relaxed) as usize,
        usize::from(CONFIG.memory_limit_from.load(Relaxed)),
        CONFIG.soft_limit_bytes() as usize,
        pool::self_carved_bytes(),
        pool::noreclaim_bytes(),
    ];
    for (slot, v) in h.gauges.iter().zip(values) {
        slot.store(v as u64, Relaxed);
    }
    h.gauges_unix_ns.store(clock::realtime_ns(), Release);
}
