//! Timestamps for latency samples: the TSC, read without a syscall (so a
//! NORECLAIM thread may time itself), converted to nanoseconds with a
//! factor calibrated against CLOCK_MONOTONIC: over 20 us when the segment
//! is made (within about 0.5 %, well inside a histogram bucket's 25 %; a
//! 200 us spin here was 0.2 ms of every exec under the preload), then
//! refined by the maintenance thread over the whole time since (`refine`),
//! which soon makes it exact. Elsewhere than x86_64 the monotonic clock
//! itself is used.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

/// Measures the tick rate over ~20 us. Idempotent.
pub fn calibrate() {
    if NS_PER_TICK_FP.load(Relaxed) != 0 {
        return;
    }
    if cfg!(not(target_arch = "x86_64")) {
        NS_PER_TICK_FP.store(1 << 32, Relaxed);
        return;
    }
    let (n0, t0) = (monotonic_ns(), ticks());
    BASE_NS.store(n0, Relaxed);
    BASE_TICKS.store(t0, Relaxed);
    let (mut n1, mut t1);
    loop {
        n1 = monotonic_ns();
        t1 = ticks();
        if n1 - n0 >= CALIBRATION_NS {
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
    ((dticks as u128 * NS_PER_TICK_FP.load(Relaxed) as u128) >> 32) as u64
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
        calibrate();
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
