//! The stats segment `$MEMSCOPE_STATS_DIR/memscope.<pid>[.<n>]`, defined
//! once for its one writer (the preloaded shim) and its readers
//! (`memscope-stat`, and C programs through `ffi-include/memscope_stats.h`,
//! which a test holds equal to this file).
//!
//! Every field is an atomic of the plain integer's size and alignment: the
//! writer stores with relaxed atomics while other processes read, so a
//! value is never torn, and a reader may map a hostile file and still only
//! ever see integers. Consistency across fields comes from the protocols
//! documented on [`Slot::seq`] and [`Header::folds_started`].
//!
//! Beside it, [`gate`]: the per-thread lock gate libmemscope.so shares
//! with libmemscope_locks.so inside a process (not in the segment).
//!
//! Compatibility: the first 32 bytes ([`Header`] up to `segment_size`)
//! never change. A reader accepts its own `ABI_MAJOR` and any minor (minor
//! versions only append fields inside reserved space).

#![no_std]

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};

pub mod buckets;
pub mod gate;
pub mod names;

pub use buckets::{bucket_lower, bucket_of, bucket_upper, BUCKETS};

pub const MAGIC: [u8; 8] = *b"MEMSCOPE";
/// Written in the writer's byte order: a reader that sees it byte-swapped
/// is on the wrong machine.
pub const BYTE_ORDER_MARK: u32 = 0x0102_0304;
pub const ABI_MAJOR: u16 = 1;
/// 1.4: events 27-31 (NORECLAIM refusals by cause, self-carved spans,
/// impossible NOFAIL requests, failed maintenance-thread starts) and the
/// `pool_self_carved_bytes` gauge, in the slots 1.3 reserved for them.
/// 1.5: call-site tables ([`SiteTable`], one per slot, after the slots;
/// `Header::sites_offset`) and events 32-33 (`sites_dropped`,
/// `sites_evicted`).
/// 1.6: lock sections ([`LockStats`], one per slot, after the call-site
/// tables; `Header::locks_offset`, `Header::lock_scope`) and call-site
/// kinds 6-7 (`lock_alloc`, `lock_taken`); event 34 (`pool_shrinks`) and
/// gauge 15 (`pool_noreclaim_bytes`).
pub const ABI_MINOR: u16 = 6;
/// `Header::ready` holds this once the segment is initialised.
pub const READY: u32 = 0x5245_4459; // "READ" "Y"

/// Operations timed and counted per thread.
pub const OPS: usize = 3;
pub const OP_ALLOC: usize = 0;
pub const OP_FREE: usize = 1;
pub const OP_REALLOC: usize = 2;

/// Allocation contexts: the scope in force when the call was made.
pub const CONTEXTS: usize = 3;
pub const CTX_NORMAL: usize = 0;
pub const CTX_NORECLAIM: usize = 1;
pub const CTX_NOFAIL: usize = 2;

/// Room for event counters (the shim uses `names::EVENTS.len()` of them;
/// new events are appended).
pub const EVENT_SLOTS: usize = 64;
/// Room for slow-event timers (`names::TIMERS`).
pub const TIMER_SLOTS: usize = 8;
pub const CMDLINE_MAX: usize = 512;
pub const THREAD_NAME_MAX: usize = 16;
/// Per-thread slots after the two aggregate ones.
pub const THREAD_SLOTS: usize = 256;
/// Index of the aggregate of exited threads.
pub const SLOT_RETIRED: usize = 0;
/// Index of the slot shared (with atomic adds) by threads beyond `THREAD_SLOTS`.
pub const SLOT_OVERFLOW: usize = 1;
pub const SLOT_FIRST_THREAD: usize = 2;
pub const SLOT_TOTAL: usize = THREAD_SLOTS + SLOT_FIRST_THREAD;

/// `Slot::state` values.
pub const SLOT_FREE: u32 = 0;
pub const SLOT_LIVE: u32 = 1;
pub const SLOT_AGGREGATE: u32 = 2;

/// A histogram of nanoseconds with `N` buckets: sample count, sum, maximum.
#[repr(C)]
pub struct Buckets<const N: usize> {
    /// Samples recorded; equals the sum of `buckets` in a consistent read.
    pub count: AtomicU64,
    pub sum_ns: AtomicU64,
    pub max_ns: AtomicU64,
    pub buckets: [AtomicU64; N],
}

/// A latency histogram in nanoseconds, log-linear buckets (see `buckets`).
pub type Histogram = Buckets<BUCKETS>;

/// Buckets of a [`ScopeHistogram`].
pub const SCOPE_BUCKETS: usize = 40;

/// How long NORECLAIM scopes lasted, in nanoseconds: one bucket per power
/// of two (bucket `i` holds `[2^i, 2^(i+1))`, bucket 0 also 0 and 1, the
/// last everything from 2^39 ns, about 9 minutes, up; see
/// `buckets::scope_bucket_of`). Coarser than [`Histogram`]: it had to fit
/// in the slot's last page, and a scope is the caller's own critical
/// section, whose length matters to a factor of two, not to 25 %.
pub type ScopeHistogram = Buckets<SCOPE_BUCKETS>;

/// The segment's first page(s).
#[repr(C, align(4096))]
pub struct Header {
    // ---- prologue: never changes across ABI versions ----
    pub magic: [u8; 8],
    pub byte_order: AtomicU32,
    pub abi_major: AtomicU16,
    pub abi_minor: AtomicU16,
    /// `size_of::<Header>()` as the writer built it.
    pub header_size: AtomicU32,
    /// `READY` once every other header field is written (stored last).
    pub ready: AtomicU32,
    /// Bytes of the whole segment; the file is at least this long.
    pub segment_size: AtomicU64,
    // ---- ABI 1 ----
    pub pid: AtomicU32,
    pub slot_count: AtomicU32,
    pub slot_size: AtomicU32,
    pub bucket_count: AtomicU32,
    pub slots_offset: AtomicU64,
    /// CLOCK_REALTIME at segment creation.
    pub start_unix_ns: AtomicU64,
    /// `MEMSCOPE_STATS_SAMPLE`: one call in this many is timed, per thread
    /// and operation. Counts are exact regardless.
    pub sample_period: AtomicU64,
    /// Thread-exit folds begun and finished. A reader takes
    /// `folds_finished` first and `folds_started` last; if they differ, a
    /// thread was moving its numbers into the retired slot meanwhile and
    /// the snapshot is retried.
    pub folds_started: AtomicU64,
    pub folds_finished: AtomicU64,
    /// Threads that ever made an allocator call.
    pub threads_seen: AtomicU64,
    /// Of those, threads that found every slot taken (they share `SLOT_OVERFLOW`).
    pub threads_overflowed: AtomicU64,
    pub event_count: AtomicU32,
    pub timer_count: AtomicU32,
    pub cmdline_len: AtomicU32,
    pub _reserved0: AtomicU32,
    /// `/proc/self/cmdline`, NUL-separated, truncated to `cmdline_len`.
    pub cmdline: [u8; CMDLINE_MAX],
    /// Process-wide event counters, in `names::EVENTS` order.
    pub events: [AtomicU64; EVENT_SLOTS],
    /// Slow-event latencies (always timed), in `names::TIMERS` order.
    pub timers: [Histogram; TIMER_SLOTS],
    // ---- ABI 1.2 (in the header page's former padding) ----
    /// Heap-profile requests (`memscope-stat profile`): the only field a
    /// reader writes. It stores a number above `profile_done`; the process
    /// (its maintenance thread, or a thread's sampled slow path outside
    /// any scope) writes a jemalloc heap profile to
    /// `<stats dir>/memscope.<pid>.<request>.heap` and publishes the number
    /// in `profile_done`.
    pub profile_request: AtomicU64,
    /// The last request served.
    pub profile_done: AtomicU64,
    /// How the last request went: 0 the dump was written; otherwise an
    /// errno (`ENOTSUP`: profiling is off, start with `MALLOC_CONF=prof:true`;
    /// others: jemalloc's `prof.dump` failed with it).
    pub profile_status: AtomicU32,
    /// The writer's memscope version, `MAJOR << 16 | MINOR << 8 | PATCH`.
    pub lib_version: AtomicU32,
    // ---- ABI 1.3 ----
    /// When the maintenance thread last refreshed `gauges`
    /// (CLOCK_REALTIME ns); 0: never (a process that has not started it).
    pub gauges_unix_ns: AtomicU64,
    /// Memory gauges in `names::GAUGES` order, refreshed about once a
    /// second by the maintenance thread.
    pub gauges: [AtomicU64; GAUGE_SLOTS],
    // ---- ABI 1.5 ----
    /// Where the call-site tables begin (bytes from the segment's start):
    /// `slot_count` tables of `site_table_size` bytes, table `i` for slot
    /// `i`. 0: none (a writer before 1.5).
    pub sites_offset: AtomicU64,
    /// Entries per table and frames per entry, as the writer built them.
    pub site_entries: AtomicU32,
    pub site_frames: AtomicU32,
    pub site_table_size: AtomicU32,
    pub _reserved1: AtomicU32,
    // ---- ABI 1.6 ----
    /// Where the lock-section blocks begin (bytes from the segment's
    /// start): `slot_count` blocks of `lock_stats_size` bytes, block `i`
    /// for slot `i`. 0: none (a writer before 1.6).
    pub locks_offset: AtomicU64,
    pub lock_stats_size: AtomicU32,
    /// The scope a lock section holds (`MEMSCOPE_LOCK_SCOPE`): 0 for
    /// `report`, else the `MEMSCOPE_*` flags it enters.
    pub lock_scope: AtomicU32,
}

/// Frames kept per call site: the return address of the allocator call
/// (or scope push), then its callers where frame pointers allow.
pub const SITE_FRAMES: usize = 4;
/// Entries per thread's call-site table (open-addressed; the oldest of
/// a full probe window is evicted).
pub const SITE_ENTRIES: usize = 32;

/// Kinds of call-site records (`Site::kind`; names in `names::SITE_KINDS`).
/// Exact: every event is recorded. Sampled: one call in
/// `Header::sample_period` is, and its count and bytes are multiplied by
/// the period (estimates).
pub const SITE_REFUSED: u32 = 1;
pub const SITE_POLICY: u32 = 2;
pub const SITE_NOFAIL_WAIT: u32 = 3;
pub const SITE_SAMPLED_ALLOC: u32 = 4;
pub const SITE_SCOPE: u32 = 5;
/// ABI 1.6: allocations made while the thread held a program lock (exact),
/// and the lock calls that opened sections which allocated (exact; one
/// frame, the lock call's return address; `bytes` what the sections
/// allocated).
pub const SITE_LOCK_ALLOC: u32 = 6;
pub const SITE_LOCK_TAKEN: u32 = 7;
pub const SITE_KIND_MAX: u32 = 7;

/// One call site of one kind in one thread's table.
#[repr(C)]
pub struct Site {
    /// `SITE_*`; 0: the entry is empty.
    pub kind: AtomicU32,
    /// Frames recorded (1..=SITE_FRAMES).
    pub depth: AtomicU32,
    /// Return addresses, the allocator call's (or push's) first, then its
    /// callers'. Frames past `depth` are 0.
    pub frames: [AtomicU64; SITE_FRAMES],
    /// Events (saturating): refusals, policy hits, NOFAIL waits, scopes;
    /// for sampled allocations an estimate (samples times the period).
    pub count: AtomicU64,
    /// Bytes asked for (saturating; sampled: an estimate); for scopes the
    /// total nanoseconds held.
    pub bytes: AtomicU64,
    /// The largest request, or for waits and scopes the longest, in ns.
    pub max: AtomicU64,
    /// The table's `clock` at the last record (the oldest is evicted).
    pub last: AtomicU64,
}

/// A thread's call sites (or an aggregate's). The owner writes between
/// two bumps of `seq` (odd while it writes), as [`Slot::seq`]; aggregate
/// tables (retired, overflow) are written only while `lock` is held (0
/// free, 1 held), and their `seq` moves the same way.
#[repr(C, align(64))]
pub struct SiteTable {
    pub seq: AtomicU64,
    /// Records so far (the eviction clock).
    pub clock: AtomicU64,
    pub lock: AtomicU32,
    pub _reserved: [AtomicU32; 11],
    pub entries: [Site; SITE_ENTRIES],
}

pub const SITE_TABLE_SIZE: usize = core::mem::size_of::<SiteTable>();

/// Room for gauges (`names::GAUGES`; new ones are appended).
pub const GAUGE_SLOTS: usize = 16;

/// `Header::profile_status` when profiling is not enabled in the process.
pub const PROFILE_OFF: u32 = 95; // ENOTSUP on Linux

/// One thread's numbers (or an aggregate). Page-aligned so that threads
/// never share a cache line and a slot can be pre-faulted as a unit.
#[repr(C, align(4096))]
pub struct Slot {
    /// Odd while the owning thread updates the slot. A reader copies the
    /// slot between two equal even reads of `seq` (retrying otherwise);
    /// it never writes, so it cannot slow the writer. Aggregate slots are
    /// updated with atomic adds instead and keep `seq` at 0.
    pub seq: AtomicU64,
    pub state: AtomicU32,
    pub tid: AtomicU32,
    /// The thread's name when it first allocated (NUL-padded).
    pub name: [AtomicU64; THREAD_NAME_MAX / 8],
    /// Threads whose numbers this slot holds (1 for a live thread).
    pub threads: AtomicU64,
    /// Usable bytes allocated and freed by the thread (jemalloc's own
    /// per-thread counters, exact).
    pub allocated_bytes: AtomicU64,
    pub deallocated_bytes: AtomicU64,
    /// Calls per operation and context (exact).
    pub ops: [[AtomicU64; CONTEXTS]; OPS],
    /// Sampled latencies per operation and context.
    pub latency: [[Histogram; CONTEXTS]; OPS],
    /// ABI 1.1: while the thread waits in a NOFAIL retry, when the wait
    /// began (CLOCK_MONOTONIC, ns; the same clock in every process), and
    /// the size asked for; 0 and 0 otherwise. Written by the owner only.
    pub nofail_wait_since_ns: AtomicU64,
    pub nofail_wait_bytes: AtomicU64,
    /// ABI 1.3 (in the slot's former padding): sampled durations of the
    /// thread's outermost NORECLAIM scopes, push to pop (its first scope,
    /// then its next one after each stats harvest, about every 40 ms: at
    /// most 25 a second). Where a daemon scopes its critical sections, this
    /// is its lock-hold time.
    pub noreclaim_scope: ScopeHistogram,
}

/// Buckets of [`LockStats::sizes`]: bucket `i` holds requests of `i`
/// significant bits (`[2^(i-1), 2^i)`; bucket 0 the zero-byte ones), the
/// last everything from 2^46 bytes up.
pub const LOCK_SIZE_BUCKETS: usize = 48;

/// The size bucket of a request of `size` bytes ([`LockStats::sizes`]).
pub const fn lock_size_bucket(size: u64) -> usize {
    let bits = (64 - size.leading_zeros()) as usize;
    if bits >= LOCK_SIZE_BUCKETS {
        LOCK_SIZE_BUCKETS - 1
    } else {
        bits
    }
}

/// What one thread (or an aggregate) did while it held program locks
/// (ABI 1.6; `libmemscope_locks.so`, or `memscope_lock_acquired`): a
/// section runs from the thread's first lock taken to the release of its
/// last. Written like [`Slot`]: the owner stores (readers take each
/// counter as it is), aggregates (retired, overflow) take atomic adds.
#[repr(C, align(64))]
pub struct LockStats {
    /// Sections entered, and of those the ones that allocated.
    pub sections: AtomicU64,
    pub sections_allocating: AtomicU64,
    /// Allocations (malloc, calloc, realloc, the aligned and jemalloc
    /// ones) and frees made inside sections, exact.
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
    /// Bytes those allocations asked for.
    pub alloc_bytes: AtomicU64,
    /// The largest request made inside a section.
    pub largest: AtomicU64,
    /// Of the allocations, the ones that returned NULL (refused inside
    /// NORECLAIM, or out of memory), and the size of the latest.
    pub refused: AtomicU64,
    pub refused_last_bytes: AtomicU64,
    /// Allocations by size ([`lock_size_bucket`]).
    pub sizes: [AtomicU64; LOCK_SIZE_BUCKETS],
    /// The timed ones' latencies (one in `Header::sample_period` of the
    /// section's allocations, as every slow-path call is timed).
    pub latency: Histogram,
}

pub const LOCK_STATS_SIZE: usize = core::mem::size_of::<LockStats>();

pub const HEADER_SIZE: usize = core::mem::size_of::<Header>();
pub const SLOT_SIZE: usize = core::mem::size_of::<Slot>();
/// Where the call-site tables start: after the slots, page-aligned.
pub const SITES_OFFSET: usize = HEADER_SIZE + SLOT_TOTAL * SLOT_SIZE;
pub const SITES_SIZE: usize = (SLOT_TOTAL * SITE_TABLE_SIZE + 4095) & !4095;
/// Where the lock-section blocks start: after the call-site tables.
pub const LOCKS_OFFSET: usize = SITES_OFFSET + SITES_SIZE;
pub const LOCKS_SIZE: usize = (SLOT_TOTAL * LOCK_STATS_SIZE + 4095) & !4095;
pub const SEGMENT_SIZE: usize = LOCKS_OFFSET + LOCKS_SIZE;

/// `memscope.<pid>`, the first name a process tries; then `memscope.<pid>.<n>`.
pub const FILE_PREFIX: &str = "memscope.";
/// Names a process tries before giving up (the plain one, then `.1`...).
pub const NAME_ATTEMPTS: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned_and_stable() {
        assert_eq!(HEADER_SIZE % 4096, 0);
        assert_eq!(SLOT_SIZE % 4096, 0);
        assert_eq!(core::mem::offset_of!(Header, segment_size), 24);
        assert_eq!(core::mem::offset_of!(Header, pid), 32);
        // Minor versions append inside the padding: sizes never change.
        assert_eq!(HEADER_SIZE, 3 * 4096);
        assert_eq!(SLOT_SIZE, 3 * 4096);
        assert!(names::EVENTS.len() <= EVENT_SLOTS);
        assert!(names::TIMERS.len() <= TIMER_SLOTS);
        assert!(names::GAUGES.len() <= GAUGE_SLOTS);
        assert_eq!(names::SITE_KINDS.len(), SITE_KIND_MAX as usize);
        assert_eq!(core::mem::size_of::<Site>(), 72);
        assert_eq!(SITE_TABLE_SIZE % 64, 0);
        assert_eq!(SITES_OFFSET % 4096, 0);
        assert_eq!(LOCKS_OFFSET % 4096, 0);
        assert_eq!(LOCK_STATS_SIZE % 64, 0);
        assert_eq!(lock_size_bucket(0), 0);
        assert_eq!(lock_size_bucket(1), 1);
        assert_eq!(lock_size_bucket(4096), 13);
        assert_eq!(lock_size_bucket(u64::MAX), LOCK_SIZE_BUCKETS - 1);
    }
}
