//! The slow side of every entry point: calls whose thread has a non-zero
//! flag word (a scope is in force, or the thread is new) come here and are
//! sent to the allocator the scope asks for.
//!
//! Rule: on a NORECLAIM thread nothing here may make a syscall, take a
//! lock that purging holds, or touch memory that is not pre-faulted.
//! NORECLAIM allocations come from the pool through the thread's explicit
//! cache, and frees of pool blocks go back through it: the pool arena never
//! purges (its hooks refuse) and its memory is reused at once, which a
//! busy 2-core machine needs (handing them to the maintenance thread made
//! the pool run dry while that thread waited for a core). Frees of any
//! other block are deferred to the maintenance thread: an ordinary arena
//! may purge on the freeing thread. One syscall remains possible on a
//! pool free: returning an extent to the pool arena may wake jemalloc's
//! background thread (FUTEX_WAKE) when it sleeps with nothing to do; see
//! docs/DESIGN.md.

use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use tikv_jemalloc_sys as jem;

use crate::counters::{count, Event};
use crate::log::set_errno;
use crate::tls::{NOFAIL, NORECLAIM, NOWARN};
use crate::{init, magazine, mailbox, nofail, pool, stats, tls};
use memscope_abi::{OP_ALLOC, OP_FREE, OP_REALLOC};

/// `mallocx` flag bits a caller may choose in a scope: alignment and zero.
/// Arena and cache choices are the scope's to make.
const CALLER_BITS: i32 = 0x3f | jem::MALLOCX_ZERO;

/// The calling thread's scope flags, initialising the thread if new.
#[inline]
pub fn scope_flags() -> u32 {
    let f = tls::flags();
    if f & tls::THREAD_UNSEEN != 0 {
        init::thread_first_call()
    } else {
        f
    }
}

/// Allocates `size` bytes with `mallocx` flags (alignment, zero) in the
/// calling thread's context. NULL sets `errno = ENOMEM`.
///
/// # Safety
/// `mallocx_flags` holds only `MALLOCX_ALIGN`/`MALLOCX_ZERO` bits.
#[cold]
pub unsafe fn alloc(size: usize, mallocx_flags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_ALLOC, flags, || alloc_in(size, mallocx_flags, flags))
    }
}

unsafe fn alloc_in(size: usize, mallocx_flags: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let p = if flags & NORECLAIM != 0 {
            let p = pool_alloc(size, mallocx_flags, flags);
            if p.is_null() && flags & NOFAIL != 0 {
                nofail::noreclaim_fallback(size, mallocx_flags, flags)
            } else {
                p
            }
        } else if flags & NOFAIL != 0 {
            nofail::alloc(size, mallocx_flags, flags)
        } else if mallocx_flags == 0 {
            jem::malloc(size)
        } else {
            jem::mallocx(size.max(1), mallocx_flags)
        };
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        p
    }
}

/// # Safety
/// `p` is NULL or a live block from this allocator.
#[cold]
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() && tls::flags() & tls::THREAD_UNSEEN != 0 {
            // glibc frees NULL for every thread as it exits, after the
            // destructors that release a thread's stats slot: a thread seen
            // only for that would hold its slot for good.
            stats::thread::count_unseen(OP_FREE);
            return;
        }
        let flags = scope_flags();
        stats::counted(OP_FREE, flags, || {
            if flags & NORECLAIM != 0 {
                pool_free(p)
            } else {
                jem::free(p)
            }
        })
    }
}

/// # Safety
/// `p` is a live block from this allocator, `size > 0`.
#[cold]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_REALLOC, flags, || realloc_in(p, size, flags))
    }
}

unsafe fn realloc_in(p: *mut c_void, size: usize, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let q = if flags & NORECLAIM != 0 {
            pool_realloc(p, size, 0, flags)
        } else {
            jem::realloc(p, size)
        };
        let q = if q.is_null() && flags & NOFAIL != 0 {
            nofail_move(p, size, 0, flags)
        } else {
            q
        };
        if q.is_null() {
            set_errno(libc::ENOMEM);
        }
        q
    }
}

/// NOFAIL realloc after the ordinary path failed: a NOFAIL allocation, the
/// contents copied, the old block freed. NULL (old block untouched) only
/// where the policy says so.
unsafe fn nofail_move(p: *mut c_void, size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let q = if flags & NORECLAIM != 0 {
            nofail::noreclaim_fallback(size, caller_bits, flags)
        } else {
            nofail::alloc(size, caller_bits, flags)
        };
        if !q.is_null() {
            core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), jem::sallocx(p, 0).min(size));
            if flags & NORECLAIM != 0 {
                pool_free(p)
            } else {
                jem::free(p)
            }
        }
        q
    }
}

/// jemalloc's `mallocx` in the calling thread's context (no errno, as
/// jemalloc).
///
/// # Safety
/// As jemalloc's `mallocx`.
#[cold]
pub unsafe fn mallocx(size: usize, mflags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_ALLOC, flags, || {
            if flags & (NORECLAIM | NOFAIL) != 0 {
                // Scopes choose arena and cache; the caller keeps alignment
                // and zeroing. (`alloc_in` may set errno; mallocx promises
                // nothing there.)
                alloc_in(size, mflags & CALLER_BITS, flags)
            } else {
                jem::mallocx(size, mflags)
            }
        })
    }
}

/// # Safety
/// As jemalloc's `rallocx`.
#[cold]
pub unsafe fn rallocx(p: *mut c_void, size: usize, mflags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_REALLOC, flags, || {
            let q = if flags & NORECLAIM != 0 {
                pool_realloc(p, size, mflags & CALLER_BITS, flags)
            } else {
                jem::rallocx(p, size, mflags)
            };
            if q.is_null() && flags & NOFAIL != 0 {
                nofail_move(p, size, mflags & CALLER_BITS, flags)
            } else {
                q
            }
        })
    }
}

/// In place only. Inside NORECLAIM a block from outside the pool is left
/// as it is (shrinking it could purge): its size is returned, which callers
/// read as "could not resize".
///
/// # Safety
/// As jemalloc's `xallocx`.
#[cold]
pub unsafe fn xallocx(p: *mut c_void, size: usize, extra: usize, mflags: i32) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_REALLOC, flags, || xallocx_in(p, size, extra, mflags, flags))
    }
}

unsafe fn xallocx_in(p: *mut c_void, size: usize, extra: usize, mflags: i32, flags: u32) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if flags & NORECLAIM == 0 {
            return jem::xallocx(p, size, extra, mflags);
        }
        if pool::contains(p) {
            let st = tls::state();
            jem::xallocx(
                p,
                size,
                extra,
                (mflags & CALLER_BITS) | pool::thread_free_flags(st),
            )
        } else {
            jem::sallocx(p, 0)
        }
    }
}

/// `dallocx`/`sdallocx` (`size` 0: unknown).
///
/// # Safety
/// As jemalloc's `sdallocx`.
#[cold]
pub unsafe fn sdallocx(p: *mut c_void, size: usize, mflags: i32) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        stats::counted(OP_FREE, flags, || {
            if flags & NORECLAIM != 0 {
                pool_free(p)
            } else if size == 0 {
                jem::dallocx(p, mflags)
            } else {
                jem::sdallocx(p, size, mflags)
            }
        })
    }
}

// ------------------------------------------------------------ NORECLAIM

/// Serves from the pool (small requests from the thread's magazines,
/// others through its explicit cache), or fails at once.
#[inline(always)]
unsafe fn pool_alloc(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let st = tls::state();
        let pool_flags = st.pool_mallocx_flags.get();
        if pool_flags != 0 {
            let p = if caller_bits == 0 && size <= magazine::MAX_SIZE {
                magazine::alloc(size, pool_flags)
            } else {
                let p = jem::mallocx(size.max(1), pool_flags | caller_bits);
                pool::note_request(p, size, pool_flags | caller_bits);
                p
            };
            if !p.is_null() {
                return p;
            }
        }
        fast_fail(size, flags);
        null_mut()
    }
}

/// The NORECLAIM fast lane for small `malloc`s, taken by the entry point
/// before the general slow path: a block from the thread's magazines,
/// counted in its context (stats sample the general path only). NULL:
/// not served here (no NORECLAIM, a new thread, too large, empty stack,
/// or this call is the one to time).
#[inline(always)]
pub fn noreclaim_lane_alloc(size: usize) -> *mut c_void {
    let st = tls::state();
    if !lane_open(st, OP_ALLOC) || size > magazine::MAX_SIZE {
        return null_mut();
    }
    let p = magazine::take(size);
    if !p.is_null() {
        lane_count(st, OP_ALLOC);
    }
    p
}

/// The NORECLAIM fast lane for `free`: a small pool block back onto the
/// thread's magazines. False: not served here.
///
/// # Safety
/// `p` is NULL or a live block from this allocator.
#[inline(always)]
pub unsafe fn noreclaim_lane_free(p: *mut c_void) -> bool {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let st = tls::state();
        if !lane_open(st, OP_FREE) || !pool::contains(p) || !magazine::free(p, pool::small_usable(p)) {
            return false;
        }
        lane_count(st, OP_FREE);
        true
    }
}

/// A lane may serve this call of `op`: the thread is seen, in NORECLAIM,
/// and the call is not the one its stats sample times.
#[inline(always)]
fn lane_open(st: &tls::ThreadState, op: usize) -> bool {
    st.flags.get() & (NORECLAIM | tls::THREAD_UNSEEN) == NORECLAIM
        && stats::thread::slow_untimed_next(st, op, memscope_abi::CTX_NORECLAIM)
}

/// Counts a call a lane served: the gate's fast-path count given back,
/// one NORECLAIM call counted instead.
#[inline(always)]
fn lane_count(st: &tls::ThreadState, op: usize) {
    stats::thread::uncount_fast(st, op);
    stats::thread::slow_count_untimed(st, op, memscope_abi::CTX_NORECLAIM);
}

/// GFP_NOWAIT: count, ask for a refill, report later (never here).
#[cold]
fn fast_fail(size: usize, flags: u32) {
    count(Event::NoreclaimFastFail);
    if flags & NOWARN == 0 {
        mailbox::FAST_FAILS_TO_REPORT.fetch_add(1, Relaxed);
        mailbox::FAST_FAIL_LARGEST.fetch_max(size as u64, Relaxed);
    }
    mailbox::wake();
}

unsafe fn pool_free(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return;
        }
        if pool::contains(p) {
            if magazine::free(p, pool::small_usable(p)) {
                return;
            }
            let st = tls::state();
            jem::dallocx(p, pool::thread_free_flags(st));
        } else {
            mailbox::defer_free(p);
        }
    }
}

/// Pool blocks are resized in the pool; others move into it and their old
/// block's free is deferred. On failure the old block is untouched.
unsafe fn pool_realloc(p: *mut c_void, size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return pool_alloc(size, caller_bits, flags);
        }
        let st = tls::state();
        let pool_flags = st.pool_mallocx_flags.get();
        if pool_flags != 0 && pool::contains(p) {
            let q = jem::rallocx(p, size.max(1), pool_flags | caller_bits);
            if q.is_null() {
                fast_fail(size, flags);
            } else {
                pool::note_request(q, size, pool_flags | caller_bits);
            }
            return q;
        }
        let q = pool_alloc(size, caller_bits, flags);
        if !q.is_null() {
            let old = jem::sallocx(p, 0);
            core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), old.min(size));
            mailbox::defer_free(p);
        }
        q
    }
}
