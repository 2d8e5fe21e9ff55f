//! Reclaimers: the daemon's cache-dropping callbacks (userspace shrinkers).
//!
//! They run on NOFAIL retry paths, filtered by the thread's NOFS/NOIO
//! flags and never under NORECLAIM, and on the maintenance thread when RSS
//! passes `MEMSCOPE_SOFT_LIMIT`. A fixed table, no allocation: register
//! and unregister are safe against reclaim running on other threads, and
//! unregister waits for a running callback to return (except when called
//! from inside that very callback).
//!
//! While a callback runs, its thread is marked `in_reclaim` and has NOFAIL
//! pushed: its own allocations may use the reserve and never recurse into
//! reclaim.

use core::ffi::{c_char, c_uint, c_void};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

use crate::base::counters::{count, Event};
use crate::base::tls;
use crate::scope::{self, NOFAIL, NOFS, NOIO, NORECLAIM};

/// `MEMSCOPE_RECLAIM_FS`: may take filesystem-level locks.
pub const NEEDS_FS: u32 = 0x1;
/// `MEMSCOPE_RECLAIM_IO`: may do I/O.
pub const NEEDS_IO: u32 = 0x2;

pub const MAX_RECLAIMERS: usize = 64;
const NAME_LEN: usize = 32;

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;
const DYING: u8 = 3;

pub type ReclaimFn = unsafe extern "C" fn(want: usize, arg: *mut c_void) -> usize;

struct Slot {
    state: AtomicU8,
    running: AtomicU32,
    func: AtomicUsize,
    arg: AtomicUsize,
    needs: AtomicU32,
    name: [AtomicU8; NAME_LEN],
}

static SLOTS: [Slot; MAX_RECLAIMERS] = [const {
    Slot {
        state: AtomicU8::new(FREE),
        running: AtomicU32::new(0),
        func: AtomicUsize::new(0),
        arg: AtomicUsize::new(0),
        needs: AtomicU32::new(0),
        name: [const { AtomicU8::new(0) }; NAME_LEN],
    }
}; MAX_RECLAIMERS];

/// Bytes reclaimed so far, and a futex word bumped on every progress so
/// that waiting NOFAIL callers wake early.
pub static BYTES_RECLAIMED: AtomicU64 = AtomicU64::new(0);
pub static PROGRESS: AtomicU32 = AtomicU32::new(0);

/// Registers a reclaimer; returns its id (>= 1), or -1 if `f` is NULL or
/// the table is full.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `f` is callable with `arg`
/// from any thread until unregistered.
pub unsafe fn register(name: *const c_char, f: Option<ReclaimFn>, arg: *mut c_void, needs: c_uint) -> i32 {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let Some(f) = f else { return -1 };
        for (i, slot) in SLOTS.iter().enumerate() {
            if slot
                .state
                .compare_exchange(FREE, CLAIMED, Acquire, Relaxed)
                .is_ok()
            {
                slot.func.store(f as usize, Relaxed);
                slot.arg.store(arg as usize, Relaxed);
                slot.needs.store(needs & (NEEDS_FS | NEEDS_IO), Relaxed);
                let bytes = if name.is_null() {
                    &b""[..]
                } else {
                    core::ffi::CStr::from_ptr(name).to_bytes()
                };
                for (j, cell) in slot.name.iter().enumerate() {
                    cell.store(
                        if j + 1 < NAME_LEN {
                            bytes.get(j).copied().unwrap_or(0)
                        } else {
                            0
                        },
                        Relaxed,
                    );
                }
                slot.state.store(ACTIVE, Release);
                return i as i32 + 1;
            }
        }
        -1
    }
}

/// Unregisters `id`; waits until no thread runs its callback. Unknown ids
/// are ignored.
pub fn unregister(id: i32) {
    let Some(slot) = usize::try_from(id)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| SLOTS.get(i))
    else {
        return;
    };
    if slot
        .state
        .compare_exchange(ACTIVE, DYING, AcqRel, Relaxed)
        .is_err()
    {
        return;
    }
    let own = tls::bss().running_reclaimer.get() == id as usize;
    let allowed = u32::from(own);
    while slot.running.load(Acquire) > allowed {
        crate::os::yield_now();
    }
    slot.state.store(FREE, Release);
}

/// Whether a reclaimer needing `needs` may run under scope `flags`: as in
/// the kernel, NOIO implies NOFS.
pub fn permitted(needs: u32, flags: u32) -> bool {
    if flags & NORECLAIM != 0 {
        return false;
    }
    let fs_blocked = flags & (NOFS | NOIO) != 0;
    let io_blocked = flags & NOIO != 0;
    !(needs & NEEDS_FS != 0 && fs_blocked || needs & NEEDS_IO != 0 && io_blocked)
}

/// Runs the reclaimers permitted under `flags`, in registration order,
/// until `want` bytes are reported freed. Returns the bytes reported.
/// Does nothing on a thread already inside a reclaimer.
pub fn run(want: usize, flags: u32) -> usize {
    let st = tls::state();
    if st.in_reclaim.get() != 0 || flags & NORECLAIM != 0 {
        return 0;
    }
    let mut freed = 0usize;
    for (i, slot) in SLOTS.iter().enumerate() {
        if freed >= want {
            break;
        }
        slot.running.fetch_add(1, AcqRel);
        let runnable = slot.state.load(Acquire) == ACTIVE && permitted(slot.needs.load(Relaxed), flags);
        if runnable {
            // SAFETY: `func` was stored from a `ReclaimFn` before ACTIVE
            // was published, and `running` keeps it registered.
            let f: ReclaimFn = unsafe { core::mem::transmute::<usize, ReclaimFn>(slot.func.load(Relaxed)) };
            let arg = slot.arg.load(Relaxed) as *mut c_void;
            st.in_reclaim.set(1);
            let prev_running = tls::bss().running_reclaimer.replace(i + 1);
            let saved = scope::push(NOFAIL);
            // The callback's own allocator calls overwrite where this
            // thread's call came from; the call's later records (its wait,
            // the policy) name that call's site, not the callback's.
            let caller = st.caller();
            let t = crate::stats::event_start();
            // SAFETY: the registrant promised `f` is callable with `arg`.
            let got = unsafe { f(want - freed, arg) };
            crate::stats::event_done(crate::stats::Timer::ReclaimerCall, t);
            st.set_caller(caller);
            scope::pop(saved);
            tls::bss().running_reclaimer.set(prev_running);
            st.in_reclaim.set(0);
            count(Event::ReclaimerCall);
            if got > 0 {
                freed = freed.saturating_add(got);
                BYTES_RECLAIMED.fetch_add(got as u64, Relaxed);
                progress();
            }
        }
        slot.running.fetch_sub(1, AcqRel);
    }
    freed
}

/// Wakes NOFAIL callers waiting for memory.
pub fn progress() {
    PROGRESS.fetch_add(1, Release);
    crate::os::futex_wake_all(&PROGRESS);
}

/// Waits until `PROGRESS` moves from `seen` or `timeout_ns` passes.
pub fn wait_for_progress(seen: u32, timeout_ns: u64) {
    crate::os::futex_wait(&PROGRESS, seen, timeout_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtering_follows_the_kernel() {
        let none = 0;
        assert!(permitted(none, 0) && permitted(NEEDS_FS, 0) && permitted(NEEDS_IO, 0));
        assert!(permitted(none, NOFS) && !permitted(NEEDS_FS, NOFS) && permitted(NEEDS_IO, NOFS));
        assert!(permitted(none, NOIO) && !permitted(NEEDS_FS, NOIO) && !permitted(NEEDS_IO, NOIO));
        assert!(!permitted(none, NORECLAIM) && !permitted(none, NORECLAIM | NOFAIL));
        assert!(!permitted(NEEDS_FS | NEEDS_IO, NOFS));
    }
}
