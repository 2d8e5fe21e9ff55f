//! What threads do while they hold program locks (ABI 1.6 `LockStats`,
//! one block per slot after the call-site tables): sections entered and
//! the ones that allocated, the allocations and frees made inside them,
//! their sizes, refusals and timed latencies, and their call sites
//! (`SITE_LOCK_ALLOC`; `SITE_LOCK_TAKEN` for the lock call that began a
//! section which allocated). `scope::lock` says when a section begins and
//! ends; the entry points' slow path reports the calls made inside.
//!
//! A thread with a slot of its own writes its block with plain stores (one
//! writer; readers take each counter as it is); a thread without one (it
//! overflowed, or has exited) adds to its aggregate's block atomically.
//! An exiting thread's block is folded into the retired one and cleared.
//!
//! Rule: plain TLS loads and stores and stores into pre-faulted segment
//! pages: no syscall, lock or allocation, so NORECLAIM sections count too.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use memscope_abi::{self as abi, LockStats};

use super::{segment, sites, thread};
use crate::base::tls;

/// Block `i` (the block of slot `i`).
fn block(h: &'static abi::Header, i: usize) -> &'static LockStats {
    // SAFETY: the mapping holds SLOT_TOTAL blocks at LOCKS_OFFSET.
    unsafe {
        &*((h as *const abi::Header as *const u8).add(abi::LOCKS_OFFSET + i * abi::LOCK_STATS_SIZE)
            as *const LockStats)
    }
}

/// The calling thread's block and whether it is shared (atomic adds).
#[inline]
fn mine() -> Option<(&'static LockStats, bool)> {
    let h = segment::header()?;
    let (i, shared) = thread::slot_of(&tls::state().stats)?;
    Some((block(h, i), shared))
}

#[inline(always)]
fn add(c: &AtomicU64, v: u64, shared: bool) {
    if shared {
        c.fetch_add(v, Relaxed);
    } else {
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    }
}

/// `add`, saturating: an impossible request (an overflowing size, counted
/// as `usize::MAX` bytes) must not wrap a byte total.
#[inline(always)]
fn add_saturating(c: &AtomicU64, v: u64, shared: bool) {
    if shared {
        let _ = c.fetch_update(Relaxed, Relaxed, |x| Some(x.saturating_add(v)));
    } else {
        c.store(c.load(Relaxed).saturating_add(v), Relaxed);
    }
}

#[inline(always)]
fn max(c: &AtomicU64, v: u64, shared: bool) {
    if shared {
        c.fetch_max(v, Relaxed);
    } else if v > c.load(Relaxed) {
        c.store(v, Relaxed);
    }
}

/// A section begins at the lock call returning to `site`, in the cases
/// `memscope_abi::gate::enter_ready` leaves to memscope: the thread's first section, one
/// after its numbers moved to another block (its exit, a fork), or one of
/// a thread without a block of its own. The block is faulted in the first
/// time, so that the section's own writes, perhaps inside NORECLAIM, take
/// no page fault.
#[cold]
pub fn section_entered(site: usize) {
    let b = tls::bss();
    b.lock.site.set(site);
    b.lock.allocs_at_enter.set(b.lock.allocs.get());
    let Some(h) = segment::header() else { return };
    let Some((i, shared)) = thread::slot_of(&tls::state().stats) else {
        return;
    };
    let blk = block(h, i);
    let addr = blk as *const LockStats as usize | usize::from(shared);
    if b.lock.block.get() != addr {
        // SAFETY: the block lies inside the writable mapping.
        unsafe { crate::os::prefault_write(blk as *const LockStats as *const u8, abi::LOCK_STATS_SIZE) };
        b.lock.block.set(addr);
    }
    add(&blk.sections, 1, shared);
}

/// An allocation of `size` bytes inside a section returned (`refused`: it
/// returned NULL); `ns` is its latency if the stats sample timed it.
/// Called after the call's timing ends, so that this is not part of it.
/// The section's first allocation counts the section as allocating, and
/// each is added to the lock call's site as it happens: a process that
/// dies inside the section (on a refused request) still names its lock.
#[inline(never)]
pub fn allocated(size: usize, refused: bool, ns: Option<u64>) {
    let b = tls::bss();
    let first = b.lock.allocs.get() == b.lock.allocs_at_enter.get();
    b.lock.allocs.set(b.lock.allocs.get() + 1);
    if let Some((blk, shared)) = mine() {
        if first {
            add(&blk.sections_allocating, 1, shared);
        }
        add(&blk.allocs, 1, shared);
        add_saturating(&blk.alloc_bytes, size as u64, shared);
        add(&blk.sizes[abi::lock_size_bucket(size as u64)], 1, shared);
        max(&blk.largest, size as u64, shared);
        if refused {
            add(&blk.refused, 1, shared);
            blk.refused_last_bytes.store(size as u64, Relaxed);
        }
        if let Some(ns) = ns {
            if shared {
                thread::record_shared_in(&blk.latency, abi::bucket_of(ns), ns);
            } else {
                thread::record_owned(&blk.latency, abi::bucket_of(ns), ns);
            }
        }
    }
    sites::record(abi::SITE_LOCK_ALLOC, 1, size as u64, size as u64);
    sites::record_at(
        abi::SITE_LOCK_TAKEN,
        b.lock.site.get(),
        u64::from(first),
        size as u64,
        size as u64,
    );
}

/// A free inside a section.
#[inline(never)]
pub fn freed() {
    if let Some((blk, shared)) = mine() {
        add(&blk.frees, 1, shared);
    }
}

/// The thread is exiting with slot `i`: its block joins the retired one
/// and is cleared for the slot's next owner.
pub fn fold_at_exit(i: usize) {
    let Some(h) = segment::header() else { return };
    let (mine, retired) = (block(h, i), block(h, abi::SLOT_RETIRED));
    // The exiting thread's later sections go to the retired block. A
    // thread that never entered a section never wrote its block: nothing
    // to fold, and its pages stay untouched.
    if tls::bss().lock.block.replace(0) != mine as *const LockStats as usize {
        return;
    }
    let counters = |b: &'static LockStats| {
        [
            &b.sections,
            &b.sections_allocating,
            &b.allocs,
            &b.frees,
            &b.alloc_bytes,
            &b.refused,
        ]
    };
    for (m, r) in counters(mine).into_iter().zip(counters(retired)) {
        let v = m.swap(0, Relaxed);
        if v != 0 {
            add_saturating(r, v, true);
        }
    }
    for (m, r) in mine.sizes.iter().zip(&retired.sizes) {
        let v = m.swap(0, Relaxed);
        if v != 0 {
            r.fetch_add(v, Relaxed);
        }
    }
    retired.largest.fetch_max(mine.largest.swap(0, Relaxed), Relaxed);
    let last = mine.refused_last_bytes.swap(0, Relaxed);
    if last != 0 {
        retired.refused_last_bytes.store(last, Relaxed);
    }
    thread::merge_and_clear(&mine.latency, &retired.latency);
}

/// Writes the header's fields for the blocks (the segment's creation).
pub fn describe(h: &abi::Header, lock_scope: u32) {
    h.locks_offset.store(abi::LOCKS_OFFSET as u64, Relaxed);
    h.lock_stats_size.store(abi::LOCK_STATS_SIZE as u32, Relaxed);
    h.lock_scope.store(lock_scope, Relaxed);
}
