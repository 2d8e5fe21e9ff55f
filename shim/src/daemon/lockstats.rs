//! Lock waits, for operators: jemalloc's mutex profiling counters (how
//! often a thread found one of its mutexes held and had to wait), summed
//! into three totals in the stats segment's event counters: ordinary
//! arenas, the NORECLAIM pool's and reserve's arenas, and jemalloc's global
//! mutexes. A NORECLAIM thread takes no lock at all (its allocations and
//! frees never reach jemalloc: `depot`, `magazine`), so every wait counted
//! here happened outside NORECLAIM; the proof that scoped threads never
//! wait is `c-tests/noreclaim/noreclaim_strict.c`, whose filter kills on any futex.
//!
//! Refreshed by the maintenance thread once a second: `epoch` makes jemalloc
//! merge its statistics (briefly taking each arena's locks), then a few
//! hundred `mallctlbymib` reads. Nothing here runs on an application thread.

use core::ffi::c_uint;

use crate::base::counters::{store, Event};
use crate::base::ctl;
use crate::pool;

/// Per-arena mutexes jemalloc 5.3 profiles (`stats.arenas.<i>.mutexes.*`);
/// a name this jemalloc does not know is skipped.
const ARENA_MUTEXES: [&core::ffi::CStr; 12] = [
    c"stats.arenas.0.mutexes.large.num_wait",
    c"stats.arenas.0.mutexes.extent_avail.num_wait",
    c"stats.arenas.0.mutexes.extents_dirty.num_wait",
    c"stats.arenas.0.mutexes.extents_muzzy.num_wait",
    c"stats.arenas.0.mutexes.extents_retained.num_wait",
    c"stats.arenas.0.mutexes.decay_dirty.num_wait",
    c"stats.arenas.0.mutexes.decay_muzzy.num_wait",
    c"stats.arenas.0.mutexes.base.num_wait",
    c"stats.arenas.0.mutexes.tcache_list.num_wait",
    c"stats.arenas.0.mutexes.hpa_shard.num_wait",
    c"stats.arenas.0.mutexes.hpa_shard_grow.num_wait",
    c"stats.arenas.0.mutexes.hpa_sec.num_wait",
];

const GLOBAL_MUTEXES: [&core::ffi::CStr; 3] = [
    c"stats.mutexes.background_thread.num_wait",
    c"stats.mutexes.max_per_bg_thd.num_wait",
    c"stats.mutexes.ctl.num_wait",
];

/// The controls read for every arena, resolved once per refresh: its
/// profiled mutexes (those this jemalloc knows) and its bins' mutex.
struct ArenaControls {
    mutexes: [Option<ctl::Mib>; ARENA_MUTEXES.len()],
    bins: Option<ctl::Mib>,
    nbins: usize,
}

impl ArenaControls {
    fn resolve(nbins: usize) -> Self {
        ArenaControls {
            mutexes: ARENA_MUTEXES.map(ctl::Mib::new),
            bins: ctl::Mib::new(c"stats.arenas.0.bins.0.mutex.num_wait"),
            nbins,
        }
    }

    /// Waits on arena `i`'s mutexes, its bins' included (0 for an index
    /// with no arena).
    fn waits(&self, i: usize) -> u64 {
        let mut sum = 0u64;
        for m in self.mutexes.iter().flatten() {
            sum += m.at(2, i).read::<u64>().unwrap_or(0);
        }
        if let Some(m) = &self.bins {
            let arena = m.at(2, i);
            for j in 0..self.nbins {
                sum += arena.at(4, j).read::<u64>().unwrap_or(0);
            }
        }
        sum
    }
}

/// Reads jemalloc's counters into the three totals.
pub fn refresh() {
    if ctl::refresh_stats().is_err() {
        return;
    }
    let narenas = ctl::read::<c_uint>(c"arenas.narenas").unwrap_or(0) as usize;
    let nbins = ctl::read::<c_uint>(c"arenas.nbins").unwrap_or(0) as usize;
    let pool_arenas = if pool::is_ready() {
        [Some(pool::arena()), pool::reserve_arena()]
    } else {
        [None, None]
    };
    let controls = ArenaControls::resolve(nbins);
    let (mut ordinary, mut in_pool) = (0u64, 0u64);
    for i in 0..narenas {
        let waits = controls.waits(i);
        if pool_arenas.contains(&Some(i as u32)) {
            in_pool += waits;
        } else {
            ordinary += waits;
        }
    }
    let global = GLOBAL_MUTEXES
        .iter()
        .filter_map(|n| ctl::read::<u64>(n))
        .sum::<u64>();
    store(Event::LockWaitsArenas, ordinary);
    store(Event::LockWaitsPoolArenas, in_pool);
    store(Event::LockWaitsGlobal, global);
}
