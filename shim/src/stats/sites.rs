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
//! top of this thread's stack (`stack_top`): a program built without frame
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

/// At load, on the main thread: the main thread's stack top.
pub fn learn_at_load() {
    // SAFETY: pthread_self has no preconditions; __libc_stack_end is set
    // by the dynamic loader before any constructor runs.
    unsafe {
        MAIN_THREAD.store(libc::pthread_self() as usize, Relaxed);
        MAIN_STACK_TOP.store(__libc_stack_end as usize, Relaxed);
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

/// The top of the calling thread's stack, or 0 if unknown.
fn stack_top() -> usize {
    // SAFETY: pthread_self has no preconditions; the offsets were found
    // in this libc's descriptor layout.
    unsafe {
        let me = libc::pthread_self() as usize;
        if me == MAIN_THREAD.load(Relaxed) {
            return MAIN_STACK_TOP.load(Relaxed);
        }
        let (b, s) = (STACKBLOCK.load(Relaxed), STACKBLOCK_SIZE.load(Relaxed));
        if b == 0 {
            return 0;
        }
        let block = ((me + b) as *const usize).read_volatile();
        let size = ((me + s) as *const usize).read_volatile();
        if block == 0 {
            0
        } else {
            block + size
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
    let top = stack_top();
    // The exported call's frame is above every frame it runs, this one's
    // included, and (where known) below the stack's top.
    if sp <= here || sp & 7 != 0 || (top != 0 && sp.saturating_add(8) > top) {
        count(Event::SitesDropped);
        return 0;
    }
    // SAFETY: `sp` is the entry stack pointer of a call still running on
    // this thread (checked above): the word there is its return address.
    out[0] = unsafe { *(sp as *const usize) } as u64;
    let mut n = 1;
    if top == 0 {
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

/// Of the NORECLAIM allocations the stats sample times, the one in this
/// many whose site is recorded: a record (the walk, the table) costs
/// about what the timing itself does, and one in `SITE_SUBSAMPLE` keeps
/// it near 5 % of a timed call.
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
        let skipped = s.site_skipped.get() + 1;
        if skipped < SITE_SUBSAMPLE {
            s.site_skipped.set(skipped);
        } else {
            s.site_skipped.set(0);
            record_sampled(size);
        }
    }
}

#[cold]
#[inline(never)]
fn record_refused(size: usize) {
    record(abi::SITE_REFUSED, 1, size as u64, size as u64);
}

#[inline(never)]
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
            table(h, s.slot_index.get()),
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
    let e = entry_for(t, kind, frames);
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

/// How many entries a lookup probes before evicting.
const PROBE: usize = 8;

/// The entry for (`kind`, `frames`): its own, else an empty one in the
/// probe window, else the window's least recently recorded.
fn entry_for<'t>(t: &'t SiteTable, kind: u32, frames: &[u64; SITE_FRAMES]) -> &'t Site {
    let hash = frames
        .iter()
        .fold(u64::from(kind).wrapping_mul(0x9E37_79B9_7F4A_7C15), |h, f| {
            (h ^ f).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
    let start = (hash >> 32) as usize % SITE_ENTRIES;
    let mut victim = &t.entries[start];
    for k in 0..PROBE {
        let e = &t.entries[(start + k) % SITE_ENTRIES];
        let ek = e.kind.load(Relaxed);
        if ek == kind && same_frames(e, frames) {
            return e;
        }
        if ek == 0 {
            return e;
        }
        if e.last.load(Relaxed) < victim.last.load(Relaxed) {
            victim = e;
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
