//! A thread's counts and its slot in the segment.
//!
//! Counting costs the fast path one decrement: each operation has a
//! countdown in the thread's TLS block (`tls::gate`), and the calls the
//! fast path served are `credited + (armed - 1 - countdown)`. While a
//! scope is in force every countdown is biased negative (`bias`), so the
//! gate's sign test sends the call to the slow path without reading the
//! flag word. When a countdown runs out that call is timed, the countdown
//! rearmed with a random interval, and the thread publishes its exact
//! totals and the sample into its slot under the slot's sequence counter.
//! Calls that take the slow path (in a scope, or a new thread) are counted
//! there, per context, and stored into the slot at once; they are sampled
//! on their own countdown per operation and context.
//!
//! Counts are exact whenever a reader looks, idle threads included:
//! slow-path counts are stored as they happen, and the fast path's, which
//! live only in the thread's TLS, are read from there by the maintenance
//! thread every `HARVEST_EVERY_NS` (`harvest_all`), under a handshake that
//! a thread's exit waits for (`Harvest`). A thread publishes on every
//! sample, on `memscope_stats_flush`, and at exit, where its numbers are
//! folded into the retired slot; threads that find every slot taken add
//! theirs to the overflow slot with atomic adds.
//!
//! Sampling intervals are random (geometric with the period as mean, as
//! jemalloc's heap-profile sampling), after a warm-up of 1, 2, 4... calls
//! so that a thread that allocates rarely still publishes early: no
//! workload pattern can line up with them and hide a context from timing.
//!
//! Rule: plain TLS loads and stores, and stores into pre-faulted slot
//! pages: no syscall, lock or allocation, so NORECLAIM threads count too.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicU32, AtomicUsize, Ordering::*};

use memscope_abi::{self as abi, Buckets, Histogram, Slot, CONTEXTS, OPS};

use super::{clock, segment, tid};
use crate::base::tls::{self, ThreadState, ThreadStats};
use crate::base::tls::{NOFAIL, NORECLAIM};

use crate::base::tls::MODE_UNSTARTED;
const MODE_SLOT: u32 = 1;
const MODE_OVERFLOW: u32 = 2;
const MODE_OFF: u32 = 3;
/// After the exit fold of a thread that had a slot: what it does later
/// (key destructors after ours, glibc's own frees) is added to the retired
/// slot, each call at once (the thread is marked `tls::THREAD_EXITED`, so
/// every call is a slow-path one).
const MODE_EXITED: u32 = 4;

/// The aggregate slot a thread without a slot of its own adds to.
#[inline(always)]
fn aggregate_of(mode: u32) -> Option<usize> {
    match mode {
        MODE_OVERFLOW => Some(abi::SLOT_OVERFLOW),
        MODE_EXITED => Some(abi::SLOT_RETIRED),
        _ => None,
    }
}

/// Where the calling thread's numbers go: its own slot's index (written
/// by plain stores), or an aggregate's (atomic adds, `true`); None with
/// stats off or before its first call.
#[inline]
pub fn slot_of(s: &ThreadStats) -> Option<(usize, bool)> {
    match s.mode.get() {
        MODE_SLOT => Some((s.slot_index.get() + abi::SLOT_FIRST_THREAD, false)),
        mode => aggregate_of(mode).map(|i| (i, true)),
    }
}

impl ThreadStats {
    /// Exact calls so far for `op` in `ctx`.
    fn total(&self, op: usize, ctx: usize) -> u64 {
        let slow = self.slow[op][ctx].get();
        if ctx != abi::CTX_NORMAL {
            return slow;
        }
        let armed = self.armed[op].get() - 1;
        slow.wrapping_add(self.credited[op].get())
            .wrapping_add(armed.wrapping_sub(calls_left(self.countdown[op].get())))
    }

    fn bytes(&self) -> [u64; 2] {
        let read = |p: usize| {
            if p == 0 {
                0
            } else {
                // SAFETY: jemalloc's counter in this thread's TSD, alive
                // for as long as the thread.
                unsafe { *(p as *const u64) }
            }
        };
        [read(self.allocatedp.get()), read(self.deallocatedp.get())]
    }
}

/// The largest countdown: the period when stats are off ("never"), far
/// below `memscope_abi::gate::SCOPE_BIAS`.
pub const COUNTDOWN_MAX: u64 = 1 << 55;
const COUNT_BITS: u64 = memscope_abi::gate::COUNT_BITS;

/// The calls left in a countdown word, bias or not. A word just below
/// zero (a call between the gate and its rearm) has none left.
fn calls_left(word: u64) -> u64 {
    let left = word & COUNT_BITS;
    if left > COUNTDOWN_MAX {
        0
    } else {
        left
    }
}

/// A scope is in force on this thread: every countdown goes negative, its
/// count kept, so that `tls::gate` sends every call to the slow path.
/// Idempotent, so that a signal handler's push racing ours leaves the
/// same words (see `scope::push`).
#[inline(always)]
pub fn bias(s: &ThreadStats) {
    for cd in &s.countdown {
        memscope_abi::gate::bias(cd);
    }
}

/// No scope is in force any more: the countdowns count again.
#[inline(always)]
pub fn unbias(s: &ThreadStats) {
    for cd in &s.countdown {
        memscope_abi::gate::unbias(cd);
    }
}

/// True if the gate sent a call of `op` here because its countdown ran
/// out (and not because of a scope's bias).
#[inline]
pub fn ran_out(st: &ThreadState, op: usize) -> bool {
    st.stats.countdown[op].get() == u64::MAX
}

/// Set once jemalloc's mallctl tree is initialised. Before that, a mallctl
/// initialises it, which takes `ctl_mtx` and `background_thread_lock`:
/// deadlock when the call comes from the `calloc` inside jemalloc's own
/// `pthread_create` of a background thread, made under that lock
/// (`MALLOC_CONF=background_thread:true` at start-up did exactly that).
/// Afterwards, reading `thread.allocatedp` takes no lock.
pub static CTL_READY: AtomicBool = AtomicBool::new(false);

/// Set at load when no background thread can start before a `mallctl`
/// (jemalloc's configuration does not mention them; enabling them later
/// takes a mallctl, which initialises the tree first): the tree may then
/// be initialised from an allocator call, outside scopes, when it is
/// first needed: by the second thread's first call, before the maintenance
/// thread starts (`ctl_ready`). That spares every single-threaded
/// short-lived process its cost, 40-odd page faults and about 0.2 ms per
/// exec (docs/BENCHMARKS.md). Otherwise `init` initialises it at load.
pub static CTL_LAZY: AtomicBool = AtomicBool::new(false);

/// Initialises jemalloc's mallctl tree, as its first mallctl does, and
/// says so in `CTL_READY`. Only from a thread holding no jemalloc lock
/// and no scope; `thread.allocatedp` is read because its handler takes no
/// lock (a thread inside a mallctl's handler may allocate, holding
/// `ctl_mtx`; by then the tree exists and only a locking handler would
/// deadlock).
pub fn init_ctl() -> bool {
    let ok = crate::base::ctl::read::<*mut u64>(c"thread.allocatedp").is_some();
    if ok {
        CTL_READY.store(true, Release);
    }
    ok
}

/// Whether mallctls may be made now; initialises jemalloc's
/// tree first where that is safe (`CTL_LAZY`, and the calling thread in no
/// scope: the first mallctl allocates jemalloc's metadata and takes locks).
pub fn ctl_ready() -> bool {
    if CTL_READY.load(Acquire) {
        return true;
    }
    CTL_LAZY.load(Relaxed) && (tls::state().flags.get() & tls::ALL) == 0 && init_ctl()
}

extern "C" {
    /// The calling thread's jemalloc byte counters, the pointers
    /// `thread.allocatedp` and `thread.deallocatedp` name, read from
    /// jemalloc's thread data without a mallctl (`csrc/jemalloc_tsd.c`).
    fn memscope_jemalloc_byte_counters(allocated: *mut *mut u64, deallocated: *mut *mut u64);
}

/// Finds jemalloc's byte counters for the calling thread, whose stats `s`
/// are. Not by mallctl: the first mallctl of a process builds jemalloc's
/// control tree (about 40 page faults, 0.2 ms of every exec of a program
/// that allocates, docs/BENCHMARKS.md), and any mallctl turns the thread's
/// jemalloc state from "minimal" to "nominal", giving it a thread cache: a
/// thread that only frees would then hold freed memory that plain jemalloc
/// hands straight back to its bins (xmalloc's releaser threads: 1.8x
/// jemalloc's peak RSS). The counters are jemalloc's from the thread's
/// start, so learning them at its first call loses nothing.
fn learn_byte_counters(s: &ThreadStats) {
    if s.allocatedp.get() != 0 {
        return;
    }
    let mut allocated = core::ptr::null_mut();
    let mut deallocated = core::ptr::null_mut();
    // SAFETY: two valid out-pointers; the function only computes addresses
    // in the calling thread's TLS block.
    unsafe { memscope_jemalloc_byte_counters(&mut allocated, &mut deallocated) };
    s.allocatedp.set(allocated as usize);
    s.deallocatedp.set(deallocated as usize);
}

/// The calling thread's exact calls of `op` so far in the context of a
/// scope with `flags` (0 before its first call).
pub fn calls_in_context(op: usize, flags: u32) -> u64 {
    let s = &tls::state().stats;
    if s.mode.get() == MODE_UNSTARTED {
        return 0;
    }
    s.total(op, context_of(flags))
}

/// The context a call in a scope with `flags` is counted in.
#[inline]
pub fn context_of(flags: u32) -> usize {
    if flags & NORECLAIM != 0 {
        abi::CTX_NORECLAIM
    } else if flags & NOFAIL != 0 {
        abi::CTX_NOFAIL
    } else {
        abi::CTX_NORMAL
    }
}

/// Sets up the calling thread's counting (its first allocator call, after
/// global init). Claims a slot if the segment exists.
pub fn start(st: &ThreadState) {
    let s = &st.stats;
    let period = super::countdown_period();
    let (first, warm) = if period == COUNTDOWN_MAX {
        (COUNTDOWN_MAX, 0)
    } else {
        (1, if period > 2 { 2 } else { 0 })
    };
    seed(s);
    for op in 0..OPS {
        s.armed[op].set(first);
        s.warm[op].set(warm);
        s.countdown[op].set(first - 1);
        for ctx in 0..CONTEXTS {
            s.slow_warm[op][ctx].set(warm);
            s.slow_countdown[op][ctx].set(first);
        }
    }
    if st.flags.get() & !tls::THREAD_UNSEEN != 0 {
        bias(s);
    }
    learn_byte_counters(s);
    let Some(h) = segment::header() else {
        s.mode.set(MODE_OFF);
        return;
    };
    h.threads_seen.fetch_add(1, Relaxed);
    match claim(h) {
        Some((slot, index)) => {
            s.slot.set(slot as *const Slot as usize);
            s.slot_index.set(index);
            s.mode.set(MODE_SLOT);
            publish(s, slot, None);
            harvest_register(index, st);
        }
        None => {
            h.threads_overflowed.fetch_add(1, Relaxed);
            aggregate_start(s);
        }
    }
}

/// Switches the thread to adding its numbers to the overflow slot, from
/// its current totals on.
fn aggregate_start(s: &ThreadStats) {
    if let Some(h) = segment::header() {
        segment::slot(h, abi::SLOT_OVERFLOW).threads.fetch_add(1, Relaxed);
    }
    s.slot.set(0);
    s.mode.set(MODE_OVERFLOW);
}

/// Takes a free slot: marks it live, names it, faults its pages in.
///
/// The lowest free slot, always: a program that keeps replacing threads
/// (a pool that retires workers, larson) then reuses the same few slots,
/// whose pages are resident already. Taking them in turn instead faulted
/// in all 256 slots (3 MiB of shared memory, counted in the process's RSS)
/// in any long run with thread churn. Readers key nothing by slot index.
fn claim(h: &'static abi::Header) -> Option<(&'static Slot, usize)> {
    for i in abi::SLOT_FIRST_THREAD..abi::SLOT_FIRST_THREAD + abi::THREAD_SLOTS {
        let slot = segment::slot(h, i);
        if slot.state.load(Relaxed) != abi::SLOT_FREE
            || slot
                .state
                .compare_exchange(abi::SLOT_FREE, abi::SLOT_LIVE, Acquire, Relaxed)
                .is_err()
        {
            continue;
        }
        let base = slot as *const Slot as *mut u8;
        // Fault every page in now, for later use on a NORECLAIM thread.
        // SAFETY: this slot, which this thread now owns, mapped writable.
        unsafe { crate::os::prefault_write(base, abi::SLOT_SIZE) };
        // And its call-site table (`sites`), written from scoped threads too.
        super::sites::prefault(h, i);
        // The name is left to readers (they read /proc/<pid>/task/<tid>/comm:
        // threads are often named after their first allocation, and asking
        // the kernel here would be a syscall on a thread that may live
        // under a seccomp filter).
        slot.tid.store(tid::current(), Relaxed);
        slot.threads.store(1, Relaxed);
        return Some((slot, i - abi::SLOT_FIRST_THREAD));
    }
    None
}

/// Writes the thread's totals (and `sample`, if any) into its own slot
/// under the sequence counter.
fn publish(s: &ThreadStats, slot: &Slot, sample: Option<(usize, usize, u64)>) {
    let seq = slot.seq.load(Relaxed);
    slot.seq.store(seq + 1, Relaxed);
    fence(Release);
    for op in 0..OPS {
        for ctx in 0..CONTEXTS {
            slot.ops[op][ctx].store(s.total(op, ctx), Relaxed);
        }
    }
    let [a, d] = s.bytes();
    slot.allocated_bytes.store(a, Relaxed);
    slot.deallocated_bytes.store(d, Relaxed);
    if let Some((op, ctx, ns)) = sample {
        record_owned(&slot.latency[op][ctx], abi::bucket_of(ns), ns);
    }
    slot.seq.store(seq + 2, Release);
}

/// One sample into a histogram with a single writer, in `bucket`.
pub(super) fn record_owned<const N: usize>(h: &Buckets<N>, bucket: usize, ns: u64) {
    let b = &h.buckets[bucket];
    b.store(b.load(Relaxed) + 1, Relaxed);
    h.sum_ns.store(h.sum_ns.load(Relaxed).wrapping_add(ns), Relaxed);
    if ns > h.max_ns.load(Relaxed) {
        h.max_ns.store(ns, Relaxed);
    }
    h.count.store(h.count.load(Relaxed) + 1, Relaxed);
}

/// One sample into a shared histogram, in `bucket`: bucket first, count
/// last, so a reader that loads `count` first never sees more samples than
/// buckets.
pub(super) fn record_shared_in<const N: usize>(h: &Buckets<N>, bucket: usize, ns: u64) {
    h.buckets[bucket].fetch_add(1, Relaxed);
    h.sum_ns.fetch_add(ns, Relaxed);
    h.max_ns.fetch_max(ns, Relaxed);
    h.count.fetch_add(1, Release);
}

/// One latency sample into a shared histogram.
pub fn record_shared(h: &Histogram, ns: u64) {
    record_shared_in(h, abi::bucket_of(ns), ns);
}

/// Adds what the thread did since its last addition to aggregate slot `i`.
fn add_to_aggregate(s: &ThreadStats, i: usize, sample: Option<(usize, usize, u64)>) {
    let Some(h) = segment::header() else { return };
    let slot = segment::slot(h, i);
    for op in 0..OPS {
        for ctx in 0..CONTEXTS {
            let t = s.total(op, ctx);
            let delta = t.wrapping_sub(s.added[op][ctx].get());
            if delta != 0 {
                slot.ops[op][ctx].fetch_add(delta, Relaxed);
                s.added[op][ctx].set(t);
            }
        }
    }
    add_bytes(s, slot);
    if let Some((op, ctx, ns)) = sample {
        record_shared(&slot.latency[op][ctx], ns);
    }
}

/// Adds the thread's bytes since its last addition to aggregate `slot`.
fn add_bytes(s: &ThreadStats, slot: &Slot) {
    let bytes = s.bytes();
    let fields = [&slot.allocated_bytes, &slot.deallocated_bytes];
    for k in 0..2 {
        let delta = bytes[k].wrapping_sub(s.added_bytes[k].get());
        if delta != 0 {
            fields[k].fetch_add(delta, Relaxed);
            s.added_bytes[k].set(bytes[k]);
        }
    }
}

/// Publishes the calling thread's numbers now.
pub fn flush(st: &ThreadState) {
    publish_sample(&st.stats, None);
}

fn publish_sample(s: &ThreadStats, sample: Option<(usize, usize, u64)>) {
    match s.mode.get() {
        MODE_SLOT => {
            // SAFETY: the slot this thread claimed, in the live mapping.
            let slot = unsafe { &*(s.slot.get() as *const Slot) };
            publish(s, slot, sample);
        }
        mode => {
            if let Some(i) = aggregate_of(mode) {
                add_to_aggregate(s, i, sample)
            }
        }
    }
}

// ------------------------------------------------------- the sampled paths

/// The fast path's countdown for `op` reached zero: `ns` is this call's
/// time. Credits the period's calls and rearms.
#[cold]
pub fn fast_sample(op: usize, ns: u64) {
    let s = &tls::state().stats;
    let armed = s.armed[op].get();
    let next = next_interval(s, &s.warm[op]);
    // The three words change together: odd `gen` tells the harvester.
    s.gen.set(s.gen.get().wrapping_add(1));
    compiler_fence(SeqCst);
    s.credited[op].set(s.credited[op].get().wrapping_add(armed));
    s.armed[op].set(next);
    s.countdown[op].set(next - 1);
    compiler_fence(SeqCst);
    s.gen.set(s.gen.get().wrapping_add(1));
    publish_sample(s, Some((op, abi::CTX_NORMAL, ns)));
    // Outside every scope here (scoped calls never take the fast path).
    if tls::state().in_reclaim.get() == 0 {
        super::profile::poll();
    }
}

/// The next sampling interval: the warm-up's next (1, 2, 4... below the
/// period), then random ones.
fn next_interval(s: &ThreadStats, warm: &Cell<u64>) -> u64 {
    let period = super::countdown_period();
    let w = warm.get();
    if w != 0 {
        warm.set(if w.saturating_mul(2) < period { w * 2 } else { 0 });
        return w;
    }
    random_interval(s, period)
}

/// A random interval with mean `period`: exponentially distributed (the
/// continuous form of the geometric intervals jemalloc draws for its heap-
/// profile sampling), so no periodic workload can line up with it.
///
/// Integer arithmetic only: a float `ln` would call into libm, whose first
/// call on a thread binds a PLT slot and faults its pages in, on what may
/// be a NORECLAIM thread.
fn random_interval(s: &ThreadStats, period: u64) -> u64 {
    if period <= 1 || period >= COUNTDOWN_MAX {
        return period.clamp(1, COUNTDOWN_MAX);
    }
    exp_interval(next_random(s), period)
}

/// `1 + floor((period - 1/2) * -ln(u))` for `u = ((r >> 11) + 1) / 2^53` in (0, 1],
/// with `-ln(u) = -log2(u) * ln 2` and `log2` to 16 fractional bits.
fn exp_interval(r: u64, period: u64) -> u64 {
    let x = (r >> 11) + 1; // 1 ..= 2^53
    let e = 63 - u64::from(x.leading_zeros());
    // x's mantissa in [1, 2) as Q63; squaring it yields log2's fraction
    // one bit at a time.
    let mut m = u128::from(x << (63 - e));
    let mut frac = 0u64;
    for _ in 0..16 {
        m = (m * m) >> 63;
        frac <<= 1;
        if m >= 1 << 64 {
            m >>= 1;
            frac |= 1;
        }
    }
    let neg_log2_q16 = (53u64 << 16) - ((e << 16) | frac);
    const LN2_Q16: u128 = 45_426; // ln 2 * 2^16
                                  // Scaled by period - 1/2, not period: 1 + floor(scale * -ln u) is
                                  // geometric with mean 1 / (1 - e^(-1/scale)), which is within 3 % of
                                  // the period at 2 and ever closer above.
    let n = (u128::from(neg_log2_q16) * LN2_Q16 * u128::from(2 * period - 1)) >> 33;
    (n.min(u128::from(COUNTDOWN_MAX - 1)) as u64) + 1
}

/// xorshift64* on the thread's own state.
fn next_random(s: &ThreadStats) -> u64 {
    let mut x = s.rng.get();
    if x == 0 {
        seed(s);
        x = s.rng.get();
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s.rng.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Seeds the thread's generator from the clock and the block's address
/// (distinct per live thread), never 0.
fn seed(s: &ThreadStats) {
    let x = clock::ticks() ^ (s as *const ThreadStats as u64).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    s.rng.set(if x == 0 { 1 } else { x });
}

/// An entry point's gate counted a call that then took the slow path,
/// which counts it itself: give the fast path's count back.
#[inline(always)]
pub fn uncount_fast(st: &ThreadState, op: usize) {
    let cd = &st.stats.countdown[op];
    cd.set(cd.get().wrapping_add(1));
}

/// Counts a slow-path call. Returns the start time if it is to be timed.
#[inline]
pub fn slow_begin(op: usize, ctx: usize) -> Option<u64> {
    let s = &tls::state().stats;
    let c = &s.slow[op][ctx];
    c.set(c.get() + 1);
    store_count(s, op, ctx);
    let cd = &s.slow_countdown[op][ctx];
    let left = cd.get().wrapping_sub(1);
    if left != 0 {
        cd.set(left);
        return None;
    }
    cd.set(next_interval(s, &s.slow_warm[op][ctx]));
    Some(clock::ticks())
}

/// True if the next slow-path call of `op` in `ctx` is not one to time:
/// the NORECLAIM lanes (`route::malloc`, `route::free`) serve only those,
/// and count them with `slow_count_untimed`.
#[inline(always)]
pub fn slow_untimed_next(st: &ThreadState, op: usize, ctx: usize) -> bool {
    st.stats.slow_countdown[op][ctx].get() > 1
}

/// Counts a slow-path call that `slow_untimed_next` said is not timed.
#[inline(always)]
pub fn slow_count_untimed(st: &ThreadState, op: usize, ctx: usize) {
    let s = &st.stats;
    let c = &s.slow[op][ctx];
    c.set(c.get() + 1);
    store_count(s, op, ctx);
    let cd = &s.slow_countdown[op][ctx];
    cd.set(cd.get() - 1);
}

/// Makes a slow-path count visible at once: a store into the thread's own
/// slot (no sequence bump: readers take each counter as it is), or, for a
/// thread without one (overflowed, or exited), an atomic add to its
/// aggregate slot.
#[inline(always)]
fn store_count(s: &ThreadStats, op: usize, ctx: usize) {
    let slot = s.slot.get();
    if slot != 0 {
        // SAFETY: the slot this thread claimed, in the live mapping.
        unsafe { &*(slot as *const Slot) }.ops[op][ctx].store(s.total(op, ctx), Relaxed);
    } else if let Some(i) = aggregate_of(s.mode.get()) {
        add_count_to_aggregate(s, i, op, ctx);
    }
}

#[cold]
fn add_count_to_aggregate(s: &ThreadStats, i: usize, op: usize, ctx: usize) {
    let Some(h) = segment::header() else { return };
    let slot = segment::slot(h, i);
    let t = s.total(op, ctx);
    let delta = t.wrapping_sub(s.added[op][ctx].get());
    if delta != 0 {
        slot.ops[op][ctx].fetch_add(delta, Relaxed);
        s.added[op][ctx].set(t);
    }
    // An exited thread publishes nothing later (no sample need come, no
    // harvest reads it): its bytes go with each call.
    if i == abi::SLOT_RETIRED {
        add_bytes(s, slot);
    }
}

/// A call of `op` by a thread not yet seen that is not worth seeing it for
/// (`free(NULL)`, which glibc makes for every thread as it exits, after
/// the destructors that would release a slot have run): counted in the
/// overflow slot, the thread left unseen.
#[cold]
pub fn count_unseen(op: usize) {
    if let Some(h) = segment::header() {
        segment::slot(h, abi::SLOT_OVERFLOW).ops[op][abi::CTX_NORMAL].fetch_add(1, Relaxed);
    }
}

/// Ends a timed slow-path call begun with `slow_begin`.
#[cold]
pub fn slow_end(op: usize, ctx: usize, start: u64) -> u64 {
    let ns = clock::since(start);
    publish_sample(&tls::state().stats, Some((op, ctx, ns)));
    ns
}

/// The calling thread starts waiting in a NOFAIL retry for `bytes`
/// (`now_ns`: CLOCK_MONOTONIC): readers list it as waiting until
/// `nofail_wait_end`. Threads without a slot of their own are not listed.
pub fn nofail_wait_begin(bytes: usize, now_ns: u64) {
    super::sites::record(abi::SITE_NOFAIL_WAIT, 1, bytes as u64, bytes as u64);
    let s = &tls::state().stats;
    if s.slot.get() != 0 {
        // SAFETY: the slot this thread claimed.
        let slot = unsafe { &*(s.slot.get() as *const Slot) };
        slot.nofail_wait_bytes.store(bytes as u64, Relaxed);
        slot.nofail_wait_since_ns.store(now_ns.max(1), Release);
    }
}

/// The calling thread's NOFAIL wait is over.
pub fn nofail_wait_end() {
    let s = &tls::state().stats;
    if s.slot.get() != 0 {
        // SAFETY: the slot this thread claimed.
        let slot = unsafe { &*(s.slot.get() as *const Slot) };
        slot.nofail_wait_since_ns.store(0, Release);
        slot.nofail_wait_bytes.store(0, Relaxed);
    }
}

// --------------------------------------------- NORECLAIM scope durations
//
// A thread's next outermost NORECLAIM scope after each harvest (every
// `HARVEST_EVERY_NS`, 40 ms) is timed, push to pop: at most 25 scopes a
// second per thread, whatever the workload, and never one chosen by its
// length. Arming clears the thread's `noreclaim_fast` so that its next
// push takes the slow path, which takes the start and marks the scope's
// ring entry; the pop, finding the entry differ from its argument, takes
// its own slow path, which records the duration. The usual push and pop
// pay nothing (`scope::record_timed_push`).

/// The thread's next NORECLAIM push is timed. Called by the maintenance
/// thread under the harvest handshake (or by the thread itself).
fn arm_scope_timing(st: &ThreadState) {
    let _ = st.noreclaim_fast.compare_exchange(1, 0, Relaxed, Relaxed);
}

/// The push of a timed scope: its start.
pub fn noreclaim_timing_starts(s: &ThreadStats) {
    if s.mode.get() != MODE_OFF {
        super::sites::scope_pushed();
        tls::bss().scope_t0.set(clock::ticks());
    }
}

/// The pop of a timed scope: records its duration.
pub fn noreclaim_timing_ends(s: &ThreadStats) {
    if tls::bss().scope_t0.get() != 0 {
        scope_sample_end(s);
    }
}

/// A timed scope's pop did not match its push (a misuse): not recorded.
pub fn noreclaim_timing_cancel() {
    tls::bss().scope_t0.set(0);
}

#[cold]
#[inline(never)]
fn scope_sample_end(s: &ThreadStats) {
    let t0 = tls::bss().scope_t0.replace(0);
    let ns = clock::since(t0);
    super::sites::scope_popped(ns);
    match s.mode.get() {
        MODE_SLOT => {
            // SAFETY: the slot this thread claimed, in the live mapping.
            let slot = unsafe { &*(s.slot.get() as *const Slot) };
            let seq = slot.seq.load(Relaxed);
            slot.seq.store(seq + 1, Relaxed);
            fence(Release);
            record_owned(&slot.noreclaim_scope, abi::buckets::scope_bucket_of(ns), ns);
            slot.seq.store(seq + 2, Release);
        }
        mode => {
            if let (Some(i), Some(h)) = (aggregate_of(mode), segment::header()) {
                let shared = &segment::slot(h, i).noreclaim_scope;
                record_shared_in(shared, abi::buckets::scope_bucket_of(ns), ns);
            }
        }
    }
}

// ------------------------------------------------------ exit, fork, scopes

/// The thread is exiting: fold its numbers into the retired slot and free
/// its slot. Anything it does afterwards (later key destructors, glibc's
/// frees after them) is added to the retired slot as it happens
/// (`MODE_EXITED`); an overflowed thread keeps adding to the overflow
/// slot. Runs again if the exit hook is registered again.
pub fn exit(st: &ThreadState) {
    let s = &st.stats;
    match s.mode.get() {
        MODE_SLOT => {}
        mode => {
            if let Some(i) = aggregate_of(mode) {
                add_to_aggregate(s, i, None);
            }
            return;
        }
    }
    let Some(h) = segment::header() else { return };
    // The harvester reads this thread's TLS: not from here on.
    harvest_unregister(s.slot_index.get());
    // SAFETY: the slot this thread claimed.
    let slot = unsafe { &*(s.slot.get() as *const Slot) };
    let retired = segment::slot(h, abi::SLOT_RETIRED);
    h.folds_started.fetch_add(1, SeqCst);
    super::sites::fold_at_exit(s.slot_index.get() + abi::SLOT_FIRST_THREAD);
    super::locks::fold_at_exit(s.slot_index.get() + abi::SLOT_FIRST_THREAD);
    add_to_aggregate(s, abi::SLOT_RETIRED, None);
    retired.threads.fetch_add(1, Relaxed);
    let seq = slot.seq.load(Relaxed);
    slot.seq.store(seq + 1, Relaxed);
    fence(Release);
    for (mine, theirs) in slot
        .latency
        .iter()
        .flatten()
        .zip(retired.latency.iter().flatten())
    {
        merge_and_clear(mine, theirs);
    }
    merge_and_clear(&slot.noreclaim_scope, &retired.noreclaim_scope);
    for c in slot.ops.iter().flatten() {
        c.store(0, Relaxed);
    }
    for f in [
        &slot.allocated_bytes,
        &slot.deallocated_bytes,
        &slot.threads,
        &slot.nofail_wait_since_ns,
        &slot.nofail_wait_bytes,
    ] {
        f.store(0, Relaxed);
    }
    slot.tid.store(0, Relaxed);
    for w in &slot.name {
        w.store(0, Relaxed);
    }
    slot.seq.store(seq + 2, Release);
    slot.state.store(abi::SLOT_FREE, Release);
    h.folds_finished.fetch_add(1, SeqCst);
    s.slot.set(0);
    s.mode.set(MODE_EXITED);
}

pub(super) fn merge_and_clear<const N: usize>(mine: &Buckets<N>, into: &Buckets<N>) {
    let n = mine.count.load(Relaxed);
    if n == 0 {
        return;
    }
    for (b, t) in mine.buckets.iter().zip(into.buckets.iter()) {
        let v = b.load(Relaxed);
        if v != 0 {
            t.fetch_add(v, Relaxed);
            b.store(0, Relaxed);
        }
    }
    into.sum_ns.fetch_add(mine.sum_ns.load(Relaxed), Relaxed);
    into.max_ns.fetch_max(mine.max_ns.load(Relaxed), Relaxed);
    into.count.fetch_add(n, Release);
    for f in [&mine.count, &mine.sum_ns, &mine.max_ns] {
        f.store(0, Relaxed);
    }
}

/// In a forked child, after the segment was remade: the surviving thread
/// starts counting afresh in the child's segment.
pub fn after_fork_in_child(st: &ThreadState) {
    let s = &st.stats;
    if s.mode.get() == MODE_UNSTARTED {
        return;
    }
    for op in 0..OPS {
        s.credited[op].set(0);
        for ctx in 0..CONTEXTS {
            s.slow[op][ctx].set(0);
            s.added[op][ctx].set(0);
        }
    }
    let bytes = s.bytes();
    s.slot.set(0);
    // The child's segment is new: its lock block is faulted in again.
    tls::bss().lock.block.set(0);
    // The parent's other threads do not exist here.
    for e in &HARVEST {
        e.state.store(H_FREE, Relaxed);
    }
    start(st);
    // jemalloc's byte counters carry on across fork; an overflow slot
    // gets only what the child adds.
    s.added_bytes[0].set(bytes[0]);
    s.added_bytes[1].set(bytes[1]);
}

// ---------------------------------------------------------------- harvest

/// How often the maintenance thread reads every thread's fast-path counts
/// into its slot: a reader sees counts at most about this old (plus the
/// maintenance thread's poll) for a thread that went idle.
pub const HARVEST_EVERY_NS: u64 = 40_000_000;

const H_FREE: u32 = 0;
const H_IDLE: u32 = 1;
const H_BUSY: u32 = 2;

/// Per thread slot: the owning thread's `ThreadStats` while it may be read.
/// The harvester holds an entry `H_BUSY` while it reads; an exiting thread
/// waits for that to end before its TLS goes away (`harvest_unregister`).
struct Harvest {
    state: AtomicU32,
    state_ptr: AtomicUsize,
}

static HARVEST: [Harvest; abi::THREAD_SLOTS] = [const {
    Harvest {
        state: AtomicU32::new(H_FREE),
        state_ptr: AtomicUsize::new(0),
    }
}; abi::THREAD_SLOTS];

fn harvest_register(index: usize, st: &ThreadState) {
    let e = &HARVEST[index];
    e.state_ptr.store(st as *const ThreadState as usize, Relaxed);
    e.state.store(H_IDLE, Release);
}

/// Takes the thread's entry back, waiting out a harvest under way (which
/// reads a few words and never blocks; the wait yields only if the
/// harvester was preempted mid-read).
fn harvest_unregister(index: usize) {
    let e = &HARVEST[index];
    let mut spins = 0u32;
    loop {
        match e.state.compare_exchange(H_IDLE, H_FREE, AcqRel, Acquire) {
            Ok(_) => return,
            Err(H_BUSY) => {
                spins += 1;
                if spins < 1000 {
                    core::hint::spin_loop();
                } else {
                    // Thread exit already makes syscalls; this one only
                    // if the harvester was preempted.
                    crate::os::yield_now();
                }
            }
            Err(_) => return,
        }
    }
}

/// Reads one word of another thread's TLS block (only its owner writes
/// it, with plain stores; an aligned 8-byte load is never torn on the
/// targets this runs on).
///
/// # Safety
/// The thread is registered and its entry held `H_BUSY` by the caller, so
/// the word's memory stays valid.
unsafe fn peek<T: Copy>(c: &Cell<T>) -> T {
    // SAFETY: valid memory (the contract above); a volatile read, so the
    // compiler neither caches nor tears it.
    unsafe { core::ptr::read_volatile(c.as_ptr()) }
}

/// The totals of a registered thread, read from its TLS, or None if it
/// kept rewriting its sample words.
///
/// # Safety
/// As `peek`.
unsafe fn harvest_totals(s: &ThreadStats) -> Option<[[u64; CONTEXTS]; OPS]> {
    // SAFETY: every `peek` below is on `s`, which the caller holds (our
    // contract).
    unsafe {
        for _ in 0..64 {
            let g0 = peek(&s.gen);
            compiler_fence(SeqCst);
            if g0 & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let mut t = [[0u64; CONTEXTS]; OPS];
            for (op, row) in t.iter_mut().enumerate() {
                for (ctx, v) in row.iter_mut().enumerate() {
                    *v = peek(&s.slow[op][ctx]);
                }
                let armed = peek(&s.armed[op]).wrapping_sub(1);
                let fast = peek(&s.credited[op])
                    .wrapping_add(armed.wrapping_sub(calls_left(peek(&s.countdown[op]))));
                row[abi::CTX_NORMAL] = row[abi::CTX_NORMAL].wrapping_add(fast);
            }
            compiler_fence(SeqCst);
            if peek(&s.gen) == g0 {
                return Some(t);
            }
        }
    }
    None
}

/// A thread's byte counters, read from jemalloc's TSD through the pointers
/// it registered (0 where it has none).
///
/// # Safety
/// As `peek`: the thread is held, so its TSD is alive.
unsafe fn harvest_bytes(s: &ThreadStats) -> [u64; 2] {
    let read = |p: usize| {
        if p == 0 {
            0
        } else {
            // SAFETY: jemalloc's counter in the held thread's TSD.
            unsafe { core::ptr::read_volatile(p as *const u64) }
        }
    };
    // SAFETY: as `peek` (our contract).
    unsafe { [read(peek(&s.allocatedp)), read(peek(&s.deallocatedp))] }
}

/// Stores every registered thread's exact counts and bytes into its slot
/// (the maintenance thread, every `HARVEST_EVERY_NS`).
pub fn harvest_all(visit: &mut dyn FnMut(&ThreadState)) {
    let Some(h) = segment::header() else { return };
    for (i, e) in HARVEST.iter().enumerate() {
        if e.state.load(Relaxed) != H_IDLE
            || e.state
                .compare_exchange(H_IDLE, H_BUSY, Acquire, Relaxed)
                .is_err()
        {
            continue;
        }
        // SAFETY: registered, and held busy: the thread cannot finish
        // exiting (its TLS stays) until the entry is idle again.
        let st = unsafe { &*(e.state_ptr.load(Relaxed) as *const ThreadState) };
        let s = &st.stats;
        // Its next NORECLAIM scope is timed (see the scope durations).
        arm_scope_timing(st);
        visit(st);
        let slot = segment::slot(h, abi::SLOT_FIRST_THREAD + i);
        // SAFETY: as above.
        if let Some(t) = unsafe { harvest_totals(s) } {
            for (op, row) in t.iter().enumerate() {
                for (ctx, &v) in row.iter().enumerate() {
                    if slot.ops[op][ctx].load(Relaxed) != v {
                        slot.ops[op][ctx].store(v, Relaxed);
                    }
                }
            }
        }
        // SAFETY: as above.
        let [a, d] = unsafe { harvest_bytes(s) };
        slot.allocated_bytes.store(a, Relaxed);
        slot.deallocated_bytes.store(d, Relaxed);
        e.state.store(H_IDLE, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_keeps_the_count_and_makes_every_gate_fail() {
        std::thread::spawn(|| {
            let st = tls::state();
            let s = &st.stats;
            s.armed[0].set(1024);
            for left in [0, 1, 7, 1023, COUNTDOWN_MAX - 1] {
                s.countdown[0].set(left);
                let before = s.total(0, abi::CTX_NORMAL);
                bias(s);
                bias(s); // idempotent: a signal handler's push racing ours
                assert!((s.countdown[0].get() as i64) < 0);
                assert_eq!(s.total(0, abi::CTX_NORMAL), before);
                // A scoped call: the gate's decrement, then the slow path's
                // give-back; the word stays negative and the count unchanged.
                let w = s.countdown[0].get().wrapping_sub(1);
                assert!((w as i64) < 0);
                unbias(s);
                assert_eq!(s.countdown[0].get(), left);
                assert_eq!(s.total(0, abi::CTX_NORMAL), before);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn byte_counters_are_the_ones_jemalloc_names_in_every_thread() {
        fn ask(name: &core::ffi::CStr) -> usize {
            let mut p: *mut u64 = core::ptr::null_mut();
            let mut len = core::mem::size_of::<*mut u64>();
            // SAFETY: a pointer-sized out-value for a pointer-valued name.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    (&mut p as *mut *mut u64).cast(),
                    &mut len,
                    core::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0);
            p as usize
        }
        // All four alive at once, so no two can share a TLS block.
        let together = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let together = together.clone();
                std::thread::spawn(move || {
                    let s = &tls::state().stats;
                    // Learned before jemalloc has seen the thread at all.
                    learn_byte_counters(s);
                    let (a, d) = (s.allocatedp.get(), s.deallocatedp.get());
                    assert!(a != 0 && d != 0 && a != d);
                    // SAFETY: `a` points at this thread's counter, live while
                    // it runs; plain jemalloc calls, the block freed once.
                    let (before, after) = unsafe {
                        let before = *(a as *const u64);
                        let p = tikv_jemalloc_sys::malloc(100 + i);
                        let after = *(a as *const u64);
                        tikv_jemalloc_sys::free(p);
                        (before, after)
                    };
                    assert!(after > before, "allocation not counted");
                    assert_eq!((a, d), (ask(c"thread.allocatedp"), ask(c"thread.deallocatedp")));
                    together.wait();
                    a
                })
            })
            .collect();
        let mut seen: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4, "every thread has its own counters");
    }

    #[test]
    fn random_intervals_average_the_period_and_never_repeat_a_pattern() {
        std::thread::spawn(|| {
            let s = &tls::state().stats;
            for period in [2u64, 7, 1024, 1 << 20] {
                let n = 200_000u64;
                let mut sum = 0u64;
                let mut distinct = std::collections::BTreeSet::new();
                for _ in 0..n {
                    let v = random_interval(s, period);
                    assert!(v >= 1);
                    sum += v;
                    distinct.insert(v);
                }
                let mean = sum as f64 / n as f64;
                // The intervals are geometric with this mean (see
                // `exp_interval`), 2.75 % above the period at 2, closer
                // above; 200,000 draws put the sample mean within 1 % of
                // it. (Asserting 3 % of the period itself failed about one
                // run in 15 at period 2: 2.75 % plus the sampling noise.)
                let expected = 1.0 / (1.0 - (-1.0 / (period as f64 - 0.5)).exp());
                assert!(
                    (mean / expected - 1.0).abs() < 0.01,
                    "period {period}: mean {mean}, expected {expected}"
                );
                assert!((expected / period as f64 - 1.0).abs() < 0.03, "period {period}");
                assert!(distinct.len() > 2, "period {period}: {distinct:?}");
            }
            assert_eq!(random_interval(s, 1), 1);
            assert_eq!(random_interval(s, COUNTDOWN_MAX), COUNTDOWN_MAX);
            // The extremes of the generator's range.
            assert_eq!(exp_interval(u64::MAX, 1000), 1);
            assert!(exp_interval(0, 1000) > 30_000);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_word_just_below_zero_has_no_calls_left() {
        assert_eq!(calls_left(u64::MAX), 0);
        assert_eq!(
            calls_left(u64::MAX.wrapping_sub(memscope_abi::gate::SCOPE_BIAS)),
            0
        );
        assert_eq!(calls_left(5u64.wrapping_sub(memscope_abi::gate::SCOPE_BIAS)), 5);
        assert_eq!(calls_left(COUNTDOWN_MAX), COUNTDOWN_MAX);
    }
}
