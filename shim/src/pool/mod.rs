//! The NORECLAIM pool: memory reserved and pre-faulted ahead of time, served
//! through a dedicated jemalloc arena whose extent hooks never call the OS.
//!
//! One virtual region of `MEMSCOPE_NORECLAIM_MAX` (4 GiB by default) is
//! reserved when the library loads (`PROT_NONE`: address space only) and
//! committed from the bottom with `MAP_POPULATE`, a few MiB at a time, by
//! the process's first scope and then by the maintenance thread. Only the
//! maintenance thread (and the first scope) allocates from the pool's
//! arenas, to stock the `depot`: so jemalloc's radix-tree leaves for new
//! ranges are created and touched there too, never on a scoped thread.
//! The pool grows to the maximum with no syscall and no page fault on a
//! scoped thread, and "is this a pool block?" stays one compare.
//! The arena's alloc hook only bumps a pointer through committed memory;
//! its dalloc and purge hooks opt out. The pool arena's free extents are
//! decommitted (`MADV_DONTNEED`: still mapped, read as zeros) when they
//! are freed, which is on the maintenance thread, and pre-faulted again by
//! the commit hook when stocking reuses them (D65): memory the depot no
//! longer needs stops being resident. The reserve arena's stay resident.
//!
//! Rule: the hooks may run on scoped threads (the reserve arena's alloc
//! hook): atomics only there; the pool arena's decommit and commit hooks
//! refuse on a thread inside NORECLAIM (never one in practice: scoped
//! threads do not call jemalloc for pool blocks).
//!
//! Tier 3. Owns the pool region, its commit and growth, the arena hooks,
//! the page-class table, the NOFAIL reserve and the carve cursor. May
//! call: `stats`, `base`, `os`.

use core::ffi::{c_uint, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering::*};

use tikv_jemalloc_sys as jem;

use crate::base::config::CONFIG;
use crate::base::counters::{count, Event};
use crate::base::{ctl, log, mailbox, sizeclass};
use crate::os;

const NONE: u8 = 0;
const CREATING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// Commit granularity (a huge page, so THP can back the pool).
pub const CHUNK: usize = 2 << 20;
/// The first metadata block jemalloc carves for an arena through its hooks.
const ARENA_METADATA: usize = 2 << 20;
/// The region is aligned to this (or to its size, if smaller): one jemalloc
/// radix-tree leaf covers 1 GiB on x86_64.
const REGION_ALIGN: usize = 1 << 30;

/// The pool's state. Public (fields private) only so that the exported
/// `free`, written in assembly (`exports::fast`), can test a pointer
/// against `base` and `reserved` by symbol.
pub struct Pool {
    state: AtomicU8,
    arena: AtomicU32,
    /// The NOFAIL reserve's arena (same region and hooks), or u32::MAX.
    reserve_arena: AtomicU32,
    /// Committed bytes set aside for the reserve that it has not carved
    /// yet: the pool arena may not carve into them.
    reserve_left: AtomicUsize,
    base: AtomicUsize,
    /// Bytes reserved at `base`.
    reserved: AtomicUsize,
    /// Bytes from `base` that are mapped, populated (and maybe locked).
    committed: AtomicUsize,
    /// Bytes from `base` handed to jemalloc by the alloc hook.
    carved: AtomicUsize,
}

pub static POOL: Pool = Pool {
    state: AtomicU8::new(NONE),
    arena: AtomicU32::new(0),
    reserve_arena: AtomicU32::new(u32::MAX),
    reserve_left: AtomicUsize::new(0),
    base: AtomicUsize::new(0),
    reserved: AtomicUsize::new(0),
    committed: AtomicUsize::new(0),
    carved: AtomicUsize::new(0),
};

/// What the pool holds, for counters and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub reserved: usize,
    pub committed: usize,
}

pub fn usage() -> Usage {
    Usage {
        reserved: POOL.reserved.load(Relaxed),
        committed: POOL.committed.load(Relaxed),
    }
}

/// The pool's memory for the gauges: address space reserved, committed,
/// carved into blocks, and reserve memory committed but not carved yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    pub reserved: usize,
    pub committed: usize,
    pub carved: usize,
    pub reserve_uncarved: usize,
}

pub fn gauges() -> Gauges {
    Gauges {
        reserved: POOL.reserved.load(Relaxed),
        committed: POOL.committed.load(Relaxed),
        carved: POOL.carved.load(Relaxed),
        reserve_uncarved: POOL.reserve_left.load(Relaxed),
    }
}

pub fn is_ready() -> bool {
    POOL.state.load(Acquire) == READY
}

/// The page-class table's granule: jemalloc's page. A small block's slab
/// holds blocks of one size class only, so every live small block that
/// starts on a page has the same class.
const TABLE_PAGE_SHIFT: u32 = 12;

/// Bytes of page-class table for a region of `reserved` bytes (whole pages).
fn table_bytes(reserved: usize) -> usize {
    ((reserved >> TABLE_PAGE_SHIFT) + 4095) & !4095
}

/// The page-class table: its own reservation, one byte per page of the
/// region, committed (populated) along with the part of the region it
/// describes, so a 1 TiB maximum costs 256 MiB of address space, not of
/// memory.
static TABLE: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the table committed so far.
static TABLE_COMMITTED: AtomicUsize = AtomicUsize::new(0);

/// The table entry for the page `p` starts on (`p` inside the region).
#[inline(always)]
fn table_entry(p: usize) -> &'static AtomicU8 {
    let base = POOL.base.load(Relaxed);
    let table = TABLE.load(Relaxed);
    // SAFETY: the entry lies in the committed part of the table: `p` is in
    // committed pool memory, whose table pages are committed first (`grow`).
    unsafe { &*((table + ((p - base) >> TABLE_PAGE_SHIFT)) as *const AtomicU8) }
}

/// Commits the table pages describing the region up to `committed` bytes.
fn commit_table(committed: usize) -> bool {
    let want = ((committed >> TABLE_PAGE_SHIFT) + 4095) & !4095;
    let have = TABLE_COMMITTED.load(Relaxed);
    if want <= have {
        return true;
    }
    let table = TABLE.load(Relaxed);
    // SAFETY: inside our own PROT_NONE reservation for the table.
    if let Err(e) = unsafe { os::commit_populated((table + have) as *mut c_void, want - have) } {
        log::warn(format_args!(
            "NORECLAIM pool: could not commit {} bytes of its page table (errno {e})",
            want - have
        ));
        return false;
    }
    TABLE_COMMITTED.store(want, Relaxed);
    true
}

/// Records the front-end class (`sizeclass`) of `p`, a pool block being
/// handed out, in the page-class table: one byte per page of the region
/// (at its base, carved before any arena), class + 1, 0 for a block of no
/// class. Every path that hands out a pool block records it, so the entry
/// for the page a live block starts on is that block's: the slab it lives
/// on cannot be reused for another class while it is allocated. A scoped
/// thread freeing a pool block reads its class here (one load) instead of
/// asking jemalloc.
///
/// # Safety
/// `p` is NULL or a block a pool arena just served.
#[inline]
pub unsafe fn note_class(p: *mut c_void, class: usize) {
    if contains(p) {
        table_entry(p as usize).store(class as u8 + 1, Relaxed);
    }
}

/// `note_class` for a block served through jemalloc outside the front end
/// (the NOFAIL reserve outside NORECLAIM): its class if its usable size is
/// exactly one, else "none" (a scoped thread then defers its free).
///
/// # Safety
/// As `note_class`.
pub unsafe fn note_request(p: *mut c_void) {
    if !contains(p) {
        return;
    }
    // SAFETY: a live block (our contract).
    let usable = unsafe { jem::sallocx(p, 0) };
    let entry = sizeclass::exact(usable).map_or(0, |c| c as u8 + 1);
    table_entry(p as usize).store(entry, Relaxed);
}

/// The class recorded for `p`, a live block inside the pool region.
#[inline(always)]
pub fn class_of(p: *const c_void) -> Option<usize> {
    let e = table_entry(p as usize).load(Relaxed) & !CARVED_BY_MEMSCOPE;
    (e != 0).then(|| e as usize - 1)
}

/// Set in the table entries of every page of a span a scoped thread carved
/// itself (`carve`): memory jemalloc never saw, whose blocks only memscope
/// may free, resize or measure. (Classes fit in the low 7 bits.)
pub const CARVED_BY_MEMSCOPE: u8 = 0x80;
const _: () = assert!(sizeclass::COUNT < CARVED_BY_MEMSCOPE as usize);

/// The class of `p` if it is a block memscope carved itself (any pointer
/// may be asked: None outside the pool, and for jemalloc's pool blocks).
#[inline]
pub fn carved_class(p: *const c_void) -> Option<usize> {
    if !contains(p) {
        return None;
    }
    let e = table_entry(p as usize).load(Relaxed);
    (e & CARVED_BY_MEMSCOPE != 0).then(|| (e & !CARVED_BY_MEMSCOPE) as usize - 1)
}

/// Records a span of `len` bytes at `start` (both page-aligned, inside
/// claimed memory) as carved by memscope for class `class`: every page, as
/// a block of the class may start on any of them.
pub fn mark_carved(start: usize, len: usize, class: usize) {
    let entry = CARVED_BY_MEMSCOPE | (class as u8 + 1);
    let mut page = start;
    while page < start + len {
        table_entry(page).store(entry, Relaxed);
        page += 1 << TABLE_PAGE_SHIFT;
    }
}

/// The pool arena's index (valid once `is_ready`).
pub fn arena() -> u32 {
    POOL.arena.load(Relaxed)
}

/// The NOFAIL reserve's arena, if it has one.
pub fn reserve_arena() -> Option<u32> {
    let a = POOL.reserve_arena.load(Relaxed);
    (is_ready() && a != u32::MAX).then_some(a)
}

/// Where `base` and `reserved` are in `POOL`, for the assembly `free`.
pub const BASE_OFFSET: usize = core::mem::offset_of!(Pool, base);
pub const RESERVED_OFFSET: usize = core::mem::offset_of!(Pool, reserved);

/// True if `p` points into the pool region (a block a pool arena served).
#[inline]
pub fn contains(p: *const c_void) -> bool {
    let base = POOL.base.load(Relaxed);
    (p as usize).wrapping_sub(base) < POOL.reserved.load(Relaxed)
}

/// The pool's size: committed headroom kept above what is carved.
pub fn high_watermark() -> usize {
    (CONFIG.noreclaim_pool.load(Relaxed) as usize).max(CHUNK)
}

/// Below this much uncarved committed memory the pool is refilled: half
/// its size, or twice what scoped threads carved themselves (demand the
/// stock had not foreseen) in the busiest recent 100 ms window, whichever
/// is more, so that a burst that carves faster than that per refill finds
/// the next chunks committed. (A quarter, as before carving, left an
/// 8-thread cold start refused up to 400 requests of a million.)
fn low_watermark() -> usize {
    (headroom_target() / 2).max(2 * CARVE_RATE.load(Relaxed))
}

/// True while the maintenance thread may stock the depot beyond the
/// classes' floors (small classes only, see `depot::restock`): the
/// uncarved headroom is a quarter of the pool's size above the refill
/// mark. Below that it is kept for scoped threads to carve from, and
/// stocking never drives the headroom into a refill by itself: the pool
/// grows for what threads carve, not for a forecast.
pub fn may_stock() -> bool {
    headroom() > low_watermark() + headroom_target() / 4
}

/// What a refill tops the headroom up to: the pool's size, or four times
/// the recent carve rate (see `low_watermark`).
fn refill_target() -> usize {
    headroom_target().max(4 * CARVE_RATE.load(Relaxed))
}

/// The headroom the pool keeps now: `MEMSCOPE_NORECLAIM_POOL` at first (a
/// first burst finds it committed), halved for every two quiet seconds
/// down to `IDLE_HEADROOM`, doubled (up to the option) by every refill
/// that demand starts (`follow_use`, `refill_step`). 0: not set yet.
static TARGET: AtomicUsize = AtomicUsize::new(0);

/// The least headroom a quiet pool keeps committed.
pub const IDLE_HEADROOM: usize = CHUNK;

/// The headroom the pool keeps now (see `TARGET`).
pub fn headroom_target() -> usize {
    match TARGET.load(Relaxed) {
        0 => high_watermark(),
        t => t.clamp(IDLE_HEADROOM.min(high_watermark()), high_watermark()),
    }
}

/// Bytes the reserve's arena carved (its blocks, in use or on its stacks):
/// the reserve's share of `carved`, for the NORECLAIM pool's own size.
static RESERVE_ARENA_CARVED: AtomicUsize = AtomicUsize::new(0);

/// The NORECLAIM pool's resident memory: committed memory less the
/// reserve's share (uncarved budget, and what its arena carved), the
/// arenas' first metadata blocks and the pool arena's decommitted free
/// extents. What `follow_use` keeps near what
/// scoped threads use (a gauge).
pub fn noreclaim_bytes() -> usize {
    let arenas = if POOL.reserve_arena.load(Relaxed) == u32::MAX {
        1
    } else {
        2
    };
    POOL.committed
        .load(Relaxed)
        .saturating_sub(POOL.reserve_left.load(Relaxed))
        .saturating_sub(RESERVE_ARENA_CARVED.load(Relaxed))
        .saturating_sub(arenas * ARENA_METADATA)
        .saturating_sub(DECOMMITTED.load(Relaxed))
}

/// After a claim moved the carve cursor from `from` to `to` (a
/// sequentially consistent compare-and-swap): true if the memory is still
/// committed. A shrink (`shrink_to`) that lowered the commit mark below
/// `to` meanwhile may unmap it: the claim is then given back (the cursor
/// moved back, if nobody claimed after it; else the bytes are skipped and
/// committed again by the next growth) and fails, as one that found the
/// pool short.
#[inline]
fn still_committed(from: usize, to: usize) -> bool {
    if to <= POOL.committed.load(SeqCst) {
        return true;
    }
    let _ = POOL.carved.compare_exchange(to, from, SeqCst, Relaxed);
    mailbox::wake();
    false
}

/// Once a second (maintenance thread): the headroom follows what scoped
/// threads use. After two seconds in which nothing was carved, no refill
/// ran and the reserve was owed nothing, the target halves (down to
/// `IDLE_HEADROOM`) and committed memory above what is carved, the
/// reserve's budget and the target is given back to the OS. True if the
/// pool was quiet (the target halved): the caller flushes the stocking
/// cache too.
pub fn follow_use() -> bool {
    static LAST_CARVED: AtomicUsize = AtomicUsize::new(0);
    static QUIET: AtomicUsize = AtomicUsize::new(0);
    if !is_ready() {
        return false;
    }
    let carved = POOL.carved.load(Relaxed);
    if LAST_CARVED.swap(carved, Relaxed) != carved
        || REFILLING.load(Relaxed) != 0
        || RESERVE_OWED.load(Relaxed) != 0
    {
        QUIET.store(0, Relaxed);
        return false;
    }
    if QUIET.fetch_add(1, Relaxed) + 1 < 2 {
        return false;
    }
    QUIET.store(0, Relaxed);
    let target = (headroom_target() / 2).max(IDLE_HEADROOM);
    TARGET.store(target, Relaxed);
    let keep = carved
        .saturating_add(POOL.reserve_left.load(Relaxed))
        .saturating_add(target)
        .next_multiple_of(os::page_size());
    shrink_to(keep);
    true
}

/// Lowers the commit mark to `keep` and unmaps what was above it, unless
/// a claim crossed `keep` meanwhile. The protocol with the claims (all
/// sequentially consistent): this stores the new mark, then reads the
/// cursor; a claim moves the cursor, then reads the mark
/// (`still_committed`). Either this sees the claim (and keeps everything)
/// or the claim sees the new mark (and gives its bytes back unused).
fn shrink_to(keep: usize) {
    while GROWING
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        os::yield_now();
    }
    let old = POOL.committed.load(Relaxed);
    if keep + CHUNK <= old {
        POOL.committed.store(keep, SeqCst);
        if POOL.carved.load(SeqCst) > keep {
            POOL.committed.store(old, SeqCst);
        } else {
            let base = POOL.base.load(Relaxed);
            // SAFETY: [base+keep, base+old) is the pool's own committed
            // range, which no claim holds (just checked) or can take (the
            // mark is below it); it becomes reserved address space again.
            if unsafe { os::decommit((base + keep) as *mut c_void, old - keep) }.is_ok() {
                count(Event::PoolShrink);
            }
        }
    }
    GROWING.store(false, Release);
}

/// Bytes scoped threads carved themselves in the busiest recent 100 ms
/// window, decaying by a quarter per quiet window; and the
/// cursor and time the current window started at. The maintenance thread
/// updates them (`note_carve_rate`).
static CARVE_RATE: AtomicUsize = AtomicUsize::new(0);
static RATE_WINDOW_CARVED: AtomicUsize = AtomicUsize::new(0);
static RATE_WINDOW_START_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
const RATE_WINDOW_NS: u64 = 100_000_000;

fn note_carve_rate() {
    let now = crate::base::log::coarse_nanos();
    if now.wrapping_sub(RATE_WINDOW_START_NS.load(Relaxed)) < RATE_WINDOW_NS {
        return;
    }
    RATE_WINDOW_START_NS.store(now, Relaxed);
    let carved = SELF_CARVED.load(Relaxed);
    let delta = carved.saturating_sub(RATE_WINDOW_CARVED.swap(carved, Relaxed));
    let old = CARVE_RATE.load(Relaxed);
    CARVE_RATE.store(delta.max(old - old / 4), Relaxed);
}

/// Bytes of the region committed so far.
pub fn committed() -> usize {
    POOL.committed.load(Acquire)
}

/// `headroom` as it was when only `committed` bytes were committed (a
/// lower bound of it then: carving only moves forward).
pub fn headroom_at(committed: usize) -> usize {
    uncarved_of(committed)
}

/// Of the first `bytes` of the region, what no arena or thread has carved
/// and the reserve does not keep.
fn uncarved_of(bytes: usize) -> usize {
    bytes
        .saturating_sub(POOL.carved.load(Relaxed))
        .saturating_sub(POOL.reserve_left.load(Relaxed))
}

/// Committed bytes the pool arena may still carve (the reserve's share
/// excluded).
pub fn headroom() -> usize {
    uncarved_of(POOL.committed.load(Acquire))
}

/// `mallocx` flags for an allocation from the NOFAIL reserve (0: no
/// reserve). No thread cache: reserve blocks go straight back to it.
pub fn reserve_flags() -> i32 {
    let a = POOL.reserve_arena.load(Relaxed);
    if !is_ready() || a == u32::MAX {
        0
    } else {
        jem::MALLOCX_ARENA(a as usize) | jem::MALLOCX_TCACHE_NONE
    }
}

/// Claims `size` bytes aligned to `align` (a power of two) of committed,
/// pre-faulted pool memory no arena has carved, for a scoped thread to
/// carve blocks from itself (`carve`): one compare-and-swap on the carve
/// cursor, the pool arena's own hook's, so neither can hand out the same
/// bytes, and the reserve's share stays fenced off. Returns the claimed
/// start and the cursor it moved from (the bytes in between, padding for
/// the alignment, are the caller's too), or None when the uncarved
/// committed memory is too small: then the maintenance thread is asked
/// to commit more. No syscall, no lock, no page fault.
pub fn claim(size: usize, align: usize) -> Option<(usize, usize)> {
    if !is_ready() {
        return None;
    }
    let fits = |_used: usize, end: usize| {
        let limit = POOL
            .committed
            .load(Acquire)
            .saturating_sub(POOL.reserve_left.load(Relaxed));
        end <= limit
    };
    let Some((start, from)) = move_cursor(size, align, fits) else {
        mailbox::wake();
        return None;
    };
    SELF_CARVED.fetch_add(start + size - from, Relaxed);
    if headroom() < low_watermark() {
        count(Event::PoolLowWatermark);
        mailbox::wake();
    }
    Some((start, from))
}

/// The carve cursor's compare-and-swap loop that `claim` and
/// `claim_reserve` share: `size` bytes aligned to `align` past the cursor,
/// if `fits(bytes used with the padding, end offset)` says so; the claimed
/// start and the cursor it moved from, still committed
/// (`still_committed`).
#[inline(always)]
fn move_cursor(size: usize, align: usize, fits: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
    let base = POOL.base.load(Relaxed);
    let mut carved = POOL.carved.load(Relaxed);
    loop {
        let from = base + carved;
        let start = from.checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        if !fits(end - from, end - base) {
            return None;
        }
        match POOL
            .carved
            .compare_exchange_weak(carved, end - base, SeqCst, Relaxed)
        {
            Ok(_) => return still_committed(carved, end - base).then_some((start, from)),
            Err(now) => carved = now,
        }
    }
}

/// Claims `size` bytes aligned to `align` from the NOFAIL reserve's
/// uncarved share, as `claim` does from the pool's: for a NORECLAIM|NOFAIL
/// request the pool and the reserve's stacks could not serve. The stacks
/// hold a chain of each small class and a block of each large one up to
/// 256 KiB; the rest of the reserve stays uncarved, and without this a
/// request of another size was refused while most of the reserve was there
/// (the reserve "serves any request it has room for"). The bytes leave the
/// reserve for good (they become pool blocks of their class, reused by
/// everyone); the maintenance thread commits as much again for it
/// (`repay_reserve`). No syscall, no lock, no page fault.
pub fn claim_reserve(size: usize, align: usize) -> Option<(usize, usize)> {
    if !is_ready() || POOL.reserve_arena.load(Relaxed) == u32::MAX {
        return None;
    }
    let fits = |used: usize, end: usize| {
        used <= POOL.reserve_left.load(Relaxed) && end <= POOL.committed.load(Acquire)
    };
    let (start, from) = move_cursor(size, align, fits)?;
    let used = start + size - from;
    // After the cursor: meanwhile the pool's limit (committed less this
    // budget) is only stricter. Saturating, as the reserve arena's hook.
    let _ = POOL
        .reserve_left
        .fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(used)));
    RESERVE_OWED.fetch_add(used, Relaxed);
    mailbox::wake();
    Some((start, from))
}

/// Bytes threads took from the reserve's share (`claim_reserve`) that the
/// maintenance thread has not committed back for it yet.
static RESERVE_OWED: AtomicUsize = AtomicUsize::new(0);

/// Commits for the reserve what threads took from it (maintenance
/// thread): the reserve keeps its size. What cannot be committed now
/// (the region's maximum, the OS) stays owed for the next round.
pub fn repay_reserve() {
    let owed = RESERVE_OWED.swap(0, Relaxed);
    if owed == 0 {
        return;
    }
    if grow(owed) {
        POOL.reserve_left.fetch_add(owed, Relaxed);
    } else {
        RESERVE_OWED.fetch_add(owed, Relaxed);
    }
}

/// Bytes scoped threads claimed (`claim`), padding included: part of
/// `carved`, never returned to jemalloc (a gauge, and the carve rate the
/// refill follows).
static SELF_CARVED: AtomicUsize = AtomicUsize::new(0);

pub fn self_carved_bytes() -> usize {
    SELF_CARVED.load(Relaxed)
}

/// Takes `bytes` carved on purpose (`memscope_prepare`) out of the carve
/// rate the refill follows: planned stock, not demand to grow for (the
/// pool grew by four times a prepared amount right after it).
pub fn discount_carved(bytes: usize) {
    RATE_WINDOW_CARVED.fetch_add(bytes, Relaxed);
}

// ---------------------------------------------------------------- hooks

type AllocHook = unsafe extern "C" fn(
    *mut jem::extent_hooks_t,
    *mut c_void,
    usize,
    usize,
    *mut bool,
    *mut bool,
    c_uint,
) -> *mut c_void;

/// Extent hooks that never call the OS: memory comes from `alloc`, and is
/// never given back, decommitted or purged.
const fn hooks_over(alloc: AllocHook) -> jem::extent_hooks_t {
    jem::extent_hooks_t {
        alloc: Some(alloc),
        dalloc: Some(hook_opt_out_dalloc),
        destroy: Some(hook_destroy),
        commit: Some(hook_commit),
        decommit: Some(hook_opt_out_range),
        purge_lazy: Some(hook_opt_out_range),
        purge_forced: Some(hook_opt_out_range),
        split: Some(hook_split),
        merge: Some(hook_merge),
    }
}

static HOOKS: jem::extent_hooks_t = hooks_over(hook_alloc);

/// The pool arena's: as `HOOKS`, but its free extents are decommitted and
/// committed again when reused (D65).
static POOL_HOOKS: jem::extent_hooks_t = jem::extent_hooks_t {
    commit: Some(hook_pool_commit),
    decommit: Some(hook_pool_decommit),
    ..hooks_over(hook_alloc)
};

/// Bytes of the pool's carved memory not resident now: the pool arena's
/// decommitted free extents and the pages of cooled carved blocks
/// (`note_dropped`). `noreclaim_bytes` leaves them out.
static DECOMMITTED: AtomicUsize = AtomicUsize::new(0);

/// Pages of carved blocks the depot dropped (`depot`'s cold stacks): not
/// resident until faulted in again.
pub fn note_dropped(bytes: usize) {
    DECOMMITTED.fetch_add(bytes, Relaxed);
}

/// Dropped pages faulted in again (`note_dropped`).
pub fn note_refaulted(bytes: usize) {
    let _ = DECOMMITTED.fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(bytes)));
}

/// True on a thread inside NORECLAIM, where the pool arena's hooks must
/// make no syscall and take no page fault.
fn in_noreclaim() -> bool {
    crate::base::tls::flags() & crate::base::tls::NORECLAIM != 0
}

/// A free extent of the pool arena stops being resident: its pages are
/// dropped (`MADV_DONTNEED`), the mapping stays (a depot pop that lost a
/// race may still read a stale block there: it reads zeros). jemalloc
/// calls this when the extent is freed (decay 0: at once), which is on
/// the maintenance thread (its trims, its stocking cache's flushes) or a
/// thread outside NORECLAIM.
unsafe extern "C" fn hook_pool_decommit(
    _: *mut jem::extent_hooks_t,
    addr: *mut c_void,
    _: usize,
    offset: usize,
    length: usize,
    _: c_uint,
) -> bool {
    if in_noreclaim() {
        return true;
    }
    // SAFETY: a free extent of the pool arena, jemalloc's to give up.
    if unsafe { os::drop_pages((addr as *mut u8).add(offset).cast(), length) }.is_err() {
        return true;
    }
    DECOMMITTED.fetch_add(length, Relaxed);
    false
}

/// A decommitted extent of the pool arena is reused (stocking, outside
/// scopes): its pages are faulted in again before any block of it is
/// handed out, so a scoped thread never takes the fault.
unsafe extern "C" fn hook_pool_commit(
    _: *mut jem::extent_hooks_t,
    addr: *mut c_void,
    _: usize,
    offset: usize,
    length: usize,
    _: c_uint,
) -> bool {
    if in_noreclaim() {
        // Fail the allocation rather than fault inside NORECLAIM.
        return true;
    }
    // SAFETY: the extent lies in the pool's committed, writable region.
    unsafe { os::prefault_write((addr as *const u8).add(offset), length) };
    let _ = DECOMMITTED.fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(length)));
    false
}

/// Carves `size` bytes aligned to `align` from committed memory, or NULL.
/// The pool arena may not carve into the reserve's share; the reserve
/// arena may carve only its share.
unsafe extern "C" fn hook_alloc(
    _hooks: *mut jem::extent_hooks_t,
    new_addr: *mut c_void,
    size: usize,
    align: usize,
    zero: *mut bool,
    commit: *mut bool,
    arena: c_uint,
) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if !new_addr.is_null() {
            // Growing an extent in place: only the next carve could, and
            // jemalloc copes with a refusal.
            return null_mut();
        }
        let for_reserve = arena == POOL.reserve_arena.load(Relaxed);
        let base = POOL.base.load(Relaxed);
        let mut carved = POOL.carved.load(Relaxed);
        loop {
            let start = (base + carved + align - 1) & !(align - 1);
            let end = start + size;
            let used = end - base - carved;
            let left = POOL.reserve_left.load(Relaxed);
            let committed = POOL.committed.load(Acquire);
            let limit = if for_reserve {
                committed
            } else {
                committed.saturating_sub(left)
            };
            if (for_reserve && used > left) || end > base + limit {
                if !for_reserve {
                    mailbox::wake();
                }
                return null_mut();
            }
            match POOL
                .carved
                .compare_exchange_weak(carved, end - base, SeqCst, Relaxed)
            {
                Ok(_) => {
                    if !still_committed(carved, end - base) {
                        return null_mut();
                    }
                    if for_reserve {
                        RESERVE_ARENA_CARVED.fetch_add(used, Relaxed);
                        // Saturating: jemalloc calls this hook under the
                        // arena's grow lock, so reserve carves do not race
                        // one another, but a wrapped budget would let the
                        // pool arena carve into memory that is not there.
                        let _ = POOL
                            .reserve_left
                            .fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(used)));
                    } else if headroom() < low_watermark() {
                        count(Event::PoolLowWatermark);
                        mailbox::wake();
                    }
                    // Fresh from `MAP_POPULATE`, so zero, but not claimed:
                    // jemalloc then never relies on it.
                    *zero = false;
                    *commit = true;
                    return start as *mut c_void;
                }
                Err(now) => carved = now,
            }
        }
    }
}

/// Opt out: the extent stays mapped and jemalloc retains it for reuse.
unsafe extern "C" fn hook_opt_out_dalloc(
    _: *mut jem::extent_hooks_t,
    _: *mut c_void,
    _: usize,
    _: bool,
    _: c_uint,
) -> bool {
    true
}

/// Called only if the arena were destroyed, which memscope never does.
unsafe extern "C" fn hook_destroy(_: *mut jem::extent_hooks_t, _: *mut c_void, _: usize, _: bool, _: c_uint) {
}

/// Pool memory is always committed: committing succeeds without work.
unsafe extern "C" fn hook_commit(
    _: *mut jem::extent_hooks_t,
    _: *mut c_void,
    _: usize,
    _: usize,
    _: usize,
    _: c_uint,
) -> bool {
    false
}

/// Opt out of decommit and purge: pages stay resident.
unsafe extern "C" fn hook_opt_out_range(
    _: *mut jem::extent_hooks_t,
    _: *mut c_void,
    _: usize,
    _: usize,
    _: usize,
    _: c_uint,
) -> bool {
    true
}

unsafe extern "C" fn hook_split(
    _: *mut jem::extent_hooks_t,
    _: *mut c_void,
    _: usize,
    _: usize,
    _: usize,
    _: bool,
    _: c_uint,
) -> bool {
    false
}

unsafe extern "C" fn hook_merge(
    _: *mut jem::extent_hooks_t,
    _: *mut c_void,
    _: usize,
    _: *mut c_void,
    _: usize,
    _: bool,
    _: c_uint,
) -> bool {
    false
}

// ---------------------------------------------------------------- growth

/// Commits and pre-faults `bytes` more of the region (rounded to chunks).
/// Runs outside every scope: setup, the maintenance thread, or
/// `memscope_prepare` (serialized: each reads and moves the commit mark).
pub fn grow(bytes: usize) -> bool {
    while GROWING
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        os::yield_now();
    }
    let grown = grow_locked(bytes);
    GROWING.store(false, Release);
    grown
}

static GROWING: AtomicBool = AtomicBool::new(false);

/// Bytes the pool could still hand out if it grew to its maximum: the
/// region's size less what is carved and what the reserve keeps.
pub fn room_to_grow() -> usize {
    uncarved_of(POOL.reserved.load(Relaxed))
}

/// Grows the pool until at least `bytes` of committed memory are left
/// uncarved (`memscope_prepare`). False if the region cannot hold that.
pub fn ensure_headroom(bytes: usize) -> bool {
    while headroom() < bytes {
        if !grow(bytes - headroom()) {
            return false;
        }
    }
    true
}

fn grow_locked(bytes: usize) -> bool {
    let bytes = (bytes + CHUNK - 1) & !(CHUNK - 1);
    let base = POOL.base.load(Relaxed);
    let committed = POOL.committed.load(Relaxed);
    let bytes = bytes.min(POOL.reserved.load(Relaxed) - committed);
    if bytes == 0 {
        return false;
    }
    if !commit_table(committed + bytes) {
        return false;
    }
    let at = (base + committed) as *mut c_void;
    // SAFETY: [at, at+bytes) lies inside our own PROT_NONE reservation,
    // which nothing else maps.
    if let Err(e) = unsafe { os::commit_populated(at, bytes) } {
        log::warn(format_args!(
            "NORECLAIM pool: could not commit {bytes} more bytes (errno {e})"
        ));
        return false;
    }
    if CONFIG.pool_mlock.load(Relaxed) {
        if let Err(e) = os::mlock(at, bytes) {
            log::warn(format_args!(
                "MEMSCOPE_POOL_MLOCK: mlock of {bytes} bytes failed (errno {e}); the pool may be swapped out"
            ));
        }
    }
    POOL.committed.store(committed + bytes, Release);
    true
}

/// Most committed by one refill step: populating memory takes a few ms
/// per 8 MiB, and the maintenance thread drains deferred frees between
/// steps.
const REFILL_STEP: usize = 8 << 20;
static REFILLING: AtomicU8 = AtomicU8::new(0);

/// One step of topping the pool's headroom back up to the high watermark
/// once it fell below the low one. Returns true while there is more to do.
pub fn refill_step() -> bool {
    if !is_ready() {
        return false;
    }
    note_carve_rate();
    let room = headroom();
    let high = refill_target();
    if REFILLING.load(Relaxed) == 0 {
        if room >= low_watermark() {
            return false;
        }
        REFILLING.store(1, Relaxed);
        count(Event::PoolRefill);
        // Demand used half the headroom: keep twice as much from now on
        // (up to the option; `follow_use` lowers it again when quiet).
        TARGET.store((2 * headroom_target()).min(high_watermark()), Relaxed);
    }
    let t = crate::stats::event_start();
    if room >= high || !grow((high - room).min(REFILL_STEP)) {
        REFILLING.store(0, Relaxed);
        return false;
    }
    crate::stats::event_done(crate::stats::Timer::PoolRefill, t);
    true
}

/// Address space reserved for the region when the library loaded
/// (`reserve_at_load`), not yet taken by `create`: base and size, or 0.
static LOADED_BASE: AtomicUsize = AtomicUsize::new(0);
static LOADED_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Reserves the region's address space when the library loads, so that a
/// process that runs out of address space (`RLIMIT_AS`) before its first
/// NOFAIL or NORECLAIM scope still gets its pool and reserve then:
/// committing pages inside a reservation of our own does not grow the
/// address space the limit counts. Nothing is committed here (pre-faulting
/// at load cost ~29 ms per exec; this costs a few microseconds), so a
/// process that never enters a scope pays address space, never memory.
/// Under a finite `RLIMIT_AS` only the smallest region that serves is
/// taken, to leave the program as much of its budget as possible, unless
/// `MEMSCOPE_NORECLAIM_MAX` is set; otherwise all of it.
pub fn reserve_at_load() {
    if POOL.state.load(Acquire) != NONE || LOADED_BASE.load(Relaxed) != 0 {
        return;
    }
    let smallest = os::address_space_limited() && !CONFIG.noreclaim_max_explicit.load(Relaxed);
    if let Some((base, size)) = reserve_region(smallest) {
        LOADED_SIZE.store(size, Relaxed);
        LOADED_BASE.store(base, Release);
    }
    if let Some(p) = os::reserve(METADATA_HEADROOM) {
        HEADROOM_BASE.store(p as usize, Release);
    }
}

/// Address space held from load until the pool is created, then given
/// back so that what creating it maps outside the region fits under an
/// exhausted `RLIMIT_AS`: jemalloc's radix-tree leaf for the region (2 MiB,
/// mapped from jemalloc's own base allocator), the base blocks it grows
/// for that, and the maintenance thread's stack. Without it, a process
/// that used up its address space before its first scope got a pool whose
/// extents jemalloc could not register: every 2 MiB the reserve arena
/// carved was leaked by jemalloc's failed split, and the reserve ran dry
/// after 86 of 1,000 NOFAIL requests in about half the runs (those whose
/// region fell in a GiB with no leaf yet). Address space only: nothing is
/// committed.
const METADATA_HEADROOM: usize = 32 << 20;
static HEADROOM_BASE: AtomicUsize = AtomicUsize::new(0);

/// Gives the load-time headroom back (see `METADATA_HEADROOM`).
fn release_metadata_headroom() {
    let p = HEADROOM_BASE.swap(0, Acquire);
    if p != 0 {
        // SAFETY: our own PROT_NONE reservation, never handed out.
        unsafe { os::unmap(p as *mut c_void, METADATA_HEADROOM) };
    }
}

/// The region: the one reserved at load if there is one, else a new one.
fn take_region() -> Option<(usize, usize)> {
    let base = LOADED_BASE.swap(0, Acquire);
    if base != 0 {
        return Some((base, LOADED_SIZE.load(Relaxed)));
    }
    reserve_region(false)
}

/// The least region that serves: the pool's and the reserve's first
/// commits, the arenas' metadata, and as much again to grow into.
fn region_floor() -> usize {
    let need = high_watermark() + CONFIG.reserve.load(Relaxed) as usize + 2 * ARENA_METADATA;
    (need * 2).next_multiple_of(CHUNK)
}

/// Reserves the region, with its page-class table right after it:
/// `MEMSCOPE_NORECLAIM_MAX` bytes aligned to 1 GiB (or to their size,
/// rounded up to a power of two, if less), or, when the address space
/// (`RLIMIT_AS`) will not grant that, the largest half, quarter...
/// that it grants, saying so; with `smallest`, `region_floor()` only.
fn reserve_region(smallest: bool) -> Option<(usize, usize)> {
    let floor = region_floor();
    let max = (CONFIG.noreclaim_max.load(Relaxed) as usize)
        .next_multiple_of(CHUNK)
        .max(floor);
    let mut size = if smallest { floor } else { max };
    loop {
        let align = size.next_power_of_two().min(REGION_ALIGN);
        let table = table_bytes(size);
        let total = size + table;
        if let Some(p) = os::reserve(total + align) {
            let start = p as usize;
            let aligned = (start + align - 1) & !(align - 1);
            // SAFETY: both trims lie inside the reservation just made.
            unsafe {
                if aligned > start {
                    os::unmap(p, aligned - start);
                }
                let end = start + total + align;
                if end > aligned + total {
                    os::unmap((aligned + total) as *mut c_void, end - aligned - total);
                }
            }
            if size < max && !smallest {
                log::warn(format_args!(
                    "MEMSCOPE_NORECLAIM_MAX={max}: could not reserve that much address space; the pool may grow to {size} bytes"
                ));
            }
            TABLE.store(aligned + size, Relaxed);
            TABLE_COMMITTED.store(0, Relaxed);
            return Some((aligned, size));
        }
        if size <= floor {
            return None;
        }
        size = (size / 2).next_multiple_of(CHUNK).max(floor);
    }
}

/// Held by the thread making the pool and by a thread forking: a fork
/// never lands while the pool is half made. The child of such a fork had
/// no thread to finish it, and could inherit whatever lock the maker held
/// at that instant: with only a reset of the state, the child's first
/// scope hung in `dl_iterate_phdr` on the loader's lock, which the maker
/// held while pre-faulting this library (`c-tests/noreclaim/fork_noreclaim.c`, about
/// one run in 15 in CI).
static CREATION: AtomicBool = AtomicBool::new(false);

fn lock_creation() {
    while CREATION
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        os::yield_now();
    }
}

fn unlock_creation() {
    CREATION.store(false, Release);
}

/// Creates the pool and the NOFAIL reserve on the process's first NORECLAIM
/// or NOFAIL push. Other threads arriving meanwhile wait. Returns false if
/// the pool could not be made, or if the caller is a signal handler on the
/// thread making it (its first scope or lock section was interrupted):
/// waiting, or taking the creation lock, would wait for itself, for good;
/// it goes without the pool.
pub fn ensure_process_pool() -> bool {
    let making = &crate::base::tls::bss().making_pool;
    loop {
        match POOL.state.load(Acquire) {
            READY => return true,
            FAILED => return false,
            _ if making.get() != 0 => return false,
            CREATING => os::yield_now(),
            _ => {
                // Before the lock: a handler landing after this line
                // knows not to wait.
                making.set(1);
                core::sync::atomic::compiler_fence(SeqCst);
                lock_creation();
                if POOL.state.load(Acquire) != NONE {
                    unlock_creation();
                    making.set(0);
                    continue;
                }
                POOL.state.store(CREATING, Relaxed);
                crate::base::counters::touch_all();
                crate::stats::segment::prefault_for_scopes();
                prefault_own_image();
                let ok = create();
                POOL.state.store(if ok { READY } else { FAILED }, Release);
                unlock_creation();
                making.set(0);
                if ok {
                    mailbox::start_maintenance();
                }
                return ok;
            }
        }
    }
}

/// `pthread_atfork` prepare: waits for a pool being made and keeps another
/// from starting until the fork is done. Registered after jemalloc's
/// handlers, so it runs before them, while the maker can still take
/// jemalloc's locks.
pub fn before_fork() {
    lock_creation();
}

/// `pthread_atfork` parent and child: the fork is done.
pub fn after_fork() {
    unlock_creation();
}

/// Set by the parent's fork handler: the pool's resident pages, and
/// memscope's own writable image, are copy-on-write now, shared with the
/// child; the first write to each would fault, on a scoped thread too.
static FORKED: AtomicBool = AtomicBool::new(false);

/// The parent's fork handler: the maintenance thread writes the shared
/// pages again (`refault_if_forked`).
pub fn forked_in_parent() {
    if is_ready() {
        FORKED.store(true, Release);
        mailbox::wake();
    }
}

/// The maintenance thread, after a fork in the parent: writes every
/// resident page of the pool's committed range, its page-class table and
/// memscope's writable image once more (each write copies the page the
/// child shares), so that scoped threads write private pages again. Pages
/// not resident (dropped stock) are left alone (`mincore`). Until it is
/// done, a scoped thread's first write to a shared page faults (D65).
pub fn refault_if_forked() -> bool {
    if !FORKED.swap(false, Acquire) {
        return false;
    }
    prefault_own_image();
    let table = TABLE.load(Relaxed);
    if table != 0 {
        // SAFETY: the table's committed, writable part.
        unsafe { os::prefault_write(table as *const u8, TABLE_COMMITTED.load(Relaxed)) };
    }
    let (base, committed) = (POOL.base.load(Relaxed), POOL.committed.load(Acquire));
    let page = os::page_size();
    const STEP: usize = 1 << 20;
    let mut resident = [0u8; STEP / 4096];
    let mut at = 0;
    while at < committed {
        let len = STEP.min(committed - at);
        let pages = len.div_ceil(page).min(resident.len());
        // SAFETY: `resident` has room for `pages` entries; the range lies
        // in the pool's mapping.
        let ok =
            unsafe { libc::mincore((base + at) as *mut c_void, pages * page, resident.as_mut_ptr()) } == 0;
        for (i, r) in resident[..pages].iter().enumerate() {
            if !ok || r & 1 != 0 {
                // SAFETY: a committed, writable page of the pool; the
                // write is an atomic compare-and-swap of its own value.
                unsafe { os::prefault_write((base + at + i * page) as *const u8, 1) };
            }
        }
        at += pages * page;
    }
    true
}

fn create() -> bool {
    release_metadata_headroom();
    let Some((base, size)) = take_region() else {
        log::warn(format_args!(
            "NORECLAIM pool: could not reserve address space; NORECLAIM allocations will fail"
        ));
        return false;
    };
    POOL.base.store(base, Relaxed);
    POOL.reserved.store(size, Relaxed);
    let reserve = (CONFIG.reserve.load(Relaxed) as usize + CHUNK - 1) & !(CHUNK - 1);
    // Each arena's first metadata block (jemalloc's base, 2 MiB, carved
    // through the hooks) comes on top: without it a 4 MiB pool had 2 MiB.
    if !grow(high_watermark() + reserve + 2 * ARENA_METADATA) {
        return false;
    }
    POOL.carved.store(0, Relaxed);
    let Some(arena) = create_arena(&POOL_HOOKS) else {
        log::warn(format_args!(
            "NORECLAIM pool: arenas.create failed; NORECLAIM allocations will fail"
        ));
        return false;
    };
    POOL.arena.store(arena, Relaxed);
    warm_up_arena(arena);
    // The reserve's arena metadata comes from the pool's share; its own
    // share is fenced off once it exists.
    if reserve > 0 {
        match create_arena(&HOOKS) {
            Some(r) => {
                POOL.reserve_arena.store(r, Relaxed);
                POOL.reserve_left.store(reserve, Relaxed);
            }
            None => log::warn(format_args!("NOFAIL reserve: arenas.create failed; no reserve")),
        }
    }
    make_purging_deferrable();
    true
}

/// Creates a manual arena over `hooks`.
///
/// Its decay is what the pool needs: jemalloc merges free dirty extents
/// only when it decays them, so a pool that never decayed would fragment
/// for good. Decay "purges" free extents through hooks that refuse, which
/// moves them, merged, to the arena's retained set: still resident, reused
/// without any OS call (the commit hook just says yes).
///
/// The decay time is 0: the freeing thread moves an extent to the retained
/// set at once, merged with its free neighbours. With a decay time (it was
/// 1 s) free extents stayed unmerged that long, and a run of large aligned
/// requests (each needs `size + align - page` contiguous bytes) carved the
/// whole pool out of fragments: every 64 KiB-aligned request then failed
/// (tests: `align_sweep`). Purging through these hooks makes no syscall, and
/// a zero decay time never wakes jemalloc's background thread.
fn create_arena(hooks: &'static jem::extent_hooks_t) -> Option<u32> {
    let hooks: *const jem::extent_hooks_t = hooks;
    let mut arena: c_uint = 0;
    let mut len = core::mem::size_of::<c_uint>();
    // SAFETY: `arenas.create` reads an `extent_hooks_t *` and writes an
    // unsigned; the hooks are statics that outlive the arena.
    let rc = unsafe {
        jem::mallctl(
            c"arenas.create".as_ptr(),
            (&mut arena as *mut c_uint).cast(),
            &mut len,
            (&hooks as *const *const jem::extent_hooks_t).cast_mut().cast(),
            core::mem::size_of::<*const jem::extent_hooks_t>(),
        )
    };
    if rc != 0 {
        return None;
    }
    let i = arena as usize;
    for (name, ms) in [
        (c"arena.0.dirty_decay_ms", POOL_DECAY_MS),
        (c"arena.0.muzzy_decay_ms", 0),
    ] {
        let set = ctl::Mib::new(name).map(|m| m.at(1, i).write::<isize>(ms));
        if !matches!(set, Some(Ok(()))) {
            // The pool would keep free extents unmerged (or purge them):
            // large NORECLAIM requests may then fail early.
            log::warn(format_args!(
                "NORECLAIM pool: could not set {} to {ms} on its arena ({:?})",
                log::Bytes(name.to_bytes()),
                set.map(|r| r.err().map(ctl::CtlError::code))
            ));
        }
    }
    // Ask the hook for modest steps rather than jemalloc's doubling growth
    // (a failure only makes its requests larger).
    if let Some(m) = ctl::Mib::new(c"arena.0.retain_grow_limit") {
        if let Err(e) = m.at(1, i).write::<usize>(CHUNK) {
            log::warn(format_args!(
                "NORECLAIM pool: could not limit its arena's growth step (mallctl error {})",
                e.code()
            ));
        }
    }
    Some(arena)
}

/// How long a free pool extent stays dirty before it is merged into the
/// retained set: not at all (see `create_arena`).
const POOL_DECAY_MS: isize = 0;

/// Allocates through the new arena once, when it is made, so its base
/// blocks and metadata caches exist before the first stocking.
fn warm_up_arena(arena: u32) {
    let flags = jem::MALLOCX_ARENA(arena as usize) | jem::MALLOCX_TCACHE_NONE;
    for size in [16usize, 4096, 64 << 10, 1 << 20] {
        // SAFETY: plain allocate and free through a valid arena index.
        unsafe {
            let p = jem::mallocx(size, flags);
            if !p.is_null() {
                jem::dallocx(p, jem::MALLOCX_TCACHE_NONE);
            }
        }
    }
}

/// Makes sure purging can always be left to jemalloc's background threads:
/// turns them on (with them, application threads never purge on decay,
/// so a scoped thread's own cache upkeep cannot end up in `madvise`), and
/// raises a dirty decay time of 0 ("purge at once, on the freeing thread")
/// to 1 ms for every ordinary arena. (A muzzy decay of 0, jemalloc's
/// default, only means dirty pages skip the muzzy state.)
fn make_purging_deferrable() {
    if os::address_space_limited() {
        // Under a finite RLIMIT_AS, each background thread's stack (8 MiB
        // by default) comes out of the program's budget, and jemalloc's
        // first background thread retries a failed creation of the others
        // forever, one line on stderr each time. One thread purges for all
        // arenas; a failure to say so only leaves jemalloc's default.
        let _ = ctl::write::<usize>(c"max_background_threads", 1);
    }
    if ctl::write(c"background_thread", true).is_err() {
        log::warn(format_args!(
            "could not enable jemalloc background threads; a NORECLAIM thread's cache upkeep may purge"
        ));
    }
    if ctl::read::<isize>(c"arenas.dirty_decay_ms") == Some(0) {
        match ctl::write::<isize>(c"arenas.dirty_decay_ms", 1) {
            Ok(()) => log::warn(format_args!(
                "dirty_decay_ms:0 purges on the freeing thread, which NORECLAIM forbids: raised to 1 ms"
            )),
            Err(e) => log::warn(format_args!(
                "dirty_decay_ms:0 purges on the freeing thread, which NORECLAIM forbids, and raising it failed \
                 (mallctl error {}): new arenas may purge on scoped threads",
                e.code()
            )),
        }
    }
    let narenas = ctl::read::<c_uint>(c"arenas.narenas").unwrap_or(0) as usize;
    let pool = POOL.arena.load(Relaxed) as usize;
    let Some(mib) = ctl::Mib::new(c"arena.0.dirty_decay_ms") else {
        return;
    };
    for i in (0..narenas).filter(|&i| i != pool) {
        let arena = mib.at(1, i);
        if arena.read::<isize>() == Some(0) {
            if let Err(e) = arena.write::<isize>(1) {
                log::warn(format_args!(
                    "arena {i}: could not raise dirty_decay_ms from 0 to 1 (mallctl error {}); it may purge on \
                     scoped threads",
                    e.code()
                ));
            }
        }
    }
}

/// Faults in every page of memscope's own loaded image (its code, jemalloc's
/// code linked into it, their data), outside any scope: a scoped thread
/// running allocator code for the first time would otherwise take a page
/// fault on a code page, or on a data page it is first to write.
fn prefault_own_image() {
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, _data: *mut c_void) -> i32 {
        // SAFETY: within this function's own contract (its `# Safety`).
        unsafe {
            // SAFETY: glibc passes a valid `dl_phdr_info` for the callback's
            // duration; its program headers describe mapped segments.
            let info = &*info;
            let me = prefault_own_image as *const () as usize;
            let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            let is_me = phdrs.iter().any(|ph| {
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                ph.p_type == libc::PT_LOAD && (start..start + ph.p_memsz as usize).contains(&me)
            });
            if !is_me {
                return 0;
            }
            // The start of the writable segment that relocation made
            // read-only again (PT_GNU_RELRO): read, never written.
            let relro_end = phdrs
                .iter()
                .find(|ph| ph.p_type == libc::PT_GNU_RELRO)
                .map_or(0, |ph| {
                    info.dlpi_addr as usize + ph.p_vaddr as usize + ph.p_memsz as usize
                });
            for ph in phdrs.iter().filter(|ph| ph.p_type == libc::PT_LOAD) {
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                let end = start + ph.p_memsz as usize;
                if ph.p_flags & libc::PF_W == 0 {
                    os::prefault_read(start as *const u8, end - start);
                    continue;
                }
                let split = relro_end.clamp(start, end);
                os::prefault_read(start as *const u8, split - start);
                os::prefault_write(split as *const u8, end - split);
            }
            1
        }
    }
    // SAFETY: the callback only reads headers and touches mapped pages.
    unsafe { libc::dl_iterate_phdr(Some(visit), null_mut()) };
}

/// What a pointer given to a free is to the pool.
#[derive(Clone, Copy)]
pub enum Freed {
    /// Not in the pool's range: jemalloc's.
    Outside,
    /// A pool block of a small plain class (trusted from the table, never
    /// large): kept on a thread's list.
    Small(usize),
    /// A pool block that can be kept as this class (`keepable_class`).
    Keep(usize),
    /// A pool block whose size the table cannot vouch for.
    Unvouched,
}

impl Freed {
    /// The class to keep the block as, and whether it is known small.
    #[inline(always)]
    pub fn kept(self) -> Option<(usize, bool)> {
        match self {
            Freed::Small(c) => Some((c, true)),
            Freed::Keep(c) => Some((c, false)),
            Freed::Outside | Freed::Unvouched => None,
        }
    }
}

/// Sorts a freed pointer: the range test inline (every free outside a
/// scope takes it), the rest only for pool blocks.
///
/// # Safety
/// `p` is NULL or a live block from this allocator.
#[inline(always)]
pub unsafe fn freed(p: *mut c_void) -> Freed {
    if !contains(p) {
        return Freed::Outside;
    }
    if let Some(c) = class_of(p) {
        if sizeclass::INFO[c].trusted {
            // The NORECLAIM lane's case: a small plain class, in line.
            return Freed::Small(c);
        }
    }
    // SAFETY: the caller's contract.
    match unsafe { keepable_class(p) } {
        Some(c) => Freed::Keep(c),
        None => Freed::Unvouched,
    }
}

/// The class a pool block `p` can be kept as, or None (not a pool block,
/// or one whose size the table cannot vouch for: its free is deferred).
/// Small plain classes are trusted from the table (a slab never changes
/// class while a block on it lives); large blocks can be resized in place
/// by jemalloc outside a scope, so their size is checked (`sallocx`, a
/// lock-free radix-tree read), and aligned ones their alignment too.
#[cold]
#[inline(never)]
pub unsafe fn keepable_class(p: *mut c_void) -> Option<usize> {
    if !contains(p) {
        return None;
    }
    let c = class_of(p)?;
    if sizeclass::INFO[c].trusted || carved_class(p).is_some() {
        // A block memscope carved is never resized: its class is its size.
        return Some(c);
    }
    // SAFETY: `p` is a live block (our caller's contract).
    let usable = unsafe { jem::sallocx(p, 0) };
    let aligned_to = |a: usize| (p as usize) & (a - 1) == 0;
    if c >= sizeclass::PLAIN && aligned_to(sizeclass::alignment_of(c)) && usable >= sizeclass::size_of(c) {
        return Some(c);
    }
    // A large plain class promises page alignment (`depot::stock_flags`);
    // a block jemalloc made otherwise (e.g. the reserve outside NORECLAIM)
    // may be offset within its page.
    if !aligned_to(sizeclass::PAGE) {
        return None;
    }
    sizeclass::exact(usable)
}
