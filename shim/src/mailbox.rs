//! The maintenance thread's mailbox: how every other layer signals it
//! without calling into it. A relaxed store to `WAKE`, counters of what it
//! should report, and a bounded channel of deferred frees and purge
//! requests whose receiver never blocks (it polls, so a sender never has
//! to wake it with a futex). Scoped threads only ever do a non-blocking
//! `try_send` here.
//!
//! The thread itself (`maintenance`) sits above everything it serves and
//! takes its work from here; starting it goes through
//! `crate::START_MAINTENANCE`, wired at the crate root, so that the layers
//! that need it started do not depend on it.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tikv_jemalloc_sys as jem;

use crate::counters::{count, Event};
use crate::tls;

pub use crate::tls::{Batch, BATCH};
/// Hand-offs the queue holds (BATCH * QUEUE pointers in flight at most).
const QUEUE: usize = 512;
/// A thread hands its deferred frees off once they hold this many bytes,
/// so that large pool blocks come back to the pool soon.
const BATCH_BYTES: usize = 1 << 20;

// A batch travels inline in the channel's preallocated slots: boxing it
// would allocate on the scoped thread.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Free(Batch),
    Purge,
}

impl Batch {
    /// Frees every pointer on the calling thread.
    pub(crate) fn free_all(&mut self) {
        for &p in &self.ptrs[..self.len] {
            // SAFETY: each pointer was a live block handed over by `free`.
            unsafe { jem::free(p as *mut c_void) };
        }
        self.len = 0;
        self.bytes = 0;
    }
}

static SENDER: AtomicPtr<Sender<Work>> = AtomicPtr::new(core::ptr::null_mut());
static WAKE: AtomicBool = AtomicBool::new(false);

/// NORECLAIM fast-fails on threads without NOWARN, not yet reported.
pub static FAST_FAILS_TO_REPORT: AtomicU64 = AtomicU64::new(0);
/// The largest request among them (bytes).
pub static FAST_FAIL_LARGEST: AtomicU64 = AtomicU64::new(0);
/// Impossible NOFAIL requests inside NORECLAIM answered NULL, not yet
/// reported (threads without NOWARN).
pub static POLICY_NULLS_TO_REPORT: AtomicU64 = AtomicU64::new(0);
/// The calling thread's deferred-free buffer.
///
/// # Safety
/// No other reference to it may be live: it is used only here, by its own
/// thread, never re-entrantly (nothing in between allocates or frees).
#[allow(clippy::mut_from_ref)]
unsafe fn deferred() -> &'static mut Batch {
    // SAFETY: the caller's contract.
    unsafe { &mut *tls::bss().deferred.get() }
}

/// Asks the thread to look at its work soon. No syscall: it polls.
#[inline]
pub fn wake() {
    WAKE.store(true, Relaxed);
}

pub fn is_running() -> bool {
    !SENDER.load(Acquire).is_null()
}

#[allow(clippy::result_large_err)] // gives the work back, unboxed (see `Work`)
fn try_send(w: Work) -> Result<(), Work> {
    let tx = SENDER.load(Acquire);
    if tx.is_null() {
        return Err(w);
    }
    // SAFETY: a published sender is never freed (a forked child forgets it).
    match unsafe { &*tx }.try_send(w) {
        Ok(()) => {
            wake();
            Ok(())
        }
        Err(TrySendError::Full(w)) | Err(TrySendError::Disconnected(w)) => Err(w),
    }
}

/// Asks for a purge of every arena (`malloc_trim` inside NORECLAIM).
pub fn request_purge() {
    let _ = try_send(Work::Purge);
}

/// Defers freeing `p` off this NORECLAIM thread. Never blocks and makes no
/// syscall unless the queue is full.
///
/// # Safety
/// `p` is a live block from this allocator, given up by the caller.
pub unsafe fn defer_free(p: *mut c_void) {
    count(Event::DeferredFree);
    // SAFETY: `p` is a live block (this function's contract).
    let size = unsafe { jem::sallocx(p, 0) };
    // SAFETY: the only reference, for the rest of this call.
    let b = unsafe { deferred() };
    b.ptrs[b.len] = p as usize;
    b.len += 1;
    b.bytes += size;
    if b.len == BATCH || b.bytes >= BATCH_BYTES {
        hand_off(b, true);
    }
}

/// Sends the buffer to the maintenance thread, or frees it here when the
/// queue is full or the thread is not running.
fn hand_off(b: &mut Batch, in_scope: bool) {
    if b.len == 0 {
        return;
    }
    match try_send(Work::Free(*b)) {
        Ok(()) => {
            b.len = 0;
            b.bytes = 0;
        }
        Err(_) => {
            if in_scope {
                count(Event::DeferredFreeOverflow);
                let oversize = oversize_threshold();
                for &p in &b.ptrs[..b.len] {
                    // SAFETY: a live block handed over by `free`.
                    if unsafe { jem::sallocx(p as *const c_void, 0) } >= oversize {
                        count(Event::NoreclaimOsCall);
                    }
                }
            }
            b.free_all();
        }
    }
}

/// Hands off whatever this thread deferred (leaving NORECLAIM, or exit).
#[inline]
pub fn flush_thread() {
    // SAFETY: a read of this thread's own buffer's length.
    if unsafe { (*tls::bss().deferred.get()).len } != 0 {
        flush_thread_now();
    }
}

#[cold]
#[inline(never)]
fn flush_thread_now() {
    // SAFETY: the only reference, for the rest of this call.
    hand_off(unsafe { deferred() }, false);
}

/// Touches this thread's deferred buffer so the first deferred free in a
/// scope takes no page fault.
pub fn touch_thread_buffer() {
    let b = tls::bss().deferred.get();
    // SAFETY: this thread's own buffer, mapped writable.
    unsafe { crate::os::prefault_write(b.cast(), core::mem::size_of::<Batch>()) };
}

/// jemalloc frees blocks at least this large by purging them at once.
pub(crate) fn oversize_threshold() -> usize {
    static CACHED: AtomicU64 = AtomicU64::new(0);
    let v = CACHED.load(Relaxed);
    if v != 0 {
        return v as usize;
    }
    let t = crate::ctl::read::<usize>(c"opt.oversize_threshold").unwrap_or(8 << 20);
    CACHED.store(t as u64, Relaxed);
    t
}

// ------------------------------------------------------------ the thread's side

/// Starts the maintenance thread if it is not running. Call only outside
/// NORECLAIM.
pub fn start_maintenance() {
    if !is_running() {
        (crate::START_MAINTENANCE)();
    }
}

/// A channel made when the library loaded, for the maintenance thread to
/// take when it starts (`take_prepared`), or null.
static PREPARED: AtomicPtr<(Sender<Work>, Receiver<Work>)> = AtomicPtr::new(core::ptr::null_mut());

/// Makes the channel now (the library's constructor): 270 KB that a
/// process may no longer be able to get when it first needs the thread.
/// A process that used up its address space before its first scope was
/// aborted by Rust's allocation-failure rule right there, in about half
/// the runs of `nofail rlimit-first`, even with memscope's own allocations
/// falling back on the reserve.
pub fn prepare() {
    if !PREPARED.load(Acquire).is_null() {
        return;
    }
    let pair = Box::into_raw(Box::new(crossbeam_channel::bounded::<Work>(QUEUE)));
    if PREPARED
        .compare_exchange(core::ptr::null_mut(), pair, AcqRel, Acquire)
        .is_err()
    {
        // SAFETY: ours, never published.
        drop(unsafe { Box::from_raw(pair) });
    }
}

/// The channel made at load, if not taken yet; else a new one.
pub(crate) fn take_channel() -> (Sender<Work>, Receiver<Work>) {
    let pair = PREPARED.swap(core::ptr::null_mut(), AcqRel);
    if pair.is_null() {
        crossbeam_channel::bounded::<Work>(QUEUE)
    } else {
        // SAFETY: made by `prepare` with Box::into_raw, taken once (swap).
        *unsafe { Box::from_raw(pair) }
    }
}

/// Publishes the running thread's sender (by `maintenance`, once started).
pub(crate) fn install(tx: Sender<Work>) {
    SENDER.store(Box::into_raw(Box::new(tx)), Release);
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

/// A forked child has no maintenance thread: forget the parent's channel
/// (its memory is leaked; it may be mid-operation) so that the next start
/// makes a new one.
pub fn forget() {
    SENDER.store(core::ptr::null_mut(), Relaxed);
    WAKE.store(false, Relaxed);
    STARTING.store(false, Relaxed);
}

/// Takes the wake-up flag (the thread, once per round).
pub(crate) fn take_wake() -> bool {
    WAKE.swap(false, Relaxed)
}
