//! A scoped thread's own free lists of pool blocks, one per size class
//! (`sizeclass`), in front of the shared `depot`: every NORECLAIM
//! allocation and every in-scope free of a pool block goes through here,
//! and nothing here calls jemalloc.
//!
//! A list links free blocks through their first word. An empty list takes
//! the thread's spare chain, or a chain from the depot (one CAS); a list
//! that reaches a chain's length becomes the spare, the old spare going
//! to the depot whole (one CAS, no walk over cold blocks). A thread starts
//! each class with a take of one block and
//! doubles that on every refill up to a full chain (slow start, as
//! tcmalloc's per-thread lists do), so 300 threads that each hold one
//! block do not strand 300 chains. Large-class blocks a thread keeps are
//! given back when it leaves NORECLAIM; everything goes back at exit.
//!
//! The lists live in the thread's `.tbss` block (`tls::ThreadBss`): zero at
//! thread start, touched only by threads that use NORECLAIM. Rule: plain
//! loads and stores on the thread's own state, atomics in the depot; no
//! syscall, no lock.

use core::ffi::c_void;
use core::ptr::null_mut;

use crate::base::counters::{count, Event};
use crate::base::mailbox::{self, Refusal};
use crate::base::sizeclass::{self, COUNT, PLAIN};
use crate::base::tls::{self, Magazines};
use crate::front::carve;
use crate::front::depot::{self, next_of, set_next};
use crate::pool;

/// The calling thread's lists (in its `.tbss` block, `tls::bss`).
#[inline(always)]
fn magazines() -> &'static Magazines {
    &tls::bss().magazines
}

#[inline(always)]
fn is_large(c: usize) -> bool {
    sizeclass::INFO[c].large
}

/// Bytes of pool blocks held in `m`'s lists and spares: kept by a thread,
/// not in use, not in the depot. Read by the maintenance thread while the
/// owner may change them (volatile loads, as the stats harvest reads
/// counts): a gauge, approximate while the owner works.
pub fn held_bytes(m: &Magazines) -> usize {
    (0..COUNT).fold(0usize, |a, c| {
        // SAFETY: cells of a live thread's block (the caller's handshake);
        // a torn count is impossible for an aligned u32 on this target.
        let n = unsafe { core::ptr::read_volatile(m.len[c].as_ptr()) as usize }
            // SAFETY: as above.
            + unsafe { core::ptr::read_volatile(m.spare_len[c].as_ptr()) as usize };
        a.saturating_add(n.saturating_mul(sizeclass::size_of(c)))
    })
}

#[inline(always)]
fn take_listed(m: &Magazines, c: usize) -> *mut c_void {
    let mut head = m.head[c].get();
    if head == 0 {
        head = m.spare[c].get();
        if head == 0 {
            return null_mut();
        }
        m.spare[c].set(0);
        m.len[c].set(m.spare_len[c].get());
        m.spare_len[c].set(0);
    }
    // SAFETY: `head` is a free pool block this thread's list owns.
    m.head[c].set(unsafe { next_of(head) });
    m.len[c].set(m.len[c].get() - 1);
    head as *mut c_void
}

/// The alignment a `mallocx` flags word asks for (0: none).
#[inline(always)]
pub fn align_of_bits(mallocx_bits: i32) -> usize {
    let lg = mallocx_bits & 0x3f;
    if lg == 0 {
        0
    } else {
        1 << lg
    }
}

/// The front end's door: a block for `size` bytes with `mallocx`
/// alignment and zero bits, or why not. The size becomes a class here,
/// once; everything below works with the class.
///
/// A refusal is counted and, unless `flags` has NOWARN, noted for the
/// maintenance thread to report; it is asked to refill either way. With
/// `reserve` (NOFAIL within `MEMSCOPE_NOFAIL_MAX`), the NOFAIL reserve's
/// stacks are tried after the pool has said no.
///
/// # Safety
/// `mallocx_bits` holds only `MALLOCX_ALIGN`/`MALLOCX_ZERO` bits.
#[inline(always)]
pub unsafe fn alloc_request(
    size: usize,
    mallocx_bits: i32,
    flags: u32,
    reserve: bool,
) -> Result<*mut c_void, Refusal> {
    let align = align_of_bits(mallocx_bits);
    let Some(c) = sizeclass::for_request(size, align) else {
        return Err(refused(Refusal::TooLarge, size, flags));
    };
    let (mut p, mut k) = alloc(c, align, false);
    if p.is_null() {
        let why = refused(why_refused(c), size, flags);
        if !reserve {
            return Err(why);
        }
        (p, k) = alloc(c, align, true);
        if p.is_null() {
            return Err(why);
        }
    }
    if mallocx_bits & tikv_jemalloc_sys::MALLOCX_ZERO != 0 {
        // Zero what the caller may use (`malloc_usable_size`), not only
        // what it asked for: the block's whole class, as jemalloc does.
        // SAFETY: a block of class `k`, ours.
        unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0, sizeclass::size_of(k)) };
    }
    Ok(p)
}

/// Why nothing served class `c`: the pool is exhausted (the uncarved
/// committed memory cannot hold one block), or, which would be a bug,
/// it could. Counted.
#[cold]
fn why_refused(c: usize) -> Refusal {
    if carve::fitted_one(c, refused_at_committed()) {
        count(Event::NoreclaimRefusedWithFree);
        Refusal::WithFree
    } else {
        count(Event::NoreclaimPoolExhausted);
        Refusal::Exhausted
    }
}

/// GFP_NOWAIT: a refusal counted, noted for the maintenance thread to
/// report (never here) unless NOWARN, and a refill asked for.
#[cold]
fn refused(why: Refusal, size: usize, flags: u32) -> Refusal {
    count(Event::NoreclaimFastFail);
    if flags & tls::NOWARN == 0 {
        mailbox::note_refusal(why, size);
    }
    mailbox::wake();
    why
}

/// A block of class `c` for a request aligned to `align`, and the class
/// of the block served: from this thread's list, the depot, or memory it
/// carves itself from the committed pool; when the pool has no uncarved
/// memory left, one of the larger classes that serves it; with `reserve`
/// (NOFAIL), the reserve's stacks last. NULL when none of these has one.
#[inline]
pub fn alloc(c: usize, align: usize, reserve: bool) -> (*mut c_void, usize) {
    let m = magazines();
    let Some(_busy) = tls::enter_lists() else {
        return alloc_reentrant(c, align, reserve);
    };
    let p = take_listed(m, c);
    if !p.is_null() {
        return (p, c);
    }
    refill_and_take(m, c, align, reserve)
}

#[cold]
#[inline(never)]
fn refill_and_take(m: &Magazines, c: usize, align: usize, reserve: bool) -> (*mut c_void, usize) {
    // An empty stack is not a miss yet: the thread carves what it needs
    // (counted as taken), and only a refusal asks for stock.
    if let Some((first, len)) = depot::take(c, false) {
        return (install(m, c, first, len, Origin::Pool), c);
    }
    let committed = pool::committed();
    if let Some((first, len)) = carve::carve(c) {
        return (install(m, c, first, len, Origin::Carved), c);
    }
    m.refused_at_committed.set(committed);
    depot::note_miss(c);
    let serving = || (c + 1..=fallback_limit(c)).filter(|&k| sizeclass::serves(k, c, align));
    for k in serving() {
        let p = take_listed(m, k);
        if !p.is_null() {
            return (p, k);
        }
        if let Some((first, len)) = depot::take_stand_in(k) {
            return (install(m, k, first, len, Origin::Pool), k);
        }
    }
    if reserve {
        return from_reserve(c, align);
    }
    (null_mut(), c)
}

/// A NOFAIL request the pool could not serve: a block of its class or a
/// larger one from the reserve's stacks, else one carved from the
/// reserve's uncarved share (any size the reserve has room for).
#[cold]
fn from_reserve(c: usize, align: usize) -> (*mut c_void, usize) {
    for k in (c..=reserve_limit(c)).filter(|&k| sizeclass::serves(k, c, align)) {
        if let Some(p) = take_one_from_reserve(k) {
            return (p, k);
        }
    }
    match carve::carve_from_reserve(c) {
        Some(p) => {
            crate::base::counters::count(crate::base::counters::Event::ReserveHit);
            (p as *mut c_void, c)
        }
        None => (null_mut(), c),
    }
}

/// One block of class `k` from the NOFAIL reserve's stacks, the rest of
/// its chain put back there: what a NOFAIL request does not use stays for
/// NOFAIL requests (given to the pool's stacks, any thread took it).
fn take_one_from_reserve(k: usize) -> Option<*mut c_void> {
    let chain = depot::take_reserve(k)?;
    // SAFETY: a chain of reserve blocks of class `k`, ours.
    Some(unsafe { first_of(k, chain, depot::give_reserve) })
}

/// The first block of a chain of class `k` just taken, the rest given
/// back with `give_rest` (which stacks, and how they are counted, is the
/// caller's choice).
///
/// # Safety
/// `chain` (first block, length) is the caller's; `give_rest` takes a
/// chain of that origin.
unsafe fn first_of(
    k: usize,
    (first, len): (usize, usize),
    give_rest: unsafe fn(usize, usize, usize),
) -> *mut c_void {
    if len > 1 {
        // SAFETY: the chain is ours; its tail after `first` is a chain of
        // `len - 1` blocks of class `k`.
        unsafe {
            give_rest(k, next_of(first), len - 1);
            set_next(first, 0);
        }
    }
    first as *mut c_void
}

/// `alloc` for a signal handler that interrupted this thread's own list
/// operation: the lists are left alone; a chain from the depot (or a span
/// carved) gives one block, the rest of it going back to the depot.
#[cold]
#[inline(never)]
fn alloc_reentrant(c: usize, align: usize, reserve: bool) -> (*mut c_void, usize) {
    for k in (c..=fallback_limit(c)).filter(|&k| sizeclass::serves(k, c, align)) {
        if let Some(chain) = depot::take(k, k == c) {
            // SAFETY: a chain just taken from the pool's stacks, ours.
            return (unsafe { first_of(k, chain, depot::give) }, k);
        }
        if let Some(chain) = if k == c { carve::carve(c) } else { None } {
            // SAFETY: a chain just carved, new, ours.
            return (unsafe { first_of(k, chain, carve::give_new_in_chains) }, k);
        }
    }
    if reserve {
        return from_reserve(c, align);
    }
    (null_mut(), c)
}

/// The last class a request of class `c` may be served from when its own
/// is empty and the pool has no uncarved memory left for it: the larger
/// classes of its kind (plain, or aligned) up to twice its size, nearest
/// first. A larger block serves the request meanwhile and goes back to
/// its own class when freed. Not further: a 64 KiB request served with a
/// 1 MiB block wastes 15/16 of it, and a thread waiting for the pool to
/// grow kept taking the floor block the maintenance thread restocked in
/// every large class, until the pool reached its maximum with half of it
/// in such blocks (`c-tests/noreclaim/noreclaim_grow.c`).
#[inline]
fn fallback_limit(c: usize) -> usize {
    if c >= PLAIN {
        return (c + 1).min(COUNT - 1);
    }
    let twice = 2 * sizeclass::size_of(c);
    let mut k = c;
    while k + 1 < PLAIN && sizeclass::size_of(k + 1) <= twice {
        k += 1;
    }
    k
}

/// The last class the NOFAIL reserve may serve a request of class `c`
/// from: any larger class of its kind (the reserve is for survival).
#[inline]
fn reserve_limit(c: usize) -> usize {
    if c >= PLAIN {
        COUNT - 1
    } else {
        PLAIN - 1
    }
}

/// Where a chain being installed came from: the pool's stacks (what is
/// not kept flows back), or a span just carved (what is not kept is new
/// stock, given in chains of the class's length).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Pool,
    Carved,
}

/// Keeps up to this thread's allowance of a chain just taken, gives the
/// rest to the depot, and returns one block. The class's list is empty.
fn install(m: &Magazines, c: usize, first: usize, len: usize, origin: Origin) -> *mut c_void {
    // An exited thread keeps none: its lists are not drained again; and a
    // large block is never kept (see `free`).
    let allowance = if is_large(c) || tls::flags() & tls::THREAD_EXITED != 0 {
        1
    } else {
        (m.allowance[c].get() as usize).max(1)
    };
    let keep = allowance.min(len);
    if keep < len {
        // Cut after `keep` blocks. (Only then: a thread past its slow
        // start keeps whole chains, and walking one to its end, up to 64
        // cold blocks, was the p99.9 of an in-scope small malloc.)
        let mut cut = first;
        for _ in 1..keep {
            // SAFETY: the chain's blocks are ours now.
            cut = unsafe { next_of(cut) };
        }
        // SAFETY: as above; the rest is still a chain of class `c`.
        unsafe {
            let rest = next_of(cut);
            set_next(cut, 0);
            match origin {
                Origin::Pool => depot::give(c, rest, len - keep),
                Origin::Carved => carve::give_new_in_chains(c, rest, len - keep),
            }
        }
    }
    if origin == Origin::Carved {
        depot::note_carved_taken(c, keep);
    }
    m.allowance[c].set((allowance * 2).min(sizeclass::chain_len(c)) as u32);
    // The list was empty: the kept blocks become it, minus the one served.
    // SAFETY: `first` is ours.
    let rest = unsafe { next_of(first) };
    m.head[c].set(rest);
    m.len[c].set(keep as u32 - 1);
    first as *mut c_void
}

/// The pool's committed bytes when this thread's last carve failed (see
/// `tls::Magazines::refused_at_committed`).
pub fn refused_at_committed() -> usize {
    magazines().refused_at_committed.get()
}

/// A freed pool block of class `c` onto the calling thread's lists, or,
/// once its exit hook has drained them (a free in a later key destructor,
/// `tls::THREAD_EXITED`), straight to the depot: the lists of an exiting
/// thread are not drained again, and a block left there was lost to the
/// pool for good.
///
/// # Safety
/// `p` is a live pool block of class `c`, given up by the caller.
/// `small`: the class is known not large (`pool::Freed::Small`); `flags`:
/// the thread's flag word, as the caller read it.
#[inline(always)]
pub unsafe fn keep_freed(p: *mut c_void, c: usize, small: bool, flags: u32) {
    // SAFETY: the caller's contract.
    unsafe {
        if flags & tls::THREAD_EXITED == 0 {
            if !small {
                return free(p, c);
            }
            return free_small(p, c);
        }
        give_one(p, c)
    }
}

/// Keeps a freed pool block of class `c`. A list that reaches a chain's
/// length becomes the spare chain; the old spare goes to the depot. Under
/// a signal handler that interrupted this thread's own list operation, the
/// block goes straight to the depot instead.
///
/// # Safety
/// `p` is a live pool block of class `c`, given up by the caller.
#[inline]
pub unsafe fn free(p: *mut c_void, c: usize) {
    // A large block goes straight back to the depot (one CAS, nothing
    // against its size): kept in a thread's lists until it left the scope,
    // large blocks of every class stranded on every thread, and eight
    // threads that never leave their scope made the others carve anew
    // what sat there (tens of MiB).
    if !is_large(c) {
        // SAFETY: the caller's contract; `c` is small.
        return unsafe { free_small(p, c) };
    }
    // SAFETY: the caller's contract.
    unsafe { give_one(p, c) }
}

/// `free` for a block of a small class (the NORECLAIM lane's trusted
/// classes), which lists keep; under a signal handler that interrupted
/// this thread's own list operation, it goes to the depot instead.
///
/// # Safety
/// As `free`; `c` is not large.
#[inline(always)]
pub unsafe fn free_small(p: *mut c_void, c: usize) {
    let m = magazines();
    if let Some(_busy) = tls::enter_lists() {
        // SAFETY: the caller's contract.
        return unsafe { keep(m, p, c) };
    }
    // SAFETY: the caller's contract.
    unsafe { give_one(p, c) }
}

/// Puts a freed block of small class `c` on its list; a list that reaches
/// a chain's length becomes the spare.
///
/// # Safety
/// The lists are this thread's (`tls::enter_lists`); `p` as for `free`.
#[inline(always)]
unsafe fn keep(m: &Magazines, p: *mut c_void, c: usize) {
    let p = p as usize;
    // SAFETY: the caller gives `p` up; it is at least 16 bytes.
    unsafe { set_next(p, m.head[c].get()) };
    m.head[c].set(p);
    let len = m.len[c].get() + 1;
    m.len[c].set(len);
    if len >= sizeclass::INFO[c].chain {
        retire_list(c);
    }
}

/// Gives a freed pool block of class `c` straight to the depot, as a
/// chain of one: a large block, a block freed by a signal handler inside
/// this thread's own list operation, or one freed by a thread whose lists
/// will not be drained again (its exit hook ran, `tls::THREAD_EXITED`).
///
/// # Safety
/// As `free`.
#[cold]
pub unsafe fn give_one(p: *mut c_void, c: usize) {
    // SAFETY: the caller gives `p` up; a chain of one ends in 0.
    unsafe {
        set_next(p as usize, 0);
        depot::give(c, p as usize, 1);
    }
}

/// Makes the (full) list the spare chain, giving the old spare to the
/// depot.
#[cold]
fn retire_list(c: usize) {
    let m = magazines();
    give_spare(c);
    m.spare[c].set(m.head[c].get());
    m.spare_len[c].set(m.len[c].get());
    m.head[c].set(0);
    m.len[c].set(0);
}

/// Gives the spare chain of class `c` to the depot, if there is one.
fn give_spare(c: usize) {
    let m = magazines();
    let first = m.spare[c].get();
    if first == 0 {
        return;
    }
    let n = m.spare_len[c].get();
    // SAFETY: the spare is a chain of `n` free pool blocks of class `c`,
    // ours, terminated by its last block's link.
    unsafe { depot::give(c, first, n as usize) };
    m.spare[c].set(0);
    m.spare_len[c].set(0);
}

/// Gives the whole list of class `c` to the depot as one chain.
fn give_list(c: usize) {
    let m = magazines();
    let first = m.head[c].get();
    let n = m.len[c].get();
    if first == 0 || n == 0 {
        return;
    }
    // SAFETY: the list is a chain of `n` free pool blocks of class `c`,
    // ours, terminated by its last block's link.
    unsafe { depot::give(c, first, n as usize) };
    m.head[c].set(0);
    m.len[c].set(0);
}

/// What a thread's lists give back as it leaves NORECLAIM: everything
/// when the pool fell short of stocking some class since this thread last
/// looked (`depot::recall_epoch`). So what a thread strands is bounded (a
/// list and a spare chain of each small class, 64 KiB at most; large
/// blocks are never kept: see `free`) and given back once others need it.
#[inline]
pub fn on_leaving_noreclaim() {
    let m = magazines();
    let Some(_busy) = tls::enter_lists() else {
        return;
    };
    let epoch = depot::recall_epoch();
    if m.epoch.get() != epoch {
        m.epoch.set(epoch);
        release(|_| true);
    }
}

/// Gives every kept block back to the depot (thread exit).
pub fn drain() {
    let Some(_busy) = tls::enter_lists() else {
        return;
    };
    release(|_| true);
}

#[cold]
fn release(which: impl Fn(usize) -> bool) {
    let m = magazines();
    for c in (0..COUNT).filter(|&c| which(c)) {
        give_list(c);
        give_spare(c);
        m.allowance[c].set(0);
    }
}

/// Touches every page of this thread's lists (they live in lazily
/// faulted TLS), so the first use in a scope takes no page fault.
pub fn touch() {
    let m = magazines();
    // SAFETY: this thread's own block, mapped writable.
    unsafe { crate::os::prefault_write((m as *const Magazines).cast(), core::mem::size_of::<Magazines>()) };
}
