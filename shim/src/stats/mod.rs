//! Tier 2, stats: latency histograms and counters in a shared-memory
//! segment, read live by `memscope-stat` (layout in the `memscope-abi`
//! crate and `ffi-include/memscope_stats.h`; docs/STATS.md).
//!
//! Owns:
//! - `segment`: the file, its safety rules, fork and exit.
//! - `thread`: per-thread counting, sampling and the slot protocol.
//! - `clock`: TSC timestamps.
//! - `tid`: the kernel thread id without a syscall.
//! - `sites`: call-site tables.
//! - `locks`: what threads do while they hold program locks.
//! - `profile`: heap-profile requests from outside the process.
//!
//! May call: `base`, `os`. Inside, the files form one unit (no order is
//! enforced; there is no cycle today).
//!
//! This file: the sampled wrappers the entry points call, and the slow
//! events, which are always timed.

pub mod clock;
pub mod locks;
pub mod profile;
pub mod segment;
pub mod sites;
pub mod thread;
pub mod tid;

use core::sync::atomic::Ordering::Relaxed;

use crate::base::config::CONFIG;

/// Slow events timed into the header's histograms (`names::TIMERS` order).
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Timer {
    PoolRefill,
    ReclaimerCall,
    NofailSlowPath,
    Purge,
}

/// `MEMSCOPE_STATS_SAMPLE` as configured (at least 1).
pub fn sample_period() -> u64 {
    CONFIG.stats_sample.load(Relaxed).max(1)
}

/// The countdowns' period: the sample period, or "never" with stats off
/// (counting still works, nothing is timed or published).
#[inline]
pub fn countdown_period() -> u64 {
    if CONFIG.stats.load(Relaxed) {
        sample_period()
    } else {
        thread::COUNTDOWN_MAX
    }
}

/// The start of a fast-path call of an operation whose countdown ran out:
/// the caller makes the call, then `fast_timed` records it. (A start and
/// an end rather than a wrapper taking the call: the request itself never
/// passes through here, docs/DESIGN.md "One pass down".)
#[inline]
pub fn fast_timer() -> u64 {
    clock::ticks()
}

/// Records the fast-path call of `op` that began at `t0`.
#[cold]
#[inline(never)]
pub fn fast_timed(op: usize, t0: u64) {
    thread::fast_sample(op, clock::since(t0));
}

/// Counts a slow-path call of `op` made in a scope with `flags`; its start
/// if it is the one in a period to time (`slow_timed` records it).
#[inline(always)]
pub fn slow_counted(op: usize, flags: u32) -> Option<u64> {
    thread::slow_begin(op, thread::context_of(flags))
}

/// Records the slow-path call that `slow_counted` said to time; its
/// nanoseconds.
#[inline(always)]
pub fn slow_timed(op: usize, flags: u32, t0: Option<u64>) -> Option<u64> {
    t0.map(|t0| thread::slow_end(op, thread::context_of(flags), t0))
}

/// Start of a slow event (`event_done` records it).
#[inline]
pub fn event_start() -> u64 {
    clock::ticks()
}

/// Records a slow event that began at `start`.
pub fn event_done(t: Timer, start: u64) {
    if let Some(h) = segment::header() {
        thread::record_shared(&h.timers[t as usize], clock::since(start));
    }
}

/// The end of the library's constructor: the clock's calibration is
/// finished from the pair taken when the segment was made (by now more
/// than its 20 us have passed, so nothing waits).
pub fn finish_start_up() {
    if segment::header().is_some() {
        clock::finish_calibration();
    }
}

/// Registered with `atexit` when the library loads.
pub extern "C" fn at_exit() {
    segment::remove_at_exit();
}

#[cfg(test)]
mod tests {
    #[test]
    fn timers_match_the_abi_table() {
        assert_eq!(
            memscope_abi::names::TIMERS.len(),
            super::Timer::Purge as usize + 1
        );
        assert_eq!(
            memscope_abi::names::TIMERS[super::Timer::Purge as usize].0,
            "purge"
        );
    }
}
