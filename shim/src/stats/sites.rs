//! Call sites: where a thread's allocator calls were refused in NORECLAIM,
//! hit the NOFAIL policy or waited in NOFAIL (every one), where its
//! NORECLAIM allocations come from (sampled with the timing samples), and
//! where its timed NORECLAIM scopes were pushed, with how long they held.
//! Kept in the thread's table in the segment (`abi::SiteTable`, one per
//! slot), read by `memscope-stat sites`.
//!
//! A site is the return address of the allocator call (or of the push).
//! The exported function's first instructions store the stack and frame
//! pointers it was entered with (`ThreadState::caller_sp`/`caller_fp`,
//! `entry::exports`); the return address is the word at that stack
//! pointer, on this thread's stack above the recording frame, so that read
//! is always safe. Its callers are read by following the program's frame
//! pointers, only where every read lies between that stack pointer and the
//! top of this thread's stack (`stack_bounds`): a program built without frame
//! pointers gives the call site alone. memscope's own functions need no
//! frame pointers (docs/DECISIONS.md, D55). A program that links memscope
//! as its Rust allocator calls no export: it records no sites.
//!
//! Rule: no allocation, no lock wait, no syscall. The owner is its
//! table's only writer (plain stores between two bumps of `seq`); shared
//! tables (threads without a slot, threads folding theirs at exit) are
//! written under a try-lock, and a busy one drops the record (counted).

use core::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering::*};

use memscope_abi::{self as abi, Site, SiteTable, SITE_ENTRIES, SITE_FRAMES};

use super::segment;
use crate::base::counters::{count, Event};
use crate::base::tls;

/// The main thread's descriptor (`pthread_self` at load) and the top of
/// its stack (`__libc_stack_end`).
static MAIN_THREAD: AtomicUsize = AtomicUsize::new(0);
static MAIN_STACK_TOP: AtomicUsize = AtomicUsize::new(0);
/// The lowest address the main thread's stack may grow to (its top less
/// `RLIMIT_STACK`, at most `MAIN_STACK_MAX`): a stack pointer below it is
/// on another stack (a coroutine's, a signal stack).
static MAIN_STACK_LOW: AtomicUsize = AtomicUsize::new(0);
/// The most `MAIN_STACK_LOW` lies below the top when the limit is larger
/// or unlimited (the kernel then maps nothing else within it either).
const MAIN_STACK_MAX: usize = 1 << 30;
/// The most memscope's own frames take between a record and the
/// exported call's entry: on a stack whose bounds are unknown, an entry
/// further above the recording frame is not believed.
const MAX_OWN_FRAMES: usize = 64 << 10;
/// Offsets of `stackblock` and `stackblock_size` in glibc's `struct
/// pthread` (0: unknown), learnt by `learn_stack_offsets`.
static STACKBLOCK: AtomicUsize = AtomicUsize::new(0);
static STACKBLOCK_SIZE: AtomicUsize = AtomicUsize::new(0);
/// The largest step between two frames the walk believes (1 MiB).
const MAX_FRAME: usize = 1 << 20;
/// The most a stack block may extend below the stack's low end (glibc's
/// guard area, at most a few pages by default; 16 MiB allows any sane one).
const MAX_GUARD: usize = 16 << 20;
/// How far into a thread descriptor `learn_stack_offsets` looks (at most:
/// never past the end of the thread's stack block).
const DESCRIPTOR_SCAN: usize = 4096;

extern "C" {
    /// glibc: the stack pointer at process start (above every frame of
    /// the main thread).
    static __libc_stack_end: *mut core::ffi::c_void;
}

/// At load, on the main thread: the main thread's stack bounds.
pub fn learn_at_load() {
    // SAFETY: pthread_self has no preconditions; __libc_stack_end is set
    // by the dynamic loader before any constructor runs; `lim` is written
    // by getrlimit.
    unsafe {
        MAIN_THREAD.store(libc::pthread_self() as usize, Relaxed);
        let top = __libc_stack_end as usize;
        let mut lim: libc::rlimit = core::mem::zeroed();
        let size = if libc::getrlimit(libc::RLIMIT_STACK, &mut lim) == 0 {
            usize::try_from(lim.rlim_cur)
                .unwrap_or(usize::MAX)
                .min(MAIN_STACK_MAX)
        } else {
            MAIN_STACK_MAX
        };
        MAIN_STACK_LOW.store(top.saturating_sub(size), Relaxed);
        MAIN_STACK_TOP.store(top, Relaxed);
    }
}

/// On a thread made by memscope (the maintenance thread), outside every
/// scope: finds where glibc keeps a thread's stack block in its
/// descriptor, from this thread's own stack as `pthread_getattr_np` gives
/// it. Only an unambiguous answer is kept.
pub fn learn_stack_offsets() {
    // SAFETY: attr is initialised by pthread_getattr_np before use and
    // destroyed after; the descriptor's first DESCRIPTOR_SCAN bytes are
    // readable (glibc's struct pthread is larger).
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut low: *mut core::ffi::c_void = core::ptr::null_mut();
        let mut size = 0usize;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got != 0 || size == 0 {
            return;
        }
        let top = low as usize + size;
        let desc = libc::pthread_self() as *const usize;
        // glibc puts the descriptor at the top of the stack block: read no
        // further than the block's end.
        let Some(room) = top.checked_sub(desc as usize) else {
            return;
        };
        let words = DESCRIPTOR_SCAN.min(room) / 8;
        let mut found = None;
        for i in 0..words {
            // The block starts at or a guard's length below the stack's
            // low end (a size word would pair with its block the other way
            // round).
            let block = desc.add(i).read_volatile();
            let low = low as usize;
            if block == 0 || block > low || low - block > MAX_GUARD {
                continue;
            }
            for j in 0..words {
                if j != i && desc.add(j).read_volatile() == top - block {
                    if found.is_some() {
                        return;
                    }
                    found = Some((i * 8, j * 8));
                }
            }
        }
        if let Some((b, s)) = found {
            STACKBLOCK.store(b, Relaxed);
            STACKBLOCK_SIZE.store(s, Relaxed);
        }
    }
}

/// The calling thread's own stack, `(low, top)`, or `(0, 0)` if unknown.
fn stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_self has no preconditions; the offsets were found
    // in this libc's descriptor layout.
    unsafe {
        let me = libc::pthread_self() as usize;
        if me == MAIN_THREAD.load(Relaxed) {
            return (MAIN_STACK_LOW.load(Relaxed), MAIN_STACK_TOP.load(Relaxed));
        }
        let (b, s) = (STACKBLOCK.load(Relaxed), STACKBLOCK_SIZE.load(Relaxed));
        if b == 0 {
            return (0, 0);
        }
        let block = ((me + b) as *const usize).read_volatile();
        let size = ((me + s) as *const usize).read_volatile();
        if block == 0 {
            (0, 0)
        } else {
            (block, block + size)
        }
    }
}

/// The return address of the thread's latest exported call (the call
/// site) and of its callers; how many were found. 0 when no export stored
/// its entry (memscope linked as a Rust allocator), or when the entry
/// stored is not one this call runs under: a signal handler's allocator
/// call in between stored its own, below this frame (counted as a dropped
/// record: the site is not known).
#[inline(never)]
#[cfg(target_arch = "x86_64")]
fn capture(out: &mut [u64; SITE_FRAMES]) -> u32 {
    let here: usize;
    // SAFETY: reads one register.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) here, options(nomem, nostack, preserves_flags)) };
    let st = tls::state();
    let (sp, fp) = (st.caller_sp.get(), st.caller_fp.get());
    if sp == 0 {
        return 0;
    }
    let (low, top) = stack_bounds();
    // On the thread's own stack, everything from here to its top is
    // mapped (the frames being run). Elsewhere (a coroutine's stack, a
    // signal stack) the bounds are unknown: the call's entry is believed
    // only as near above this frame as memscope's own frames reach, and
    // no caller is read.
    let own = top != 0 && (low..top).contains(&here);
    // The exported call's frame is above every frame it runs, this one's
    // included.
    let believed = sp > here
        && sp & 7 == 0
        && if own {
            sp.saturating_add(8) <= top
        } else {
            sp - here <= MAX_OWN_FRAMES
        };
    if !believed {
        count(Event::SitesDropped);
        return 0;
    }
    // SAFETY: `sp` is the entry stack pointer of a call still running on
    // this stack (checked above): the word there is its return address.
    out[0] = unsafe { *(sp as *const usize) } as u64;
    let mut n = 1;
    if !own {
        return 1;
    }
    // The caller's frames lie above the call's entry. A frame pointer is
    // 16-byte aligned (the SysV call pushes 8 bytes onto a 16-aligned
    // stack, the prologue 8 more): code without frame pointers leaves an
    // unrelated value in rbp, which this and the bounds stop at.
    let mut fp = fp;
    let mut low = sp;
    while n < SITE_FRAMES {
        let bounded = fp.checked_add(16).is_some_and(|end| end <= top);
        if fp <= low || fp & 15 != 0 || !bounded || fp - low > MAX_FRAME {
            break;
        }
        // SAFETY: `fp..fp + 16` lies on this thread's stack (see above).
        let (next, ret) = unsafe { (*(fp as *const usize), *(fp as *const usize).add(1)) };
        if ret == 0 {
            break;
        }
        out[n] = ret as u64;
        n += 1;
        low = fp;
        fp = next;
    }
    n as u32
}

#[cfg(not(target_arch = "x86_64"))]
fn capture(_: &mut [u64; SITE_FRAMES]) -> u32 {
    0
}

/// The push of a timed NORECLAIM scope (`thread::noreclaim_timing_starts`):
/// where it was pushed, kept until its pop.
pub fn scope_pushed() {
    let s = tls::bss();
    let mut frames = [0u64; SITE_FRAMES];
    let depth = capture(&mut frames);
    for (c, f) in s.scope_site.iter().zip(frames) {
        c.set(f);
    }
    s.scope_site_depth.set(depth);
}

/// The pop of a timed NORECLAIM scope that lasted `ns`.
pub fn scope_popped(ns: u64) {
    let s = tls::bss();
    let depth = s.scope_site_depth.replace(0);
    if depth == 0 {
        return;
    }
    let mut frames = [0u64; SITE_FRAMES];
    for (f, c) in frames.iter_mut().zip(&s.scope_site) {
        *f = c.get();
    }
    put(abi::SITE_SCOPE, &frames, depth, 1, ns, ns);
}

/// Of the NORECLAIM allocations the stats sample times, one in this many
/// on average has its site recorded: a record (the capture, the table)
/// costs about 190 instructions, a third of the timing itself. The
/// intervals are drawn at random (1 to 2 * SITE_SUBSAMPLE - 1), so that a
/// program whose calls come in a fixed pattern (every call timed, 16
/// sites in turn) has each of them recorded, not one.
pub const SITE_SUBSAMPLE: u32 = 16;

/// A call in NORECLAIM has its answer: a refusal (NULL) is recorded, and
/// one in `SITE_SUBSAMPLE` of the calls its stats sample timed (`timed`),
/// weighed by the sample period and that (an estimate). Called after the
/// call's timing ends, so that recording is not part of its latency.
/// In line, the count of skipped calls; the records out of line, so that
/// the caller saves no registers for them.
#[inline(always)]
pub fn noreclaim_call(size: usize, refused: bool, timed: bool) {
    if refused {
        record_refused(size);
    } else if timed {
        let s = tls::bss();
        let left = s.site_left.get();
        if left > 1 {
            s.site_left.set(left - 1);
        } else {
            sampled(size, left);
        }
    }
}

/// The interval's end (`left` 1: record) or a thread's first timed
/// allocation (0: draw only); then the next interval.
#[inline(never)]
fn sampled(size: usize, left: u32) {
    let s = tls::bss();
    if left == 1 {
        record_sampled(size);
    }
    let mut x = s.site_rng.get();
    if x == 0 {
        // Seeded from the thread's own block: threads differ.
        x = (s as *const tls::ThreadBss as usize >> 6) as u32 | 1;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s.site_rng.set(x);
    s.site_left.set(1 + x % (2 * SITE_SUBSAMPLE - 1));
}

#[cold]
#[inline(never)]
fn record_refused(size: usize) {
    record(abi::SITE_REFUSED, 1, size as u64, size as u64);
}

fn record_sampled(size: usize) {
    let weight = super::sample_period().saturating_mul(u64::from(SITE_SUBSAMPLE));
    record(
        abi::SITE_SAMPLED_ALLOC,
        weight,
        (size as u64).saturating_mul(weight),
        size as u64,
    );
}

/// Faults in the pages of slot `i`'s table (its owner may be a scoped
/// thread, which may not take a page fault).
pub fn prefault(h: &'static abi::Header, i: usize) {
    // SAFETY: the table lies inside the writable mapping.
    unsafe { crate::os::prefault_write(table(h, i) as *const SiteTable as *const u8, abi::SITE_TABLE_SIZE) };
}

/// The table of slot `i`.
fn table(h: &'static abi::Header, i: usize) -> &'static SiteTable {
    // SAFETY: the mapping holds SLOT_TOTAL tables at SITES_OFFSET.
    unsafe {
        &*((h as *const abi::Header as *const u8).add(abi::SITES_OFFSET + i * abi::SITE_TABLE_SIZE)
            as *const SiteTable)
    }
}

/// Records one event of `kind` at the caller's call site: `count` events
/// of `bytes` bytes in all, `max` the largest (a size or a duration).
pub fn record(kind: u32, count: u64, bytes: u64, max: u64) {
    let mut frames = [0u64; SITE_FRAMES];
    let depth = capture(&mut frames);
    put(kind, &frames, depth, count, bytes, max);
}

/// Records one event of `kind` at `site`, a return address the caller
/// kept (a lock call's: `stats::locks`), alone.
pub fn record_at(kind: u32, site: usize, count: u64, bytes: u64, max: u64) {
    let mut frames = [0u64; SITE_FRAMES];
    frames[0] = site as u64;
    put(kind, &frames, u32::from(site != 0), count, bytes, max);
}

/// Adds to the calling thread's table (or the shared one of threads
/// without a slot).
fn put(kind: u32, frames: &[u64; SITE_FRAMES], depth: u32, count: u64, bytes: u64, max: u64) {
    let Some(h) = segment::header() else { return };
    if depth == 0 {
        return;
    }
    let s = &tls::state().stats;
    if s.slot.get() != 0 {
        add(
            table(h, s.slot_index.get() + abi::SLOT_FIRST_THREAD),
            kind,
            frames,
            depth,
            count,
            bytes,
            max,
        );
    } else {
        shared(table(h, abi::SLOT_OVERFLOW), RECORD_SPINS, |t| {
            add(t, kind, frames, depth, count, bytes, max)
        });
    }
}

/// Runs `f` on a shared table under its try-lock; a busy one drops it.
///
/// `spins` bounds the wait: a recording thread (possibly scoped) tries a
/// few hundred times, an exiting thread folding its table far longer (it
/// waits only for another fold or record, a few microseconds each). A
/// spin makes no syscall.
fn shared(t: &SiteTable, spins: u32, f: impl FnOnce(&SiteTable)) {
    let mut tries = 0;
    while t.lock.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
        tries += 1;
        if tries >= spins {
            count(Event::SitesDropped);
            return;
        }
        core::hint::spin_loop();
    }
    f(t);
    t.lock.store(0, Release);
}

/// Spins a record on a shared table may wait (`shared`).
const RECORD_SPINS: u32 = 1 << 10;
/// Spins an exiting thread's fold may wait.
const FOLD_SPINS: u32 = 1 << 24;

fn add(t: &SiteTable, kind: u32, frames: &[u64; SITE_FRAMES], depth: u32, n: u64, bytes: u64, max: u64) {
    let seq = t.seq.load(Relaxed);
    t.seq.store(seq + 1, Relaxed);
    fence(Release);
    let clock = t.clock.load(Relaxed) + 1;
    t.clock.store(clock, Relaxed);
    let Some(e) = entry_for(t, kind, frames) else {
        // A sample, and every entry in reach is an exact count: kept.
        count(Event::SitesEvicted);
        t.seq.store(seq + 2, Release);
        return;
    };
    if e.kind.load(Relaxed) != kind || !same_frames(e, frames) {
        if e.kind.load(Relaxed) != 0 {
            // A full probe window: the least recent site goes, with its
            // counts (readers say so: `sites_evicted`).
            count(Event::SitesEvicted);
        }
        e.kind.store(kind, Relaxed);
        e.depth.store(depth, Relaxed);
        for (f, v) in e.frames.iter().zip(frames) {
            f.store(*v, Relaxed);
        }
        for f in [&e.count, &e.bytes, &e.max] {
            f.store(0, Relaxed);
        }
    }
    sat_add(&e.count, n);
    sat_add(&e.bytes, bytes);
    if max > e.max.load(Relaxed) {
        e.max.store(max, Relaxed);
    }
    e.last.store(clock, Relaxed);
    t.seq.store(seq + 2, Release);
}

fn sat_add(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).saturating_add(v), Relaxed);
}

fn same_frames(e: &Site, frames: &[u64; SITE_FRAMES]) -> bool {
    e.frames.iter().zip(frames).all(|(a, b)| a.load(Relaxed) == *b)
}

/// How many entries a lookup probes before evicting: all of them (an
/// entry is evicted only from a full table; with 8 of 32, a table
/// three-quarters full evicted samples while others lay empty). Linear
/// probing from the hash, so a site is usually found in one or two.
const PROBE: usize = SITE_ENTRIES;

/// Kinds whose entries are samples (estimates, timed scopes): evicted
/// before the exact kinds, and never in their place.
fn sampled_kind(kind: u32) -> bool {
    kind == abi::SITE_SAMPLED_ALLOC || kind == abi::SITE_SCOPE
}

/// The entry for (`kind`, `frames`): its own, else an empty one in the
/// probe window, else the window's least recently recorded sample, else
/// (for an exact kind only) its least recently recorded entry. None: a
/// sample with only exact entries in reach.
fn entry_for<'t>(t: &'t SiteTable, kind: u32, frames: &[u64; SITE_FRAMES]) -> Option<&'t Site> {
    let hash = frames
        .iter()
        .fold(u64::from(kind).wrapping_mul(0x9E37_79B9_7F4A_7C15), |h, f| {
            (h ^ f).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
    let start = (hash >> 32) as usize % SITE_ENTRIES;
    // Lower is evicted first: samples before exact counts, then the least
    // recent.
    let rank = |e: &Site| (!sampled_kind(e.kind.load(Relaxed)), e.last.load(Relaxed));
    let mut victim: Option<&Site> = None;
    for k in 0..PROBE {
        let e = &t.entries[(start + k) % SITE_ENTRIES];
        let ek = e.kind.load(Relaxed);
        if ek == kind && same_frames(e, frames) {
            return Some(e);
        }
        if ek == 0 {
            return Some(e);
        }
        if (sampled_kind(ek) || !sampled_kind(kind)) && victim.is_none_or(|v| rank(e) < rank(v)) {
            victim = Some(e);
        }
    }
    victim
}

/// The thread is exiting with slot `i`: its sites join the retired
/// table (if it is free at once; else they are dropped, counted) and its
/// table is emptied for the slot's next owner.
pub fn fold_at_exit(i: usize) {
    let Some(h) = segment::header() else { return };
    let mine = table(h, i);
    shared(table(h, abi::SLOT_RETIRED), FOLD_SPINS, |retired| {
        for e in &mine.entries {
            let kind = e.kind.load(Relaxed);
            if kind == 0 {
                continue;
            }
            let mut frames = [0u64; SITE_FRAMES];
            for (f, v) in frames.iter_mut().zip(&e.frames) {
                *f = v.load(Relaxed);
            }
            let (n, bytes, max) = (e.count.load(Relaxed), e.bytes.load(Relaxed), e.max.load(Relaxed));
            add(retired, kind, &frames, e.depth.load(Relaxed), n, bytes, max);
        }
    });
    let seq = mine.seq.load(Relaxed);
    mine.seq.store(seq + 1, Relaxed);
    fence(Release);
    for e in &mine.entries {
        e.kind.store(0, Relaxed);
    }
    mine.clock.store(0, Relaxed);
    mine.seq.store(seq + 2, Release);
}
