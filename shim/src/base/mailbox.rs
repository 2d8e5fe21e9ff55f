//! The maintenance thread's mailbox: how every other layer signals it
//! without calling into it. A relaxed store to `WAKE`, counters of what it
//! should report, a purge request flag, and a lock-free list of deferred
//! frees. The thread polls (so nobody ever wakes it with a futex); scoped
//! threads only ever do atomic stores and one CAS loop here.
//!
//! The thread itself (`maintenance`) sits above everything it serves and
//! takes its work from here; starting it goes through
//! `crate::START_MAINTENANCE`, wired at the crate root, so that the layers
//! that need it started do not depend on it.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use tikv_jemalloc_sys as jem;

use crate::base::counters::{count, Event};
use crate::base::tls::{self, Deferred};

/// A thread hands its deferred frees off once it holds this many blocks or
/// bytes (so that large blocks go back soon).
const HAND_OFF_BLOCKS: usize = 64;
const HAND_OFF_BYTES: usize = 1 << 20;

/// Deferred frees handed off and not yet freed: blocks linked through
/// their first words. Threads push whole chains with one CAS; the
/// maintenance thread takes everything at once with a swap, so no pop ever
/// races a push (no ABA). This replaces a bounded channel: its `try_send`
/// may spin and then `sched_yield` while another sender is mid-write, and
/// a full queue made the scoped thread free the batch itself.
static DEFERRED: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Set when the maintenance thread could not be started (`clone` refused:
/// RLIMIT_NPROC, the cgroup's pids.max, a sandbox), until it is. While
/// set, only the unscoped set-up paths (`retry_start`) try again: a scope
/// push must stay free of syscalls, and used to retry (and die under a
/// seccomp filter) on every NORECLAIM push.
static START_FAILED: AtomicBool = AtomicBool::new(false);
static WAKE: AtomicBool = AtomicBool::new(false);
static PURGE_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Why a NORECLAIM allocation was refused (`magazine::alloc_request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The pool was exhausted: nothing ready served it, and the committed
    /// memory no arena or thread had carved could not hold one block.
    Exhausted,
    /// Larger (or more aligned) than any block the pool serves.
    TooLarge,
    /// Refused while committed memory was free (a bug if it happens).
    WithFree,
}

/// NORECLAIM fast-fails on threads without NOWARN, not yet reported, per
/// `Refusal`, and the largest request among each (bytes).
pub static FAST_FAILS_TO_REPORT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
pub static FAST_FAIL_LARGEST: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Notes a refused NORECLAIM allocation for the maintenance thread to
/// report (a scoped thread may not write to stderr).
pub fn note_refusal(why: Refusal, size: usize) {
    FAST_FAILS_TO_REPORT[why as usize].fetch_add(1, Relaxed);
    FAST_FAIL_LARGEST[why as usize].fetch_max(size as u64, Relaxed);
}
/// Impossible NOFAIL requests inside NORECLAIM answered NULL, not yet
/// reported (threads without NOWARN).
pub static POLICY_NULLS_TO_REPORT: AtomicU64 = AtomicU64::new(0);

/// The calling thread's deferred-free list.
///
/// # Safety
/// No other reference to it may be live: it is used only here, by its own
/// thread, never re-entrantly (nothing in between allocates or frees).
#[allow(clippy::mut_from_ref)]
unsafe fn deferred() -> &'static mut Deferred {
    // SAFETY: the caller's contract.
    unsafe { &mut *tls::bss().deferred.get() }
}

/// Asks the thread to look at its work soon. No syscall: it polls.
#[inline]
pub fn wake() {
    WAKE.store(true, Relaxed);
}

pub fn is_running() -> bool {
    RUNNING.load(Acquire)
}

/// Asks for a purge of every arena (`malloc_trim` inside NORECLAIM).
pub fn request_purge() {
    PURGE_REQUESTED.store(true, Relaxed);
    wake();
}

/// Defers freeing `p` off this NORECLAIM thread: no syscall, no lock.
///
/// # Safety
/// `p` is a live block from this allocator, given up by the caller.
pub unsafe fn defer_free(p: *mut c_void) {
    count(Event::DeferredFree);
    // SAFETY: `p` is a live block (this function's contract); the size
    // lookup reads jemalloc's radix tree, lock-free.
    let size = unsafe { jem::sallocx(p, 0) };
    let Some(_busy) = tls::enter_lists() else {
        // A signal handler's free landing inside this thread's own: the
        // block is handed off alone, the thread's list left as it is.
        let mut alone = Deferred {
            head: p as usize,
            tail: p as usize,
            len: 1,
            bytes: size,
        };
        hand_off(&mut alone);
        return;
    };
    // SAFETY: the only reference, for the rest of this call.
    let d = unsafe { deferred() };
    // SAFETY: `p` is given up; every jemalloc block holds a word.
    unsafe { *(p as *mut usize) = d.head };
    if d.head == 0 {
        d.tail = p as usize;
    }
    d.head = p as usize;
    d.len += 1;
    d.bytes += size;
    if d.len >= HAND_OFF_BLOCKS || d.bytes >= HAND_OFF_BYTES {
        hand_off(d);
    }
}

/// Pushes the thread's list onto `DEFERRED` (one CAS loop).
fn hand_off(d: &mut Deferred) {
    if d.head == 0 {
        return;
    }
    let mut top = DEFERRED.load(Relaxed);
    loop {
        // SAFETY: `tail` is the last block of this thread's own list.
        unsafe { *(d.tail as *mut usize) = top };
        match DEFERRED.compare_exchange_weak(top, d.head, Release, Relaxed) {
            Ok(_) => break,
            Err(now) => top = now,
        }
    }
    *d = Deferred {
        head: 0,
        tail: 0,
        len: 0,
        bytes: 0,
    };
    wake();
}

/// Frees every deferred block handed off so far (the maintenance thread).
/// Returns how many.
pub(crate) fn free_deferred() -> usize {
    let mut p = DEFERRED.swap(0, Acquire);
    let mut n = 0;
    while p != 0 {
        // SAFETY: each block was handed off by `defer_free`: live, given up,
        // its first word the link to the next.
        unsafe {
            let next = *(p as *const usize);
            jem::free(p as *mut c_void);
            p = next;
        }
        n += 1;
    }
    n
}

/// Takes a pending purge request (the maintenance thread).
pub(crate) fn take_purge_request() -> bool {
    PURGE_REQUESTED.swap(false, Relaxed)
}

/// Hands off whatever this thread deferred (leaving NORECLAIM, or exit).
#[inline]
pub fn flush_thread() {
    // SAFETY: a read of this thread's own list's length.
    if unsafe { (*tls::bss().deferred.get()).len } != 0 {
        flush_thread_now();
    }
}

#[cold]
#[inline(never)]
fn flush_thread_now() {
    let Some(_busy) = tls::enter_lists() else {
        return;
    };
    // SAFETY: the only reference, for the rest of this call.
    hand_off(unsafe { deferred() });
}

/// Touches this thread's deferred buffer so the first deferred free in a
/// scope takes no page fault.
pub fn touch_thread_buffer() {
    let b = tls::bss().deferred.get();
    // SAFETY: this thread's own buffer, mapped writable.
    unsafe { crate::os::prefault_write(b.cast(), core::mem::size_of::<Deferred>()) };
}

// ------------------------------------------------------------ the thread's side

/// Starts the maintenance thread if it is not running and no start has
/// failed (then only `retry_start` tries). Call only outside NORECLAIM.
pub fn start_maintenance() {
    if !is_running() && !start_failed() {
        (crate::START_MAINTENANCE)();
    }
}

/// Starts the maintenance thread if it is not running, even after a
/// failed start (at most once a second then: a daemon whose threads come
/// and go under RLIMIT_NPROC would otherwise retry for each): from a
/// thread's set-up (its first allocator call, its first NORECLAIM push),
/// which may make syscalls, never from a scope.
pub fn retry_start() {
    if is_running() {
        return;
    }
    if start_failed() {
        let now = crate::base::log::coarse_nanos();
        let last = LAST_FAILED_START_NS.load(Relaxed);
        if now.wrapping_sub(last) < RETRY_EVERY_NS
            || LAST_FAILED_START_NS
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
    }
    (crate::START_MAINTENANCE)();
}

/// When a start last failed (coarse clock), and how long retries wait.
static LAST_FAILED_START_NS: AtomicU64 = AtomicU64::new(0);
const RETRY_EVERY_NS: u64 = 1_000_000_000;

/// True while the maintenance thread could not be started: a scope takes
/// it as started (the pool does not refill; said once on stderr, counted
/// in `maintenance_start_failures`).
#[inline]
pub fn start_failed() -> bool {
    START_FAILED.load(Relaxed)
}

/// Records a failed start; true the first time (since the last success).
pub(crate) fn note_start_failed() -> bool {
    LAST_FAILED_START_NS.store(crate::base::log::coarse_nanos(), Relaxed);
    !START_FAILED.swap(true, Relaxed)
}

/// Records a start.
pub(crate) fn note_started() {
    START_FAILED.store(false, Relaxed);
}

/// Marks the maintenance thread running (by `maintenance`, once started).
pub(crate) fn set_running() {
    RUNNING.store(true, Release);
}

/// Set while one thread starts the maintenance thread.
static STARTING: AtomicBool = AtomicBool::new(false);

/// True if the caller is the one to start the thread (then `end_start`).
pub(crate) fn begin_start() -> bool {
    STARTING.compare_exchange(false, true, Acquire, Relaxed).is_ok()
}

pub(crate) fn end_start() {
    STARTING.store(false, Release);
}

/// A forked child has no maintenance thread: forget the parent's, so that
/// the next scope starts one (deferred frees handed off stay queued for it).
pub fn forget() {
    RUNNING.store(false, Relaxed);
    WAKE.store(false, Relaxed);
    STARTING.store(false, Relaxed);
    // The child may well be allowed a thread: its first scope tries.
    START_FAILED.store(false, Relaxed);
}

/// Takes the wake-up flag (the thread, once per round).
pub(crate) fn take_wake() -> bool {
    WAKE.swap(false, Relaxed)
}
