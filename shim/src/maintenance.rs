//! The maintenance thread, memscope's `kswapd`: refills the NORECLAIM pool,
//! frees what scoped threads deferred, runs purges they may not run, and
//! prints the diagnostics they may not print.
//!
//! Scoped threads reach it only through non-blocking operations: a
//! `try_send` on a bounded channel whose receiver never blocks (it polls,
//! so a sender never has to wake it with a futex), and a relaxed store to
//! `WAKE`. It is started lazily, never from a constructor, and again in a
//! forked child on the next push.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering::*};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tikv_jemalloc_sys as jem;

use crate::counters::{self, count, Event};
use crate::{glibc, log, pool, tls};

/// Pointers per deferred-free hand-off.
pub const BATCH: usize = 62;
/// Hand-offs the queue holds (BATCH * QUEUE pointers in flight at most).
const QUEUE: usize = 512;
/// A thread hands its deferred frees off once they hold this many bytes,
/// so that large pool blocks come back to the pool soon.
const BATCH_BYTES: usize = 1 << 20;
/// Poll interval bounds: 250 us while busy, doubling to 50 ms when idle.
const POLL_MIN_US: u64 = 250;
const POLL_MAX_US: u64 = 50_000;

// A batch travels inline in the channel's preallocated slots: boxing it
// would allocate on the scoped thread.
#[allow(clippy::large_enum_variant)]
enum Work {
    Free(Batch),
    Purge,
}

#[derive(Clone, Copy)]
pub struct Batch {
    len: usize,
    bytes: usize,
    ptrs: [usize; BATCH],
}

impl Batch {
    const EMPTY: Batch = Batch {
        len: 0,
        bytes: 0,
        ptrs: [0; BATCH],
    };

    /// Frees every pointer on the calling thread.
    fn free_all(&mut self) {
        for &p in &self.ptrs[..self.len] {
            // SAFETY: each pointer was a live block handed over by `free`.
            unsafe { jem::free(p as *mut c_void) };
        }
        self.len = 0;
        self.bytes = 0;
    }
}

static SENDER: AtomicPtr<Sender<Work>> = AtomicPtr::new(core::ptr::null_mut());
static STARTING: AtomicU8 = AtomicU8::new(0);
static WAKE: AtomicBool = AtomicBool::new(false);
static ATFORK: AtomicBool = AtomicBool::new(false);

/// NORECLAIM fast-fails on threads without NOWARN, not yet reported.
pub static FAST_FAILS_TO_REPORT: AtomicU64 = AtomicU64::new(0);
/// The largest request among them (bytes).
pub static FAST_FAIL_LARGEST: AtomicU64 = AtomicU64::new(0);
/// Impossible NOFAIL requests inside NORECLAIM answered NULL, not yet
/// reported (threads without NOWARN).
pub static POLICY_NULLS_TO_REPORT: AtomicU64 = AtomicU64::new(0);
/// How often the maintenance thread compares RSS with the soft limit.
const SOFT_LIMIT_EVERY_NS: u64 = 100_000_000;

thread_local! {
    /// Frees deferred by this thread while in NORECLAIM, not yet handed off.
    static DEFERRED: UnsafeCell<Batch> = const { UnsafeCell::new(Batch::EMPTY) };
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
    let size = jem::sallocx(p, 0);
    DEFERRED.with(|cell| {
        // SAFETY: only this thread touches its buffer, and nothing in here
        // can re-enter `defer_free` (no allocation happens in between).
        let b = unsafe { &mut *cell.get() };
        b.ptrs[b.len] = p as usize;
        b.len += 1;
        b.bytes += size;
        if b.len == BATCH || b.bytes >= BATCH_BYTES {
            hand_off(b, true);
        }
        tls::state().deferred_pending.set(b.len as u32);
    });
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
    if tls::state().deferred_pending.get() != 0 {
        flush_thread_now();
    }
}

#[cold]
#[inline(never)]
fn flush_thread_now() {
    let st = tls::state();
    DEFERRED.with(|cell| {
        // SAFETY: as in `defer_free`.
        let b = unsafe { &mut *cell.get() };
        hand_off(b, false);
        st.deferred_pending.set(b.len as u32);
    });
}

/// Touches this thread's deferred buffer so the first deferred free in a
/// scope takes no page fault.
pub fn touch_thread_buffer() {
    DEFERRED.with(|cell| {
        // SAFETY: as in `defer_free`; a volatile write of the current value.
        unsafe {
            let b = &mut *cell.get();
            for i in (0..BATCH).step_by(512 / core::mem::size_of::<usize>()) {
                core::ptr::write_volatile(&mut b.ptrs[i], b.ptrs[i]);
            }
            core::ptr::write_volatile(&mut b.ptrs[BATCH - 1], b.ptrs[BATCH - 1]);
        }
    });
}

/// jemalloc frees blocks at least this large by purging them at once.
fn oversize_threshold() -> usize {
    static CACHED: AtomicU64 = AtomicU64::new(0);
    let v = CACHED.load(Relaxed);
    if v != 0 {
        return v as usize;
    }
    let t = crate::ctl::read::<usize>(c"opt.oversize_threshold").unwrap_or(8 << 20);
    CACHED.store(t as u64, Relaxed);
    t
}

// ------------------------------------------------------------ the thread

/// Starts the thread if it is not running. Call only outside NORECLAIM.
pub fn ensure_started() {
    if is_running() || STARTING.compare_exchange(0, 1, Acquire, Relaxed).is_err() {
        return;
    }
    register_atfork();
    oversize_threshold();
    let (tx, rx) = crossbeam_channel::bounded::<Work>(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("memscope-maint".into())
        .stack_size(256 << 10)
        .spawn(move || run(rx));
    match spawned {
        Ok(_) => SENDER.store(Box::into_raw(Box::new(tx)), Release),
        Err(e) => {
            let code = e.raw_os_error().unwrap_or(0);
            log::warn(format_args!(
                "could not start the maintenance thread (errno {code}); the NORECLAIM pool will not refill"
            ));
        }
    }
    STARTING.store(0, Release);
}

fn run(rx: Receiver<Work>) {
    let mut poll_us = POLL_MIN_US;
    let mut last_purges = 0;
    let mut last_soft_check = 0u64;
    let mut last_harvest = 0u64;
    loop {
        let mut busy = WAKE.swap(false, Relaxed);
        while let Ok(work) = rx.try_recv() {
            busy = true;
            match work {
                Work::Free(mut b) => b.free_all(),
                Work::Purge => {
                    glibc::purge_all();
                    count(Event::MaintenancePurge);
                }
            }
        }
        let more_refill = pool::refill_step();
        busy |= more_refill;
        report_fast_fails();
        let now = crate::log::coarse_nanos();
        if now.wrapping_sub(last_harvest) >= crate::stats::thread::HARVEST_EVERY_NS {
            last_harvest = now;
            crate::stats::thread::harvest_all();
        }
        if now.wrapping_sub(last_soft_check) >= SOFT_LIMIT_EVERY_NS {
            last_soft_check = now;
            busy |= enforce_soft_limit();
        }
        let purges = counters::get(Event::MaintenancePurge);
        busy |= purges != last_purges;
        last_purges = purges;
        if more_refill {
            continue; // drain the queue again, then the next step
        }
        poll_us = if busy {
            POLL_MIN_US
        } else {
            (poll_us * 2).min(POLL_MAX_US)
        };
        sleep_us(poll_us);
    }
}

fn sleep_us(us: u64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: (us * 1_000) as libc::c_long,
    };
    // SAFETY: `ts` is valid; an early wake-up (EINTR) is harmless.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// Runs the reclaimers (all of them: this thread holds no locks) when RSS
/// is above `MEMSCOPE_SOFT_LIMIT`, asking for the excess, then purges.
/// Returns true if it ran them.
fn enforce_soft_limit() -> bool {
    let limit = crate::config::CONFIG.soft_limit.load(Relaxed);
    if limit == 0 {
        return false;
    }
    let rss = resident_bytes();
    if rss <= limit {
        return false;
    }
    count(Event::SoftLimitReclaim);
    if crate::reclaim::run((rss - limit) as usize, 0) > 0 {
        // What the reclaimers freed is dirty memory until purged; purge it
        // here (this thread may) so RSS, which the limit is about, drops
        // and the next look does not reclaim again for the same bytes.
        glibc::purge_all();
        count(Event::MaintenancePurge);
    }
    true
}

/// Resident set size from `/proc/self/statm`, read without allocating.
fn resident_bytes() -> u64 {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; `buf` is valid for its length.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..n.max(0) as usize];
    let pages = text
        .split(|&c| c == b' ')
        .nth(1)
        .and_then(|f| core::str::from_utf8(f).ok())
        .and_then(|f| f.trim().parse::<u64>().ok())
        .unwrap_or(0);
    pages * crate::posix::page_size() as u64
}

/// Prints, for scoped threads that may not, one line about the NORECLAIM
/// allocations that failed since the last report.
fn report_fast_fails() {
    let nulls = POLICY_NULLS_TO_REPORT.swap(0, Relaxed);
    if nulls > 0 {
        log::warn(format_args!(
            "{nulls} impossible NOFAIL allocation(s) inside NORECLAIM returned NULL: pool and reserve empty \
             (MEMSCOPE_NOFAIL_POLICY=null)"
        ));
    }
    let n = FAST_FAILS_TO_REPORT.swap(0, Relaxed);
    if n == 0 {
        return;
    }
    let largest = FAST_FAIL_LARGEST.swap(0, Relaxed);
    let u = pool::usage();
    log::warn(format_args!(
        "{n} NORECLAIM allocation(s) failed at once: pool exhausted (largest request {largest} bytes; \
         pool committed {} of {} reserved bytes); refilling. Raise MEMSCOPE_NORECLAIM_POOL, or add NOWARN to silence",
        u.committed, u.reserved
    ));
}

// ------------------------------------------------------ thread exit, fork

static EXIT_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Arranges for `on_thread_exit` to run when the calling thread exits.
pub fn register_thread_exit() {
    let mut key = EXIT_KEY.load(Acquire);
    if key == u32::MAX {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: `k` is a valid out-pointer; the destructor is extern "C".
        if unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) } != 0 {
            return;
        }
        key = match EXIT_KEY.compare_exchange(u32::MAX, k, AcqRel, Acquire) {
            Ok(_) => k,
            Err(existing) => {
                // SAFETY: `k` was just created and never used.
                unsafe { libc::pthread_key_delete(k) };
                existing
            }
        };
    }
    // SAFETY: `key` is a live key; any non-NULL value makes the destructor run.
    unsafe { libc::pthread_setspecific(key, 1 as *const c_void) };
}

extern "C" fn on_thread_exit(_: *mut c_void) {
    // The thread may exit inside a scope: from here on it is plain.
    let st = tls::state();
    crate::stats::thread::unbias(&st.stats);
    st.flags.set(0);
    st.depth.set(0);
    flush_thread();
    crate::magazine::drain(pool::thread_free_flags(st));
    pool::release_thread_cache();
    crate::stats::thread::exit(st);
}

fn register_atfork() {
    if ATFORK.swap(true, Relaxed) {
        return;
    }
    // SAFETY: registering a handler with no preconditions.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
}

/// The child has no maintenance thread: forget the parent's channel (its
/// memory is leaked, it may be mid-operation) so the next push starts anew.
extern "C" fn after_fork_in_child() {
    SENDER.store(core::ptr::null_mut(), Relaxed);
    STARTING.store(0, Relaxed);
    WAKE.store(false, Relaxed);
}
