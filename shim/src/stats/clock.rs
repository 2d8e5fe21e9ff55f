//! Timestamps for latency samples: the TSC, read without a syscall (so a
//! NORECLAIM thread may time itself), converted to nanoseconds with a
//! factor calibrated once against CLOCK_MONOTONIC when the segment is made.
//! Elsewhere than x86_64 the monotonic clock itself is used.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Nanoseconds per tick, 32.32 fixed point (0 until calibrated).
static NS_PER_TICK_FP: AtomicU64 = AtomicU64::new(0);
/// How long calibration spins.
const CALIBRATION_NS: u64 = 200_000;

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

/// Measures the tick rate over ~0.2 ms (about 0.05% error with a
/// nanosecond clock). Idempotent.
pub fn calibrate() {
    if NS_PER_TICK_FP.load(Relaxed) != 0 {
        return;
    }
    if cfg!(not(target_arch = "x86_64")) {
        NS_PER_TICK_FP.store(1 << 32, Relaxed);
        return;
    }
    let (n0, t0) = (monotonic_ns(), ticks());
    let (mut n1, mut t1);
    loop {
        n1 = monotonic_ns();
        t1 = ticks();
        if n1 - n0 >= CALIBRATION_NS {
            break;
        }
        core::hint::spin_loop();
    }
    let dt = t1.wrapping_sub(t0).max(1);
    let fp = (((n1 - n0) as u128) << 32) / dt as u128;
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
    }
}
