//! The depot: per size class, lock-free stacks of ready pool blocks that
//! scoped threads take from and give back to, stocked ahead of time by the
//! maintenance thread. What makes NORECLAIM non-blocking: a scoped thread
//! never calls into jemalloc to allocate or free a pool block (jemalloc's
//! arena paths take mutexes a preempted thread may hold, and its
//! per-thread upkeep can wake its background thread with a futex); it
//! only pops and pushes here, with one compare-and-swap per chain.
//!
//! A stack holds *chains*: blocks linked through their first word, the
//! chain's first block holding, in its second word, the next chain and the
//! chain's length (top 16 bits). Every class is at least 16 bytes, so both
//! words fit. The stack head packs the first chain's address (>> 4) with a
//! tag bumped by every change, so a pop that read a stale `next` (the chain
//! was taken and given back meanwhile: ABA) fails its CAS. Reading a stale
//! block is harmless: pool memory stays mapped for the life of the process.
//!
//! Blocks are genuine jemalloc allocations from the pool arena (made by the
//! maintenance thread), so any thread may also free them through jemalloc,
//! outside a scope; the pool's page-class table (`pool::note_class`)
//! records each block's class for frees inside one.
//!
//! Two sets of stacks: the pool's, and the NOFAIL reserve's (served only to
//! NOFAIL requests inside NORECLAIM when the pool's are empty).
//!
//! Rule: the pop and push side runs on scoped threads: atomics and plain
//! loads and stores on pool memory; no syscall, no lock, no jemalloc.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use tikv_jemalloc_sys as jem;

use crate::base::counters::{count, Event};
use crate::base::mailbox;
use crate::base::sizeclass::{self, COUNT};
use crate::pool;

const PTR_BITS: u32 = 44;
const PTR_MASK: u64 = (1 << PTR_BITS) - 1;
const LEN_SHIFT: u32 = 48;
const NEXT_MASK: usize = (1 << LEN_SHIFT) - 1;

/// One lock-free stack of chains.
struct Stack {
    /// `(first chain >> 4) | tag << 44`; 0 is empty.
    head: AtomicU64,
    /// Blocks on the stack (approximate between a CAS and its count).
    blocks: AtomicU64,
    /// Blocks being made for the stack (`fill`'s claims): a thread's first
    /// push stocking the floors and the maintenance thread stocking the
    /// same class at once each filled it to its target, twice over.
    filling: AtomicU64,
}

impl Stack {
    const fn new() -> Self {
        Stack {
            head: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            filling: AtomicU64::new(0),
        }
    }

    /// Pushes a chain of `len` blocks starting at `first` (already linked
    /// through their first words).
    ///
    /// # Safety
    /// The chain is made of free pool blocks of this stack's class, owned
    /// by the caller, at least 16 bytes each.
    unsafe fn push(&self, first: usize, len: usize) {
        let mut head = self.head.load(Relaxed);
        loop {
            let next = ((head & PTR_MASK) << 4) as usize;
            // SAFETY: the caller owns `first`, a block of at least 16 bytes.
            unsafe { word(first, 1).store(next | (len << LEN_SHIFT), Relaxed) };
            let tag = (head >> PTR_BITS).wrapping_add(1);
            let new = ((first as u64) >> 4) | (tag << PTR_BITS);
            match self.head.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        self.blocks.fetch_add(len as u64, Relaxed);
    }

    /// Pops a chain: its first block and length, or None when empty.
    fn pop(&self) -> Option<(usize, usize)> {
        let mut head = self.head.load(Acquire);
        loop {
            let first = ((head & PTR_MASK) << 4) as usize;
            if first == 0 {
                return None;
            }
            // SAFETY: `first` is (or was, if another thread popped it
            // meanwhile) a pool block; pool memory is never unmapped, so
            // the read is valid, and a stale value fails the CAS below.
            let link = unsafe { word(first, 1).load(Relaxed) };
            let tag = (head >> PTR_BITS).wrapping_add(1);
            let next = ((link & NEXT_MASK) as u64) >> 4;
            match self
                .head
                .compare_exchange_weak(head, next | (tag << PTR_BITS), Acquire, Acquire)
            {
                Ok(_) => {
                    let len = link >> LEN_SHIFT;
                    self.blocks.fetch_sub(len as u64, Relaxed);
                    return Some((first, len));
                }
                Err(now) => head = now,
            }
        }
    }
}

/// Word `i` of a free block, as an atomic (the stacks read blocks other
/// threads may be writing).
///
/// # Safety
/// `block` is a pool block of at least `8 * (i + 1)` bytes.
#[inline(always)]
unsafe fn word(block: usize, i: usize) -> &'static core::sync::atomic::AtomicUsize {
    // SAFETY: the caller's contract; pool memory is mapped for good.
    unsafe { &*(block as *const core::sync::atomic::AtomicUsize).add(i) }
}

/// The link to the next block of a chain (or of a thread's list).
///
/// # Safety
/// `block` is a free pool block owned by the caller.
#[inline(always)]
pub unsafe fn next_of(block: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { word(block, 0).load(Relaxed) }
}

/// Links `block` to `next`.
///
/// # Safety
/// `block` is a free pool block owned by the caller.
#[inline(always)]
pub unsafe fn set_next(block: usize, next: usize) {
    // SAFETY: the caller's contract.
    unsafe { word(block, 0).store(next, Relaxed) }
}

static POOL_STACKS: [Stack; COUNT] = [const { Stack::new() }; COUNT];
static RESERVE_STACKS: [Stack; COUNT] = [const { Stack::new() }; COUNT];

/// Blocks threads took from, and gave back to, each class's stack since the
/// maintenance thread last looked: the net outflow is the demand the stock
/// follows (a thread that takes a chain and gives most of it back, or
/// frees as much as it allocates, asks for nothing).
static TAKEN: [AtomicU32; COUNT] = [const { AtomicU32::new(0) }; COUNT];
static GIVEN: [AtomicU32; COUNT] = [const { AtomicU32::new(0) }; COUNT];
/// Requests per class that found the stack empty since it last looked.
static MISSED: [AtomicU32; COUNT] = [const { AtomicU32::new(0) }; COUNT];
/// Bursts: blocks out of each class's stack (taken minus given, wrapping:
/// only differences are read), the most of it since the maintenance
/// thread last looked, and what it was then. A thread that takes a
/// hundred blocks in a scope and gives them all back at its end has a net
/// outflow of zero; its burst is a hundred, which the stock must cover
/// (with net flow alone a repeated burst of 100 x 128 KiB was refused 60
/// blocks every time, for as long as it ran).
static OUT: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
static PEAK: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
static BASE: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

/// Bytes of free blocks on the pool's and the reserve's stacks (a gauge:
/// approximate while threads take and give).
pub fn ready_bytes() -> (usize, usize) {
    let sum = |stacks: &[Stack; COUNT]| {
        (0..COUNT).fold(0usize, |a, c| {
            a.saturating_add((stacks[c].blocks.load(Relaxed) as usize).saturating_mul(sizeclass::size_of(c)))
        })
    };
    (sum(&POOL_STACKS), sum(&RESERVE_STACKS))
}

/// Takes a chain of class `c` from the pool's stacks: first block and
/// length, or None. `wanted` says the request was for this class: an empty
/// stack then counts as demand the maintenance thread stocks for (a
/// stand-in class found empty does not).
#[inline]
pub fn take(c: usize, wanted: bool) -> Option<(usize, usize)> {
    let got = POOL_STACKS[c].pop();
    match got {
        Some((_, len)) => {
            TAKEN[c].fetch_add(len as u32, Relaxed);
            let out = OUT[c].fetch_add(len as u64, Relaxed).wrapping_add(len as u64);
            // Wrapping order: `out` is ahead of the peak by less than 2^63.
            if out.wrapping_sub(PEAK[c].load(Relaxed)) as i64 > 0 {
                note_peak(c, out);
            }
            if POOL_STACKS[c].blocks.load(Relaxed) < low_mark(c) {
                mailbox::wake();
            }
        }
        None if wanted => {
            MISSED[c].fetch_add(1, Relaxed);
            mailbox::wake();
        }
        None => {}
    }
    got
}

/// Takes a chain of class `k` to stand in for a smaller class whose stack
/// and carve came up empty: not demand for `k` (the miss of the class
/// asked for is), so its flow counts stay as they are and its stock does
/// not grow for requests that are not its own.
pub fn take_stand_in(k: usize) -> Option<(usize, usize)> {
    POOL_STACKS[k].pop()
}

/// A request of class `c` that neither the stack nor a carve could serve:
/// demand the maintenance thread stocks for.
#[cold]
pub fn note_miss(c: usize) {
    MISSED[c].fetch_add(1, Relaxed);
    mailbox::wake();
}

/// Accounts `n` blocks of class `c` a scoped thread carved and kept as
/// if taken from the stack (`take`'s flow counts): the demand the stock
/// follows, without the miss that would have the maintenance thread stock
/// a block for a request already served.
pub fn note_carved_taken(c: usize, n: usize) {
    TAKEN[c].fetch_add(n as u32, Relaxed);
    let out = OUT[c].fetch_add(n as u64, Relaxed).wrapping_add(n as u64);
    if out.wrapping_sub(PEAK[c].load(Relaxed)) as i64 > 0 {
        note_peak(c, out);
    }
}

/// Raises class `c`'s peak to `out` (wrapping order), unless another
/// thread raised it further meanwhile.
#[cold]
fn note_peak(c: usize, out: u64) {
    let mut peak = PEAK[c].load(Relaxed);
    while (out.wrapping_sub(peak) as i64) > 0 {
        match PEAK[c].compare_exchange_weak(peak, out, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(p) => peak = p,
        }
    }
}

/// The largest burst of class `c` since the last call (blocks out of the
/// stack at once, above what was out then), and the start of the next.
fn take_burst(c: usize) -> u64 {
    let now = OUT[c].load(Relaxed);
    let peak = PEAK[c].swap(now, Relaxed);
    let base = BASE[c].swap(now, Relaxed);
    (peak.wrapping_sub(base) as i64).max(0) as u64
}

/// Takes one chain of class `c` from the NOFAIL reserve's stacks.
pub fn take_reserve(c: usize) -> Option<(usize, usize)> {
    let got = RESERVE_STACKS[c].pop();
    if got.is_some() {
        count(Event::ReserveHit);
        mailbox::wake();
    }
    got
}

/// Gives a chain of `len` blocks of class `c` back to the pool's stacks.
///
/// # Safety
/// The chain (linked through first words from `first`) is made of free
/// pool blocks of class `c` the caller owns.
#[inline]
pub unsafe fn give(c: usize, first: usize, len: usize) {
    GIVEN[c].fetch_add(len as u32, Relaxed);
    OUT[c].fetch_sub(len as u64, Relaxed);
    // SAFETY: the caller's contract.
    unsafe { POOL_STACKS[c].push(first, len) }
}

/// Gives a chain of `len` new blocks of class `c` to the pool's stacks
/// (carved by a scoped thread, never taken from a stack: not demand
/// flowing back, so the flow counts stay as they are).
///
/// # Safety
/// As `give`.
pub unsafe fn give_new(c: usize, first: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { POOL_STACKS[c].push(first, len) }
}

/// Gives a chain of `len` blocks of class `c` back to the NOFAIL reserve's
/// stacks: the part of a reserve chain a NOFAIL request did not need,
/// which must stay for NOFAIL requests (on the pool's stacks any thread
/// took it).
///
/// # Safety
/// As `give`, for blocks taken from the reserve's stacks.
pub unsafe fn give_reserve(c: usize, first: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { RESERVE_STACKS[c].push(first, len) }
}

// ------------------------------------------------- stocking (maintenance)

/// Blocks per class a stack should hold: what threads took in the last
/// stocking rounds, and never below one chain (two for small classes).
static TARGET: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

/// The least stock of each class, within a third of the headroom a quiet
/// pool keeps (`pool::IDLE_HEADROOM`, or the pool's size if smaller) and
/// at most `FLOOR_BUDGET_MAX`, from the smallest class up while the budget
/// lasts: `SMALL_FLOOR_MAX` or less of blocks of each small class, one
/// block of each large class up to 1 MiB (with the default pool: 8 KiB of
/// each small class and the large ones to about 64 KiB). Floors stay for
/// good, so they are sized by the quiet pool (D65; with the pool's size
/// they were 4 MiB, half of the 8 MiB a quiet process may keep); a class
/// without stock is carved by the thread that asks, one CAS.
fn floors() -> &'static [AtomicU64; COUNT] {
    // Computed once: they depend only on the configuration.
    static FLOORS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !DONE.load(Acquire) {
        for (slot, v) in FLOORS.iter().zip(compute_floors()) {
            slot.store(v, Relaxed);
        }
        DONE.store(true, Release);
    }
    &FLOORS
}

fn compute_floors() -> [u64; COUNT] {
    // Floors stay stocked for the life of the process: sized by the
    // headroom a quiet pool keeps, not the pool's size (D65).
    let basis = pool::IDLE_HEADROOM.min(pool::high_watermark()) as u64;
    let mut budget = (basis / 3).min(FLOOR_BUDGET_MAX);
    let small_floor = (basis / 256).clamp(8 << 10, SMALL_FLOOR_MAX);
    let mut out = [0u64; COUNT];
    // Every class by size, the aligned ones among the plain ones.
    let mut by_size = [0usize; COUNT];
    for (i, slot) in by_size.iter_mut().enumerate() {
        *slot = i;
    }
    by_size.sort_unstable_by_key(|&c| (sizeclass::size_of(c), c));
    for c in by_size {
        let size = sizeclass::size_of(c) as u64;
        let blocks = (small_floor / size).max(1);
        if size > FLOOR_MAX_SIZE || blocks * size > budget {
            break;
        }
        budget -= blocks * size;
        out[c] = blocks;
    }
    out
}

/// Bytes of each small class kept at least: a 256th of the pool, from
/// 8 KiB to this (with the default 32 MiB pool: 32 KiB, about 1 MiB over
/// all small classes). A thread can take that much of one class in tens of
/// microseconds, faster than any restock; deeper stock comes from demand.
const SMALL_FLOOR_MAX: u64 = 32 << 10;

/// At most this much in floors: scoped threads carve what is not stocked,
/// and a third of the default pool (10 MiB), restocked as a burst took
/// it, left a first burst of 10 MiB racing the refill (948 of 10,000
/// refused once in `make test`).
const FLOOR_BUDGET_MAX: u64 = 4 << 20;

/// No class above this size gets a floor.
const FLOOR_MAX_SIZE: u64 = 1 << 20;

/// Below this many blocks a take asks for a restock.
#[inline]
fn low_mark(c: usize) -> u64 {
    TARGET[c].load(Relaxed) / 2
}

/// Reserve stock per class: one chain of the small classes, one block of
/// the large ones up to 256 KiB (the reserve is for survival, not speed).
fn reserve_target(c: usize) -> u64 {
    if sizeclass::size_of(c) <= sizeclass::SMALL_MAX {
        sizeclass::chain_len(c) as u64
    } else if sizeclass::size_of(c) <= 256 << 10 {
        1
    } else {
        0
    }
}

/// The maintenance thread's explicit jemalloc cache for stocking the pool's
/// stacks (id + 1, 0 until made): it fills from the arena's bins in
/// batches and takes back what `trim` frees, where `TCACHE_NONE` took the
/// bin's lock for every block. Only `restock` uses it, and only the
/// maintenance thread calls that (an explicit cache may not be shared).
static STOCK_TCACHE: AtomicU32 = AtomicU32::new(0);

/// A forked child's maintenance thread makes its own stocking cache: the
/// parent's may have been in use by the parent's maintenance thread when
/// the fork happened (jemalloc does not lock explicit caches across fork).
/// The old one is left as it is.
pub fn after_fork_in_child() {
    STOCK_TCACHE.store(0, Relaxed);
}

/// Gives what the stocking cache holds back to the pool arena (the
/// maintenance thread, when the pool has been quiet: `pool::follow_use`):
/// blocks `trim` freed through it, and the rest of its batches, would
/// otherwise stay resident on no stack, where no gauge counts them.
pub fn flush_stock_cache() {
    let id = STOCK_TCACHE.load(Relaxed);
    if id != 0 {
        let _ = crate::base::ctl::write(c"tcache.flush", id - 1);
    }
}

fn stock_cache_flags() -> i32 {
    let mut id = STOCK_TCACHE.load(Relaxed);
    if id == 0 {
        match crate::base::ctl::read::<u32>(c"tcache.create") {
            Some(t) => {
                id = t + 1;
                STOCK_TCACHE.store(id, Relaxed);
            }
            None => return jem::MALLOCX_TCACHE_NONE,
        }
    }
    jem::MALLOCX_TCACHE(id as usize - 1)
}

/// The `mallocx` flags the maintenance thread stocks class `c` with.
/// Large plain classes are asked page-aligned: jemalloc otherwise offsets
/// a large block by a random multiple of 64 bytes within its first page
/// (cache-index randomization), and `sizeclass::serves` relies on a large
/// class being aligned to every power of two dividing its size up to a
/// page.
fn stock_flags(arena: u32, c: usize, cache: i32) -> i32 {
    let align = match sizeclass::alignment_of(c) {
        0 if sizeclass::size_of(c) > sizeclass::SMALL_MAX => sizeclass::PAGE,
        a => a,
    };
    let mut f = jem::MALLOCX_ARENA(arena as usize) | cache;
    if align != 0 {
        f |= jem::MALLOCX_ALIGN(align);
    }
    f
}

/// Makes one chain of up to `len` blocks of class `c` through `arena`,
/// recording each in the page-class table; first block and length, or
/// None when the arena could not serve even one.
fn make_chain(arena: u32, c: usize, len: usize, cache: i32) -> Option<(usize, usize)> {
    let flags = stock_flags(arena, c, cache);
    let size = sizeclass::size_of(c);
    let (mut first, mut n) = (0usize, 0usize);
    while n < len {
        // SAFETY: an allocation from a valid arena index, outside scopes.
        let p = unsafe { jem::mallocx(size, flags) } as usize;
        if p == 0 {
            break;
        }
        // SAFETY: a block the pool arena just served.
        unsafe { pool::note_class(p as *mut c_void, c) };
        // SAFETY: our own new block, at least 16 bytes.
        unsafe { set_next(p, first) };
        first = p;
        n += 1;
    }
    (n > 0).then_some((first, n))
}

/// How often targets are recomputed from the demand of the last window
/// (and decay an eighth towards it).
const WINDOW_NS: u64 = 100_000_000;
static WINDOW_START_NS: AtomicU64 = AtomicU64::new(0);
/// Net blocks taken per class in the current window.
static WINDOW_NET: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
/// The largest burst plus misses per class in the current window.
static WINDOW_BURST: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

/// Tops up every class's stacks to their targets and gives far-surplus
/// stock back (the maintenance thread, each round). A target is the most
/// of: the class's floor; the largest burst (blocks out at once, plus the
/// requests refused) of the last 100 ms window; twice the net outflow
/// (blocks taken minus blocks given back) of the last 100 ms window (the maintenance thread polls
/// every 2 ms or less while scopes are in use, so this covers a burst many
/// rounds long); twice the net outflow since the last round plus a chain
/// for each request (up to 16) that found the stack empty; and the last
/// target, decaying by an eighth a window. No class's target exceeds the
/// pool's ready size (`MEMSCOPE_NORECLAIM_POOL`) or four chains, whichever
/// is more: demand beyond that waits for blocks to come back. Returns true
/// if it did any work.
pub fn restock() -> bool {
    if !pool::is_ready() {
        return false;
    }
    let now = crate::base::log::coarse_nanos();
    let new_window = now.wrapping_sub(WINDOW_START_NS.load(Relaxed)) >= WINDOW_NS;
    if new_window {
        WINDOW_START_NS.store(now, Relaxed);
    }
    // Demand on any class this round: every cold block comes back (below);
    // two seconds without any, and carved blocks beyond their targets cool.
    let demand = (0..COUNT).any(|c| TAKEN[c].load(Relaxed) != 0 || MISSED[c].load(Relaxed) != 0);
    if demand {
        LAST_DEMAND_NS.store(now, Relaxed);
    }
    let quiet = now.wrapping_sub(LAST_DEMAND_NS.load(Relaxed)) >= COOL_AFTER_NS;
    let mut worked = false;
    // The classes asked for and found empty first: their cold blocks are
    // refusals or new carves until they are back.
    for (c, missed) in MISSED.iter().enumerate() {
        if missed.load(Relaxed) != 0 {
            worked |= warm(c, u64::MAX);
        }
    }
    let floors = floors();
    let ready = pool::high_watermark() as u64;
    let cache = stock_cache_flags();
    for c in 0..COUNT {
        let chain = sizeclass::chain_len(c) as u64;
        let taken = TAKEN[c].swap(0, Relaxed) as u64;
        let given = GIVEN[c].swap(0, Relaxed) as u64;
        let net = taken.saturating_sub(given);
        let misses = MISSED[c].swap(0, Relaxed) as u64;
        let missed = misses.min(16) * chain;
        let window = WINDOW_NET[c].fetch_add(net, Relaxed) + net;
        // A burst that was refused part of the way asked for its misses too
        // (each a chain at most; the target's cap bounds the sum).
        let burst = take_burst(c) + misses.min(1 << 16) * chain;
        let window_burst = WINDOW_BURST[c].fetch_max(burst, Relaxed).max(burst);
        let old = TARGET[c].load(Relaxed);
        let mut target = old.max(2 * net + missed).max(burst);
        if new_window {
            WINDOW_NET[c].store(0, Relaxed);
            WINDOW_BURST[c].store(0, Relaxed);
            // An eighth, rounded up: rounded down, a target of 7 or less
            // never decayed, and kept that many blocks of its class (carved
            // large ones too: megabytes) for the life of the process.
            target = (old - old.div_ceil(8)).max(2 * window).max(window_burst);
        }
        // A quarter of the pool per class: beyond that a burst is carved.
        let cap = (ready / 4 / sizeclass::size_of(c) as u64).max(4 * chain);
        let target = target
            .min(cap)
            .max(floors[c].load(Relaxed))
            .max(PREPARED[c].load(Relaxed));
        TARGET[c].store(target, Relaxed);
        // Carved blocks the depot dropped come back first, to the class's
        // whole target (they are the class's own memory already); all of
        // them, of every class, as soon as the pool is in use again: each
        // block still cold when its class is asked for is a refusal or a
        // new carve (cooling as targets decayed, with classes warmed only
        // when missed, refused thousands of requests after an idle spell).
        worked |= warm(c, if demand { u64::MAX } else { target });
        let wanted = target;
        // Beyond its floor (and what `prepare` asked for), a class is
        // stocked only from the headroom above the refill mark (the rest
        // stays for scoped threads to carve from: a forecast that takes it
        // all leaves the classes it did not foresee nothing; 268 MiB stood
        // ready in the depot while an 8-thread mix was refused thousands
        // of requests), so stocking alone never makes the pool grow; and
        // only small plain classes are: a large or aligned block is carved
        // with one CAS when asked for, while stocking them through jemalloc
        // churned (a class made 38 MiB and gave 23 back to the arena) and
        // left its memory in jemalloc's extents, out of carving's reach.
        let stock_more = pool::may_stock() && !sizeclass::INFO[c].large && c < sizeclass::PLAIN;
        let target = if stock_more {
            target
        } else {
            target.min(floors[c].load(Relaxed).max(PREPARED[c].load(Relaxed)))
        };
        // The floor without the stocking cache: what it keeps back from a
        // batch is resident and on no stack (D65).
        let floor = floors[c].load(Relaxed).max(PREPARED[c].load(Relaxed));
        let (floor_filled, floor_short) = fill(
            &POOL_STACKS[c],
            pool::arena(),
            c,
            target.min(floor),
            jem::MALLOCX_TCACHE_NONE,
        );
        let (filled, short) = if floor_short {
            (false, true)
        } else {
            fill(&POOL_STACKS[c], pool::arena(), c, target, cache)
        };
        let filled = filled || floor_filled;
        worked |= filled;
        if short {
            // The pool could not stock this class: ask threads to give
            // back what their lists hold as they leave NORECLAIM.
            RECALL.fetch_add(1, Relaxed);
        }
        worked |= trim(&POOL_STACKS[c], c, wanted.max(target), cache, quiet);
        if let Some(r) = pool::reserve_arena() {
            worked |= fill(
                &RESERVE_STACKS[c],
                r,
                c,
                reserve_target(c),
                jem::MALLOCX_TCACHE_NONE,
            )
            .0;
        }
        worked |= taken > 0;
    }
    worked
}

/// Fills every class to its floor (a thread's first NORECLAIM push, so
/// that its scope finds stock whether or not the maintenance thread has
/// run yet). Cheap once done: one load per class.
pub fn stock_floors() {
    if !pool::is_ready() {
        return;
    }
    let floors = floors();
    for c in 0..COUNT {
        let floor = floors[c].load(Relaxed);
        TARGET[c].fetch_max(floor, Relaxed);
        fill(&POOL_STACKS[c], pool::arena(), c, floor, jem::MALLOCX_TCACHE_NONE);
        if let Some(r) = pool::reserve_arena() {
            fill(
                &RESERVE_STACKS[c],
                r,
                c,
                reserve_target(c),
                jem::MALLOCX_TCACHE_NONE,
            );
        }
    }
}

/// Blocks per class that `memscope_prepare` asked to keep ready: a floor
/// of the class's target from then on.
static PREPARED: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

/// Blocks of class `c` ready on the pool's stacks.
pub fn ready_blocks(c: usize) -> u64 {
    POOL_STACKS[c].blocks.load(Relaxed)
}

/// Keeps at least `count` blocks of class `c` ready from now on (a floor
/// of its target: `memscope_prepare`, once the blocks are there).
pub fn keep_prepared(c: usize, count: u64) {
    PREPARED[c].fetch_max(count, Relaxed);
    TARGET[c].fetch_max(count, Relaxed);
}

/// When the pool has had no demand for this long, carved blocks beyond
/// their classes' targets cool (`trim`).
const COOL_AFTER_NS: u64 = 2_000_000_000;
/// When the maintenance thread last saw demand on any class.
static LAST_DEMAND_NS: AtomicU64 = AtomicU64::new(0);

/// Gives chains back when a stack holds more than four times its target
/// and a chain (more than its target once the pool is `quiet`), up to 16
/// a round, so memory one class no longer needs can serve others or stop
/// being resident: jemalloc's blocks go back to the pool arena (which
/// merges and decommits them at once: decay 0, D65); blocks memscope
/// carved itself are not jemalloc's to take: once the pool is `quiet`,
/// they go to the class's cold stack with their pages past the first
/// dropped (`cool`), else back on the stack.
fn trim(stack: &Stack, c: usize, target: u64, cache: i32, quiet: bool) -> bool {
    // Busy: slack against churn. Quiet: the target itself.
    let keep = if target == 0 || quiet {
        target
    } else {
        4 * target + sizeclass::chain_len(c) as u64
    };
    let (mut worked, mut kept, mut kept_len) = (false, 0usize, 0usize);
    for _ in 0..16 {
        if stack.blocks.load(Relaxed) + kept_len as u64 <= keep {
            break;
        }
        let Some((first, n)) = stack.pop() else {
            break;
        };
        worked |= give_back(c, first, n, cache, quiet, &mut kept, &mut kept_len);
    }
    if kept_len > 0 {
        // Carved blocks that stay, put back once at the end (pushed back
        // at once, they were the next chain popped, and hid the rest).
        // SAFETY: carved free blocks of class `c`, linked, ours.
        unsafe { stack.push(kept, kept_len) };
    }
    worked
}

/// One chain taken off the stack for `trim`: jemalloc's blocks freed,
/// carved ones cooled if `quiet` (and any page of theirs can be dropped),
/// else added to the `kept` list. True if any block left the stack.
fn give_back(
    c: usize,
    first: usize,
    n: usize,
    cache: i32,
    quiet: bool,
    kept: &mut usize,
    kept_len: &mut usize,
) -> bool {
    let (mut cold, mut cold_len, mut worked) = (0usize, 0usize, false);
    let mut b = first;
    for _ in 0..n {
        // SAFETY: a chain just taken off the stack: ours, `n` linked blocks,
        // each a live jemalloc allocation or a block carved by memscope.
        unsafe {
            let next = next_of(b);
            if pool::carved_class(b as *const c_void).is_none() {
                jem::dallocx(b as *mut c_void, cache);
                worked = true;
            } else if quiet && cool(c, b) {
                set_next(b, cold);
                cold = b;
                cold_len += 1;
                worked = true;
            } else {
                set_next(b, *kept);
                *kept = b;
                *kept_len += 1;
            }
            b = next;
        }
    }
    if cold_len > 0 {
        // SAFETY: carved free blocks, ours; only the maintenance thread
        // uses cold stacks.
        unsafe { COLD_STACKS[c].push(cold, cold_len) };
    }
    worked
}

/// Carved blocks of each class the depot no longer needs, their pages
/// past the first dropped (the first keeps the links, so a stale read by
/// a pop that lost a race stays on a resident page). Only the maintenance
/// thread pushes and pops them: `trim` cools, `warm` faults them in again
/// and puts them back on the class's stack.
static COLD_STACKS: [Stack; COUNT] = [const { Stack::new() }; COUNT];

/// The pages of a carved block of class `c` that can be dropped: whole
/// pages from the one after its first to its end.
fn droppable(c: usize, b: usize) -> (usize, usize) {
    let page = crate::os::page_size();
    let start = (b + 1).next_multiple_of(page);
    let end = (b + sizeclass::size_of(c)) & !(page - 1);
    (start, end.saturating_sub(start))
}

/// Drops the pages of carved block `b` (class `c`) past its first: false
/// if it has none to drop, or the OS refused.
fn cool(c: usize, b: usize) -> bool {
    let (start, len) = droppable(c, b);
    // SAFETY: a free carved block, ours; its first page stays.
    if len == 0 || unsafe { crate::os::drop_pages(start as *mut c_void, len) }.is_err() {
        return false;
    }
    pool::note_dropped(len);
    true
}

/// Puts cooled blocks of class `c` back on its stack, their pages faulted
/// in first (here, on the maintenance thread, never on a scoped thread),
/// while the stack is below `target`.
fn warm(c: usize, target: u64) -> bool {
    let mut worked = false;
    while POOL_STACKS[c].blocks.load(Relaxed) < target {
        let Some((first, n)) = COLD_STACKS[c].pop() else {
            break;
        };
        let mut b = first;
        for _ in 0..n {
            let (start, len) = droppable(c, b);
            // SAFETY: a cooled block, ours: its dropped pages are still
            // mapped, writable, and nobody else's.
            unsafe {
                crate::os::prefault_write(start as *const u8, len);
                b = next_of(b);
            }
            pool::note_refaulted(len);
        }
        // SAFETY: `n` carved blocks of class `c`, linked, ours.
        unsafe { give_new(c, first, n) };
        worked = true;
    }
    worked
}

/// Pushes chains of class `c` made through `arena` until `stack` holds
/// `target` blocks (the last chain only as long as needed) or the arena
/// fails (the pool is out of committed memory: its own refill follows).
/// Each chain is claimed before it is made, so that two threads filling
/// the same stack (a first push's floors, the maintenance thread) stop at
/// the target together. Returns (did any work, fell short).
fn fill(stack: &Stack, arena: u32, c: usize, target: u64, cache: i32) -> (bool, bool) {
    let chain = sizeclass::chain_len(c) as u64;
    let mut worked = false;
    loop {
        let have = stack.blocks.load(Acquire) + stack.filling.load(Acquire);
        if have >= target {
            return (worked, false);
        }
        let want = (target - have).min(chain);
        if stack
            .filling
            .fetch_add(want, AcqRel)
            .saturating_add(stack.blocks.load(Acquire))
            >= target
        {
            // Another thread's claim covers it.
            stack.filling.fetch_sub(want, Release);
            return (worked, false);
        }
        let made = make_chain(arena, c, want as usize, cache);
        if let Some((first, n)) = made {
            // SAFETY: a chain of new blocks of class `c`, ours.
            unsafe { stack.push(first, n) };
            worked = true;
        }
        stack.filling.fetch_sub(want, Release);
        if made.is_none() {
            mailbox::wake();
            return (worked, true);
        }
    }
}

/// Bumped when the pool falls short of stocking a class: threads compare
/// it with the value they last saw as they leave NORECLAIM, and give their
/// lists back when it moved (`magazine::on_leaving_noreclaim`).
static RECALL: AtomicU32 = AtomicU32::new(0);

/// The current recall count (see `RECALL`).
#[inline(always)]
pub fn recall_epoch() -> u32 {
    RECALL.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(16))]
    #[allow(dead_code)] // only its size and address matter
    struct Block([usize; 2]);

    #[test]
    fn chains_come_back_whole_and_last_in_first_out() {
        let s = Stack::new();
        let mut blocks: Vec<Block> = (0..6).map(|_| Block([0; 2])).collect();
        let addr: Vec<usize> = blocks.iter_mut().map(|b| b as *mut Block as usize).collect();
        // SAFETY: test blocks we own, 16 bytes each, linked by hand.
        unsafe {
            set_next(addr[0], addr[1]);
            set_next(addr[1], 0);
            s.push(addr[0], 2);
            set_next(addr[2], 0);
            s.push(addr[2], 1);
        }
        assert_eq!(s.blocks.load(Relaxed), 3);
        assert_eq!(s.pop(), Some((addr[2], 1)));
        assert_eq!(s.pop(), Some((addr[0], 2)));
        // SAFETY: as above.
        assert_eq!(unsafe { next_of(addr[0]) }, addr[1]);
        assert_eq!(s.pop(), None);
        assert_eq!(s.blocks.load(Relaxed), 0);
    }
}
