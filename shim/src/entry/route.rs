//! The slow side of every entry point: calls whose thread has a non-zero
//! flag word (a scope is in force, or the thread is new) come here and are
//! sent to the allocator the scope asks for.
//!
//! Rule: on a NORECLAIM thread nothing here may make a syscall, take or
//! wait on any lock, or touch memory that is not pre-faulted. NORECLAIM
//! allocations come from the thread's own lists and the lock-free depot
//! (`magazine`, `depot`), never from jemalloc; frees of pool blocks go back
//! to them, so pool memory is reused at once; frees of any other block are
//! deferred to the maintenance thread through a lock-free list. The only
//! jemalloc call left on a scoped thread is `sallocx`, a lock-free read of
//! its radix tree, for blocks whose size the pool's table cannot vouch for.

use core::ffi::c_void;
use core::ptr::null_mut;

use tikv_jemalloc_sys as jem;

use crate::base::log::set_errno;
use crate::base::tls::{NOFAIL, NORECLAIM};
use crate::base::{mailbox, sizeclass, tls};
use crate::front::magazine;
use crate::pool::Freed;
use crate::scope::init;
use crate::{nofail, pool, stats};
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

/// Where a gated entry point goes when `tls::gate` says no: a plain
/// thread whose sample countdown ran out times the `plain` call; anything
/// else (a scope, a new thread) takes the `routed` slow path, which counts
/// the call itself.
///
/// Callers wrap this in a `#[cold]` function of plain arguments, so that
/// their fast path keeps nothing on the stack and tail-jumps.
#[inline(always)]
pub fn off_fast<R>(op: usize, plain: impl FnOnce() -> R, routed: impl FnOnce() -> R) -> R {
    let st = tls::state();
    let flags = st.flags.get();
    if flags == 0 && stats::thread::ran_out(st, op) {
        let t0 = stats::fast_timer();
        let r = plain();
        stats::fast_timed(op, t0);
        return r;
    }
    stats::thread::uncount_fast(st, op);
    if flags == 0 {
        // Biased with no scope in force: a signal handler's push raced the
        // pop that left the last scope. The words count again from here.
        stats::thread::unbias(&st.stats);
    }
    routed()
}

/// C `malloc` when the thread's gate said no (a scope, a new thread, or
/// the call its stats sample times): the timed plain call or the scope's
/// source (`off_fast`), or, for a NORECLAIM thread whose call is not the
/// one to time, the lane straight to the front end's door (through
/// `nofail` under NOFAIL too), counted without the general path's
/// sampling and dispatch. The entry point's one call down.
///
/// # Safety
/// As C `malloc`.
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    let st = tls::state();
    if !lane_open(st, OP_ALLOC) {
        // SAFETY: the caller's contract.
        return off_fast(
            OP_ALLOC,
            || unsafe { jem::malloc(size) },
            || unsafe { alloc(size, 0) },
        );
    }
    lane_count(st, OP_ALLOC);
    let flags = st.flags.get();
    // SAFETY: no `mallocx` bits.
    let p = unsafe { pool_alloc(size, 0, flags) };
    if p.is_null() {
        set_errno(libc::ENOMEM);
        noted(size, p, flags, None);
    }
    p
}

/// C `free`, all of it below the entry point: with the gate open, a block
/// outside the pool to jemalloc and a pool block to the front end;
/// otherwise `free_gated`. The pointer is sorted once (`pool::freed`, its
/// range test in line) on every path.
///
/// # Safety
/// `p` is NULL or a live block from this allocator.
#[inline(always)]
pub unsafe fn free(p: *mut c_void, gate_open: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if gate_open {
            return match pool::freed(p).kept() {
                Some((c, small)) => keep_outside(p, c, small),
                None => jem::free(p),
            };
        }
        free_gated(p)
    }
}

/// `free` when the gate said no (also the assembly `free`'s way in,
/// through `posix::free_slow_c`): the NORECLAIM lane, a pool block the
/// thread keeps back onto its lists, counted as the `malloc` lane counts;
/// else, the pointer sorted as the lane sorted it, the timed plain call or
/// the scope's destination.
///
/// # Safety
/// As `free`.
#[cold]
#[inline(never)]
pub unsafe fn free_gated(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe {
        let st = tls::state();
        let kind = if lane_open(st, OP_FREE) {
            let kind = pool::freed(p);
            if let Some((c, small)) = kind.kept() {
                magazine::keep_freed(p, c, small, st.flags.get());
                lane_count(st, OP_FREE);
                return;
            }
            kind
        } else {
            pool::freed(p)
        };
        off_fast(
            OP_FREE,
            || free_sorted_unscoped(p, kind, 0),
            || free_sorted_scoped(p, kind),
        )
    }
}

/// Counts a slow-path call of `op` in a scope with `flags` and times it
/// when its turn comes. Here rather than in `stats`, so that the request
/// the call carries goes down once (docs/DESIGN.md, "One pass down").
#[inline(always)]
fn counted<R>(op: usize, flags: u32, call: impl FnOnce() -> R) -> R {
    let t0 = stats::slow_counted(op, flags);
    let r = call();
    stats::slow_timed(op, flags, t0);
    r
}

/// A free (of a block, not NULL) inside a lock section is counted there.
#[inline(always)]
fn noted_free(p: *mut c_void, flags: u32) {
    if flags & tls::IN_LOCK != 0 && !p.is_null() && tls::bss().in_setup.get() == 0 {
        stats::locks::freed();
    }
}

/// `counted` for a call that returns a block: then, in NORECLAIM, its
/// site noted (`noted`), after the timing ends.
#[inline(always)]
fn counted_noted(op: usize, flags: u32, size: usize, call: impl FnOnce() -> *mut c_void) -> *mut c_void {
    let t0 = stats::slow_counted(op, flags);
    let p = call();
    let ns = stats::slow_timed(op, flags, t0);
    noted(size, p, flags, ns);
    p
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
        counted_noted(OP_ALLOC, flags, size, || alloc_in(size, mallocx_flags, flags))
    }
}

unsafe fn alloc_in(size: usize, mallocx_flags: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let p = if flags & NORECLAIM != 0 {
            pool_alloc(size, mallocx_flags, flags)
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
pub unsafe fn free_scoped(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free_sorted_scoped(p, pool::freed(p)) }
}

/// `free_scoped` of `p`, sorted as `kind`.
///
/// # Safety
/// As `free_scoped`; `kind` is `pool::freed(p)`.
unsafe fn free_sorted_scoped(p: *mut c_void, kind: Freed) {
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
        counted(OP_FREE, flags, || {
            if flags & NORECLAIM != 0 {
                pool_free_sorted(p, kind)
            } else {
                free_sorted_unscoped(p, kind, 0)
            }
        });
        noted_free(p, flags);
    }
}

/// # Safety
/// `p` is a live block from this allocator, `size > 0`.
#[cold]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        counted_noted(OP_REALLOC, flags, size, || realloc_in(p, size, flags))
    }
}

unsafe fn realloc_in(p: *mut c_void, size: usize, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let q = if flags & NORECLAIM != 0 {
            pool_realloc(p, size, 0, flags)
        } else if flags & NOFAIL != 0 {
            nofail_resize(p, size, 0, flags, || realloc_unscoped(p, size, flags))
        } else {
            realloc_unscoped(p, size, flags)
        };
        if q.is_null() {
            set_errno(libc::ENOMEM);
        }
        q
    }
}

/// A NOFAIL resize outside NORECLAIM, as a NOFAIL allocation: the size
/// limits first (the policy's answer, the old block untouched), then the
/// ordinary resize (`resize`; one of the attempts
/// `memscope_test_fail_next` fails), then, if it failed, a NOFAIL
/// allocation through reclaim and retry, the contents copied and the old
/// block freed. NULL (old block untouched) only where the policy says so.
///
/// # Safety
/// `p` is a live block from this allocator; `resize` resizes it.
unsafe fn nofail_resize(
    p: *mut c_void,
    size: usize,
    caller_bits: i32,
    flags: u32,
    resize: impl FnOnce() -> *mut c_void,
) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if let Some(answer) = nofail::answered_first(size, caller_bits, flags) {
            return answer;
        }
        let q = if nofail::injected_fault() {
            null_mut()
        } else {
            resize()
        };
        if !q.is_null() {
            return q;
        }
        let q = nofail::after_ordinary(size, caller_bits, flags);
        if !q.is_null() {
            core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), usable_size(p).min(size));
            free_unscoped(p, 0);
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
        counted_noted(OP_ALLOC, flags, size, || {
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

/// A NORECLAIM call has its answer: its site is recorded if it was refused
/// (under NOFAIL the policy's record names it instead) or sampled
/// (`stats::sites::noreclaim_call`).
#[inline(always)]
fn noted(size: usize, p: *mut c_void, flags: u32, ns: Option<u64>) {
    if flags & NORECLAIM != 0 {
        stats::sites::noreclaim_call(size, p.is_null() && flags & NOFAIL == 0, ns.is_some());
    }
    // Not memscope's own set-up's allocations (`ThreadBss::in_setup`).
    if flags & tls::IN_LOCK != 0 && tls::bss().in_setup.get() == 0 {
        stats::locks::allocated(size, p.is_null(), ns);
    }
}

/// # Safety
/// As jemalloc's `rallocx`.
#[cold]
pub unsafe fn rallocx(p: *mut c_void, size: usize, mflags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        // As `realloc_in` (inside NORECLAIM the pool's allocation answers
        // for NOFAIL: its policy, counted once).
        counted_noted(OP_REALLOC, flags, size, || {
            if flags & NORECLAIM != 0 {
                pool_realloc(p, size, mflags & CALLER_BITS, flags)
            } else if flags & NOFAIL != 0 {
                nofail_resize(p, size, mflags & CALLER_BITS, flags, || {
                    rallocx_unscoped(p, size, mflags, flags)
                })
            } else {
                rallocx_unscoped(p, size, mflags, flags)
            }
        })
    }
}

/// In place only. Inside NORECLAIM no block is resized (a pool block's
/// size is its class's; shrinking another could purge): its size is
/// returned, which callers read as "could not resize".
///
/// # Safety
/// As jemalloc's `xallocx`.
#[cold]
pub unsafe fn xallocx(p: *mut c_void, size: usize, extra: usize, mflags: i32) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = scope_flags();
        counted(OP_REALLOC, flags, || xallocx_in(p, size, extra, mflags, flags))
    }
}

unsafe fn xallocx_in(p: *mut c_void, size: usize, extra: usize, mflags: i32, flags: u32) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if flags & NORECLAIM == 0 {
            return xallocx_unscoped(p, size, extra, mflags);
        }
        // Never resized in scope: a pool block's size is its class's (or
        // jemalloc's, read lock-free), and resizing others could purge.
        match pool::keepable_class(p) {
            Some(c) => sizeclass::size_of(c),
            None => jem::sallocx(p, 0),
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
        counted(OP_FREE, flags, || {
            if flags & NORECLAIM != 0 {
                pool_free(p)
            } else if size == 0 {
                free_unscoped(p, mflags)
            } else {
                sized_free_unscoped(p, size, mflags)
            }
        });
        noted_free(p, flags);
    }
}

// ------------------------------------------------------------ NORECLAIM

/// A NORECLAIM allocation: the front end, or NULL at once (counted, a
/// refill asked for, reported later: `magazine::alloc_request`); under
/// NOFAIL too, the reserve, then the policy.
#[inline(always)]
unsafe fn pool_alloc(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe {
        if flags & NOFAIL == 0 {
            return magazine::alloc_request(size, caller_bits, flags, false).unwrap_or(null_mut());
        }
        nofail::alloc(size, caller_bits, flags)
    }
}

/// A lane may serve this call of `op`: the thread is seen, not exited, in
/// NORECLAIM, and the call is not the one its stats sample times.
#[inline(always)]
fn lane_open(st: &tls::ThreadState, op: usize) -> bool {
    st.flags.get() & (NORECLAIM | tls::THREAD_UNSEEN | tls::THREAD_EXITED | tls::IN_LOCK) == NORECLAIM
        && stats::thread::slow_untimed_next(st, op, memscope_abi::CTX_NORECLAIM)
}

/// Counts a call a lane served: the gate's fast-path count given back,
/// one NORECLAIM call counted instead.
#[inline(always)]
fn lane_count(st: &tls::ThreadState, op: usize) {
    stats::thread::uncount_fast(st, op);
    stats::thread::slow_count_untimed(st, op, memscope_abi::CTX_NORECLAIM);
}

/// `free` of a pool block outside NORECLAIM (a consumer freeing what a
/// scoped producer made): back onto this thread's lists, and from there to
/// the depot, rather than through jemalloc to the pool arena, which only
/// the maintenance thread could then restock from (a producer/consumer
/// pair ran at 0.6x of jemalloc's throughput that way). The lists are
/// drained when the thread exits.
///
/// # Safety
/// `p` is a live pool block, given up by the caller.
#[cold]
#[inline(never)]
pub unsafe fn free_pool_block_outside(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match pool::keepable_class(p) {
            Some(c) => keep_outside(p, c, false),
            None => jem::free(p),
        }
    }
}

/// A pool block of class `c` freed outside NORECLAIM onto this thread's
/// lists (`free_pool_block_outside`), its exit hook set up first.
///
/// # Safety
/// `p` is a live pool block of class `c`, given up by the caller.
#[cold]
#[inline(never)]
unsafe fn keep_outside(p: *mut c_void, c: usize, small: bool) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let st = tls::state();
        if st.lists_exit_hook.get() == 0 && st.flags.get() & tls::THREAD_EXITED == 0 {
            st.lists_exit_hook.set(1);
            init::register_thread_exit();
        }
        magazine::keep_freed(p, c, small, st.flags.get())
    }
}

/// jemalloc's `sdallocx` outside NORECLAIM, except for pool blocks, which go
/// back to the front end. jemalloc trusts the size of a sized free to pick
/// the block's bin, and a pool block may be of a larger class than its
/// request's (served from the next class up when its own was empty): its
/// sized free through jemalloc filed it in the wrong bin and corrupted the
/// slab (a test that frees such blocks with `free_sized` crashed).
///
/// # Safety
/// As jemalloc's `sdallocx`.
#[inline(always)]
pub unsafe fn sized_free_unscoped(p: *mut c_void, size: usize, mflags: i32) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match pool::freed(p) {
            Freed::Small(c) => keep_outside(p, c, true),
            Freed::Keep(c) => keep_outside(p, c, false),
            Freed::Unvouched => jem::free(p),
            Freed::Outside => jem::sdallocx(p, size, mflags),
        }
    }
}

/// jemalloc's `dallocx` (`free` for flags 0, NULL allowed) outside
/// NORECLAIM, except for pool blocks, which go back to the front end (see
/// `sized_free_unscoped`; a block memscope carved itself is not jemalloc's
/// to free at all), on an exited thread too (`magazine::keep_freed`).
///
/// # Safety
/// As jemalloc's `dallocx`.
#[inline(always)]
pub unsafe fn free_unscoped(p: *mut c_void, mflags: i32) {
    // SAFETY: the caller's contract.
    unsafe { free_sorted_unscoped(p, pool::freed(p), mflags) }
}

/// `free_unscoped` of `p`, sorted as `kind`.
///
/// # Safety
/// As `free_unscoped`; `kind` is `pool::freed(p)`.
#[inline(always)]
unsafe fn free_sorted_unscoped(p: *mut c_void, kind: Freed, mflags: i32) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match kind {
            Freed::Small(c) => keep_outside(p, c, true),
            Freed::Keep(c) => keep_outside(p, c, false),
            Freed::Outside if mflags != 0 => jem::dallocx(p, mflags),
            Freed::Outside | Freed::Unvouched => jem::free(p),
        }
    }
}

/// The usable size of a live block: its class's for a block memscope
/// carved (jemalloc never saw it), else jemalloc's (`sallocx`, a
/// lock-free radix-tree read).
///
/// # Safety
/// `p` is a live block from this allocator.
#[inline]
pub unsafe fn usable_size(p: *const c_void) -> usize {
    match pool::carved_class(p) {
        Some(c) => sizeclass::size_of(c),
        // SAFETY: the caller's contract.
        None => unsafe { jem::sallocx(p, 0) },
    }
}

/// `realloc`/`rallocx` outside NORECLAIM of a block memscope carved: it
/// keeps its block while the request fits its class and uses more than
/// half of it, and otherwise moves to a block made as the caller's
/// context makes them (`alloc_in`, `flags`), the contents copied and the
/// old block back to the front end: jemalloc cannot resize what it never
/// made. NULL (old block untouched) if the new block cannot be had.
///
/// # Safety
/// `p` is a live block memscope carved; `caller_bits` as for `alloc`;
/// `flags` has no NORECLAIM.
#[cold]
#[inline(never)]
unsafe fn realloc_carved_outside(p: *mut c_void, size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let Some(c) = pool::carved_class(p) else {
            return null_mut();
        };
        let old = sizeclass::size_of(c);
        let align = magazine::align_of_bits(caller_bits);
        let fits = size <= old && (align <= 16 || (p as usize) & (align - 1) == 0);
        // A block more than twice the request moves (memory back to use).
        if fits && size > old / 2 {
            return p;
        }
        let q = alloc_in(size.max(1), caller_bits & !jem::MALLOCX_ZERO, flags);
        if q.is_null() && fits {
            return p;
        }
        if !q.is_null() {
            move_contents(p, old, q, usable_size(q), size, caller_bits);
            free_pool_block_outside(p);
        }
        q
    }
}

/// The contents of `p` (`old` usable bytes) into `q` (`usable` bytes), a
/// move for a request of `size` bytes; with `MALLOCX_ZERO` in
/// `caller_bits`, `q` is zeroed past what was copied to its usable size,
/// as jemalloc's zeroed move does (zeroed from the old size only, a
/// shrinking move left the reused block's bytes in between).
///
/// # Safety
/// `p` and `q` are live, distinct blocks of at least `old` and `usable`
/// bytes.
unsafe fn move_contents(
    p: *const c_void,
    old: usize,
    q: *mut c_void,
    usable: usize,
    size: usize,
    caller_bits: i32,
) {
    let copied = old.min(size);
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), copied);
        if caller_bits & jem::MALLOCX_ZERO != 0 && usable > copied {
            core::ptr::write_bytes(q.cast::<u8>().add(copied), 0, usable - copied);
        }
    }
}

/// `realloc` outside NORECLAIM (`flags`: the scope in force, if any).
///
/// # Safety
/// As C `realloc`, `size > 0`.
#[inline(always)]
pub unsafe fn realloc_unscoped(p: *mut c_void, size: usize, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if pool::carved_class(p).is_some() {
            return realloc_carved_outside(p, size, 0, flags);
        }
        jem::realloc(p, size)
    }
}

/// `rallocx` outside NORECLAIM (`flags`: the scope in force, if any).
///
/// # Safety
/// As jemalloc's `rallocx`.
#[inline(always)]
pub unsafe fn rallocx_unscoped(p: *mut c_void, size: usize, mflags: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if pool::carved_class(p).is_some() {
            // The arena and cache bits are jemalloc's, for its own blocks.
            return realloc_carved_outside(p, size, mflags & CALLER_BITS, flags);
        }
        jem::rallocx(p, size, mflags)
    }
}

/// `xallocx` outside NORECLAIM: a block memscope carved is never resized
/// (its size is returned, "could not").
///
/// # Safety
/// As jemalloc's `xallocx`.
#[inline(always)]
pub unsafe fn xallocx_unscoped(p: *mut c_void, size: usize, extra: usize, mflags: i32) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match pool::carved_class(p) {
            Some(c) => sizeclass::size_of(c),
            None => jem::xallocx(p, size, extra, mflags),
        }
    }
}

/// A free inside NORECLAIM: a pool block onto the thread's list, anything
/// else deferred to the maintenance thread.
unsafe fn pool_free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { pool_free_sorted(p, pool::freed(p)) }
}

/// `pool_free` of `p`, sorted as `kind`.
///
/// # Safety
/// As `pool_free`; `kind` is `pool::freed(p)`.
unsafe fn pool_free_sorted(p: *mut c_void, kind: Freed) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return;
        }
        match kind {
            Freed::Small(c) => magazine::keep_freed(p, c, true, tls::flags()),
            Freed::Keep(c) => magazine::keep_freed(p, c, false, tls::flags()),
            Freed::Outside | Freed::Unvouched => mailbox::defer_free(p),
        }
    }
}

/// Reallocation inside NORECLAIM: a pool block whose class still fits
/// stays; otherwise a new front-end block, the contents copied, the old
/// block freed as `pool_free` does. On failure the old block is untouched.
unsafe fn pool_realloc(p: *mut c_void, size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return pool_alloc(size, caller_bits, flags);
        }
        let class = pool::keepable_class(p);
        if let Some(c) = class {
            if sizeclass::for_request(size, magazine::align_of_bits(caller_bits)) == Some(c) {
                return p;
            }
        }
        let old = match class {
            Some(c) => sizeclass::size_of(c),
            None => jem::sallocx(p, 0),
        };
        let q = pool_alloc(size, caller_bits & !jem::MALLOCX_ZERO, flags);
        if !q.is_null() {
            let usable = pool::class_of(q).map_or(size, sizeclass::size_of);
            move_contents(p, old, q, usable, size, caller_bits);
            match class {
                Some(c) => magazine::keep_freed(p, c, false, tls::flags()),
                None => mailbox::defer_free(p),
            }
        }
        q
    }
}
