//! Timestamps for latency samples: the TSC, read without a syscall (so a
//! NORECLAIM thread may time itself), converted to nanoseconds with a
//! factor calibrated against CLOCK_MONOTONIC: from a pair of readings
//! taken when the segment is made (`start_calibration`) to a second pair
//! at least 20 us later (within about 0.5 %, well inside a histogram
//! bucket's 25 %), then refined by the maintenance thread over the whole
//! time since (`refine`), which soon makes it exact. The second pair is
//! taken at the end of the library's constructor (`finish_calibration`),
//! by when jemalloc's start-up has let far more than 20 us pass, so no
//! exec waits for it (spinning the 20 us was 21 us of every exec here; a
//! 200 us spin before that was 0.2 ms); a sample converted before then
//! (a call made by an earlier library's constructor) takes it itself,
//! spinning for what is left. Elsewhere than x86_64 the monotonic clock
//! itself is used.

use core::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// Nanoseconds per tick, 32.32 fixed point (0 until calibrated).
static NS_PER_TICK_FP: AtomicU64 = AtomicU64::new(0);
/// The first calibration's starting pair, which `refine` measures from.
static BASE_NS: AtomicU64 = AtomicU64::new(0);
static BASE_TICKS: AtomicU64 = AtomicU64::new(0);
/// How long the first calibration spins.
const CALIBRATION_NS: u64 = 20_000;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions; Linux leaves it enabled for user
    // space (a process that disabled it with PR_SET_TSC would have to run
    // with MEMSCOPE_STATS=off).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn ticks() -> u64 {
    monotonic_ns()
}

/// CLOCK_MONOTONIC in nanoseconds (through the vDSO: no syscall when the
/// kernel's clock source allows; used only outside scopes here).
pub fn monotonic_ns() -> u64 {
    crate::os::monotonic_ns()
}

pub fn realtime_ns() -> u64 {
    crate::os::realtime_ns()
}

/// Takes the calibration's starting pair. Idempotent (a fork child keeps
/// its parent's factor).
pub fn start_calibration() {
    if NS_PER_TICK_FP.load(Relaxed) != 0 || BASE_NS.load(Relaxed) != 0 {
        return;
    }
    if cfg!(not(target_arch = "x86_64")) {
        NS_PER_TICK_FP.store(1 << 32, Relaxed);
        return;
    }
    // The clock first, then the TSC, as at the other end: a process's first
    // vDSO call faults its data page in before it reads the clock, and
    // microseconds between the two reads would skew the factor (0.6 % here
    // with the TSC read first). BASE_NS non-zero says both are stored.
    let (n0, t0) = (monotonic_ns(), ticks());
    BASE_TICKS.store(t0, Relaxed);
    BASE_NS.store(n0, Release);
}

/// Measures the tick rate from the starting pair (taken now if it was
/// not), waiting until at least 20 us have passed since it. Idempotent.
pub fn finish_calibration() {
    if NS_PER_TICK_FP.load(Relaxed) != 0 {
        return;
    }
    start_calibration();
    let n0 = BASE_NS.load(Acquire);
    if n0 == 0 {
        return; // not x86_64: the factor is set
    }
    let t0 = BASE_TICKS.load(Relaxed);
    let (mut n1, mut t1);
    loop {
        n1 = monotonic_ns();
        t1 = ticks();
        if n1.saturating_sub(n0) >= CALIBRATION_NS {
            break;
        }
        core::hint::spin_loop();
    }
    store_factor(n1 - n0, t1.wrapping_sub(t0));
}

/// Measures the rate again over everything since the first calibration
/// (the maintenance thread, about once a second): the longer the baseline,
/// the smaller the error of the two clock reads at its ends.
pub fn refine() {
    let (n0, t0) = (BASE_NS.load(Relaxed), BASE_TICKS.load(Relaxed));
    if cfg!(not(target_arch = "x86_64")) || n0 == 0 {
        return;
    }
    let (n1, t1) = (monotonic_ns(), ticks());
    // Past a few ms the estimate is already better than the first one;
    // a TSC that went backwards (another socket, a migration) is ignored.
    if n1.saturating_sub(n0) >= 5_000_000 && t1 > t0 {
        store_factor(n1 - n0, t1 - t0);
    }
}

fn store_factor(dns: u64, dticks: u64) {
    let fp = ((dns as u128) << 32) / dticks.max(1) as u128;
    NS_PER_TICK_FP.store((fp as u64).max(1), Relaxed);
}

/// Converts a tick interval to nanoseconds.
#[inline]
pub fn to_ns(dticks: u64) -> u64 {
    let mut fp = NS_PER_TICK_FP.load(Relaxed);
    if fp == 0 {
        fp = factor_now();
    }
    ((dticks as u128 * fp as u128) >> 32) as u64
}

/// The factor for a conversion made before the constructor finished the
/// calibration.
#[cold]
#[inline(never)]
fn factor_now() -> u64 {
    finish_calibration();
    NS_PER_TICK_FP.load(Relaxed)
}

/// Nanoseconds since `start` (a `ticks()` value).
#[inline]
pub fn since(start: u64) -> u64 {
    to_ns(ticks().wrapping_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_ticks_agree_with_the_monotonic_clock() {
        // Started, not finished: the first conversion finishes it.
        start_calibration();
        let (n0, t0) = (monotonic_ns(), ticks());
        while monotonic_ns() - n0 < 5_000_000 {}
        let measured = since(t0) as f64;
        let real = (monotonic_ns() - n0) as f64;
        assert!((measured / real - 1.0).abs() < 0.02, "{measured} vs {real}");
        // Refined over the 5 ms since: within 0.1 %.
        refine();
        let (n0, t0) = (monotonic_ns(), ticks());
        while monotonic_ns() - n0 < 5_000_000 {}
        let measured = since(t0) as f64;
        let real = (monotonic_ns() - n0) as f64;
        assert!(
            (measured / real - 1.0).abs() < 0.001,
            "refined: {measured} vs {real}"
        );
    }
}
