//! The lock gate: the per-thread state that libmemscope.so and
//! libmemscope_locks.so share inside one process, and the code both run
//! on it. Not part of the stats segment.
//!
//! A lock section (docs/LOCKS.md) begins when a thread takes its first
//! program lock and ends when it releases its last. The locks library
//! interposes every pthread lock call; calling into memscope for each cost
//! the uncontended lock+unlock pair 8.8 ns (docs/DECISIONS.md, D64). So
//! memscope publishes where its per-thread blocks lie (`GateInfo`: offsets
//! from the thread pointer, identical in every thread since the library
//! sits in static TLS) and the locks library runs the usual case itself,
//! with the functions below: it tracks the lock (`track`, `untrack`), and
//! a section that needs nothing set up (`enter_ready`, `end`) is a few
//! stores. Everything else (a thread's first call, an exited thread,
//! NORECLAIM set-up, the first section of a thread, leaving NORECLAIM)
//! goes to memscope's `memscope_lib_lock_enter`/`memscope_lib_lock_leave`,
//! which run the same functions after their own work.
//!
//! Rules: plain loads and stores on the calling thread's own blocks, in
//! the order the comments give (a signal handler may take a lock between
//! any two of them; `compiler_fence`s keep the order); no allocation, no
//! lock, no syscall, no panic.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, AtomicIsize, AtomicU32, AtomicU64, AtomicU8, Ordering::*};

use crate::{LockStats, OPS};

/// `GateInfo::version` of this layout: a locks library that finds another
/// passes every lock through.
pub const GATE_VERSION: u32 = 1;

/// Program locks a thread's section tracks by address: a release counts
/// only for a lock whose acquisition counted, so a release that is not
/// the program's (jemalloc's tail call to `pthread_mutex_unlock`, whose
/// return address is its caller's) cannot end a section. Deeper nesting is
/// counted, not tracked.
pub const LOCK_TRACK: usize = 16;

// The flag word (memscope's `ThreadState::flags`): the scope flags
// (`MEMSCOPE_*`) in the low bits, the thread's state on top.

/// Every scope flag the API knows (`MEMSCOPE_NORECLAIM` .. `MEMSCOPE_NOIO`).
pub const SCOPE_FLAGS: u32 = 0x1f;
pub const NORECLAIM: u32 = 0x01;
/// Set while the thread holds at least one program lock: its countdowns
/// are biased as in a scope, so that the section's calls take memscope's
/// slow path and are counted there. Never a scope flag.
pub const IN_LOCK: u32 = 1 << 28;
/// Set by the thread's exit hook and kept for the rest of its life.
pub const THREAD_EXITED: u32 = 1 << 30;
/// Set in every new thread's image until memscope has seen the thread.
pub const THREAD_UNSEEN: u32 = 1 << 31;

/// What a scope subtracts from every countdown: far above any countdown,
/// so a biased countdown stays negative however many calls it counts.
pub const SCOPE_BIAS: u64 = 1 << 56;
/// The count below the bias.
pub const COUNT_BITS: u64 = SCOPE_BIAS - 1;

/// A thread's lock-section state, in memscope's per-thread block.
#[repr(C)]
pub struct LockGate {
    /// The program locks the thread holds: the first `LOCK_TRACK` by
    /// address (`tracked` of them), and how many more beyond those.
    pub ptrs: [Cell<usize>; LOCK_TRACK],
    pub tracked: Cell<u32>,
    pub untracked: Cell<u32>,
    /// Non-zero while the thread's lock calls are not the program's
    /// (memscope's fork handlers).
    pub ignore: Cell<u32>,
    /// While a section lasts, the scope flags pushes and pops have set
    /// (the flag word holds those and the section's own).
    pub explicit: Cell<u32>,
    /// The thread's allocations inside sections so far, and their count
    /// when the current section began (the section allocated if they
    /// differ).
    pub allocs: Cell<u64>,
    pub allocs_at_enter: Cell<u64>,
    /// The return address of the lock call that began the section.
    pub site: Cell<usize>,
    /// The address of the thread's `LockStats` block, faulted in (bit 0
    /// set if an aggregate's, written with atomic adds), or 0.
    pub block: Cell<usize>,
}

impl LockGate {
    pub const fn new() -> LockGate {
        LockGate {
            ptrs: [const { Cell::new(0) }; LOCK_TRACK],
            tracked: Cell::new(0),
            untracked: Cell::new(0),
            ignore: Cell::new(0),
            explicit: Cell::new(0),
            allocs: Cell::new(0),
            allocs_at_enter: Cell::new(0),
            site: Cell::new(0),
            block: Cell::new(0),
        }
    }
}

impl Default for LockGate {
    fn default() -> LockGate {
        LockGate::new()
    }
}

/// What memscope publishes for the locks library
/// (`memscope_lib_lock_gate`): where the calling thread's flag word,
/// countdowns and `LockGate` lie, as offsets from the thread pointer
/// (`%fs:0`), and the section mode.
#[repr(C)]
pub struct GateInfo {
    pub version: AtomicU32,
    /// `size_of::<GateInfo>()`.
    pub size: AtomicU32,
    pub flags_at: AtomicIsize,
    /// `OPS` countdowns, 8 bytes apart.
    pub countdowns_at: AtomicIsize,
    pub gate_at: AtomicIsize,
    /// `MEMSCOPE_LOCK_SCOPE`: the flags a section enters (0: `report`).
    pub mode: *const AtomicU8,
}

// SAFETY: `mode` points at a static atomic; everything else is atomic.
unsafe impl Sync for GateInfo {}

/// One thread's blocks, as the gate sees them (memscope builds it from its
/// own TLS; the locks library from the thread pointer and the offsets of
/// `GateInfo`, copied once).
pub struct Thread<'a> {
    pub flags: &'a Cell<u32>,
    pub countdowns: &'a [Cell<u64>; OPS],
    pub gate: &'a LockGate,
}

/// A countdown biased (in a scope or section): every call takes the slow
/// path.
#[inline(always)]
pub fn bias(cd: &Cell<u64>) {
    cd.set((cd.get() & COUNT_BITS).wrapping_sub(SCOPE_BIAS));
}

/// A countdown unbiased: it counts again.
#[inline(always)]
pub fn unbias(cd: &Cell<u64>) {
    cd.set(cd.get() & COUNT_BITS);
}

/// What `track` found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tracked {
    /// Not the program's (`LockGate::ignore`): nothing counted.
    Ignored,
    /// The thread's first lock: a section begins.
    First,
    /// Another lock held already: nothing to do if a section is on.
    Nested,
}

/// The thread took the program lock `lock`: it is tracked.
#[inline(always)]
pub fn track(g: &LockGate, lock: usize) -> Tracked {
    if g.ignore.get() != 0 {
        return Tracked::Ignored;
    }
    let (t, u) = (g.tracked.get(), g.untracked.get());
    // The count first, then the slot: a signal handler that takes a lock
    // in between uses the slot above.
    if let Some(slot) = g.ptrs.get(t as usize) {
        g.tracked.set(t + 1);
        compiler_fence(SeqCst);
        slot.set(lock);
    } else {
        g.untracked.set(u.wrapping_add(1));
    }
    compiler_fence(SeqCst);
    first_or_nested(t, u)
}

/// A lock counted with `t` tracked and `u` untracked held before it.
#[inline(always)]
fn first_or_nested(t: u32, u: u32) -> Tracked {
    if t == 0 && u == 0 {
        Tracked::First
    } else {
        Tracked::Nested
    }
}

/// A release counted by number only (`Release::by_address` false) failed:
/// the lock is still held, and counted again, by number. Returns what
/// `track` would have.
#[inline(always)]
pub fn recount(g: &LockGate) -> Tracked {
    let (t, u) = (g.tracked.get(), g.untracked.get());
    g.untracked.set(u.wrapping_add(1));
    compiler_fence(SeqCst);
    first_or_nested(t, u)
}

/// A counted release (`untrack`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Release {
    /// The thread's last lock: the section ends.
    pub last: bool,
    /// Found by address: a lock the thread was seen to take, so its own
    /// (else counted by number, beyond the tracked locks).
    pub by_address: bool,
}

/// The thread is about to release the program lock `lock`. None if its
/// acquisition was not counted (taken before counting began, not held by
/// the thread, or the release is not the program's): nothing changes.
#[inline(always)]
pub fn untrack(g: &LockGate, lock: usize) -> Option<Release> {
    if g.ignore.get() != 0 {
        return None;
    }
    let t = (g.tracked.get() as usize).min(LOCK_TRACK);
    // The latest first: locks are mostly released in reverse order. (A
    // plain loop: the locks library runs this before a jump to the real
    // release, and it needs no register kept.)
    let mut i = t;
    let found = loop {
        if i == 0 {
            break None;
        }
        i -= 1;
        if g.ptrs[i].get() == lock {
            break Some(i);
        }
    };
    let by_address = match found {
        Some(i) => {
            // The last slot's lock takes this one's place, then the count
            // drops (a handler in between finds both slots alike).
            g.ptrs[i].set(g.ptrs[t - 1].get());
            compiler_fence(SeqCst);
            g.tracked.set(t as u32 - 1);
            true
        }
        None if g.untracked.get() > 0 => {
            g.untracked.set(g.untracked.get() - 1);
            false
        }
        None => return None,
    };
    compiler_fence(SeqCst);
    Some(Release {
        last: g.tracked.get() == 0 && g.untracked.get() == 0,
        by_address,
    })
}

/// A section begins on a thread with flag word `cur`, entering the scope
/// flags `add` (not in `cur`), which the caller has set up: true if done,
/// a few stores (the thread seen and alive, no section on, its block
/// faulted in); false if memscope must do it (nothing changed then).
#[inline(always)]
pub fn enter_ready(t: &Thread<'_>, cur: u32, add: u32, site: usize) -> bool {
    let g = t.gate;
    let a = g.block.get();
    if cur & (THREAD_UNSEEN | THREAD_EXITED | IN_LOCK) != 0 || a == 0 || a & 1 != 0 {
        return false;
    }
    g.site.set(site);
    g.allocs_at_enter.set(g.allocs.get());
    // SAFETY: the thread's own block, faulted in, in the live mapping
    // (memscope clears `block` before the block changes hands).
    let blk = unsafe { &*(a as *const LockStats) };
    add_owned(&blk.sections, 1);
    begin(t, cur, add);
    true
}

/// The flag word takes the section's flags, the countdowns their bias.
#[inline(always)]
pub fn begin(t: &Thread<'_>, cur: u32, add: u32) {
    t.gate.explicit.set(cur & SCOPE_FLAGS);
    compiler_fence(SeqCst);
    t.flags.set(cur | add | IN_LOCK);
    // After the flags, as a push's: idempotent.
    compiler_fence(SeqCst);
    for cd in t.countdowns {
        bias(cd);
    }
}

/// A lock taken while others are held (`Tracked::Nested`): true if
/// memscope must begin the section (none is on: a signal handler that
/// landed between the interrupted thread's count of its first lock and
/// its flag word, or a thread whose exit hook ran while it held locks).
/// A section whose flag word is set but whose countdowns are not biased
/// yet (a handler that landed inside `begin`) is finished here, so that
/// the handler's calls under its lock take the slow path too.
#[inline(always)]
pub fn nested_needs_enter(t: &Thread<'_>) -> bool {
    if t.flags.get() & IN_LOCK == 0 {
        return true;
    }
    for cd in t.countdowns {
        if (cd.get() as i64) >= 0 {
            bias(cd);
        }
    }
    false
}

/// True if ending the section now leaves NORECLAIM (the pushes do not
/// hold it): memscope must end it (it hands the thread's lists back).
#[inline(always)]
pub fn end_leaves_noreclaim(t: &Thread<'_>) -> bool {
    t.flags.get() & NORECLAIM != 0 && t.gate.explicit.get() & NORECLAIM == 0
}

/// The section ends: the flag word goes back to the pushes' flags. Returns
/// the flag word before and after, or None if no section was on.
///
/// The flag word first, then the countdowns: a signal handler that lands
/// in between and takes a lock finds no section on and begins its own
/// (biased already, so nothing it calls escapes the count); the other
/// order left a window where the handler saw `IN_LOCK`, began nothing,
/// and allocated on unbiased countdowns, outside the section's scope.
#[inline(always)]
pub fn end(t: &Thread<'_>) -> Option<(u32, u32)> {
    let cur = t.flags.get();
    if cur & IN_LOCK == 0 {
        return None;
    }
    let new = t.gate.explicit.get() | (cur & THREAD_EXITED);
    t.flags.set(new);
    compiler_fence(SeqCst);
    if new == 0 {
        for cd in t.countdowns {
            unbias(cd);
        }
        compiler_fence(SeqCst);
    }
    Some((cur, new))
}

/// Adds to a counter only this thread writes.
#[inline(always)]
pub fn add_owned(c: &AtomicU64, v: u64) {
    c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_locks_are_tracked_and_released_in_any_order() {
        let g = LockGate::new();
        assert_eq!(track(&g, 1), Tracked::First);
        assert_eq!(track(&g, 2), Tracked::Nested);
        assert_eq!(track(&g, 3), Tracked::Nested);
        let (inner, last) = (
            Release {
                last: false,
                by_address: true,
            },
            Release {
                last: true,
                by_address: true,
            },
        );
        assert_eq!(untrack(&g, 9), None);
        assert_eq!(untrack(&g, 1), Some(inner));
        assert_eq!(untrack(&g, 3), Some(inner));
        assert_eq!(untrack(&g, 2), Some(last));
        assert_eq!(untrack(&g, 2), None);
    }

    #[test]
    fn locks_beyond_the_tracked_ones_are_counted() {
        let g = LockGate::new();
        for l in 0..LOCK_TRACK + 3 {
            track(&g, l + 1);
        }
        assert_eq!(g.tracked.get() as usize, LOCK_TRACK);
        assert_eq!(g.untracked.get(), 3);
        // Untracked releases count against the untracked ones first.
        for _ in 0..3 {
            let r = untrack(&g, 1000);
            assert_eq!(r.map(|r| (r.last, r.by_address)), Some((false, false)));
        }
        assert_eq!(untrack(&g, 1000), None);
        for l in (0..LOCK_TRACK).rev() {
            let r = untrack(&g, l + 1);
            assert_eq!(r.map(|r| (r.last, r.by_address)), Some((l == 0, true)));
        }
    }

    #[test]
    fn a_failed_release_by_number_is_counted_by_number_again() {
        let g = LockGate::new();
        for l in 0..LOCK_TRACK + 1 {
            track(&g, l + 1);
        }
        // The first tracked lock released: a slot frees up.
        assert!(untrack(&g, 1).is_some_and(|r| r.by_address));
        // A release of a lock the thread does not hold, counted by number
        // (the one beyond the tracked), fails: counted again by number,
        // not tracked by its address in the free slot.
        assert!(untrack(&g, 999).is_some_and(|r| !r.by_address));
        assert_eq!(recount(&g), Tracked::Nested);
        assert_eq!((g.tracked.get() as usize, g.untracked.get()), (LOCK_TRACK - 1, 1));
        for l in 1..LOCK_TRACK {
            assert!(untrack(&g, l + 1).is_some_and(|r| !r.last));
        }
        assert!(untrack(&g, 17).is_some_and(|r| r.last && !r.by_address));
    }

    #[test]
    fn ignored_calls_count_nothing() {
        let g = LockGate::new();
        g.ignore.set(1);
        assert_eq!(track(&g, 1), Tracked::Ignored);
        assert_eq!(untrack(&g, 1), None);
        assert_eq!(g.tracked.get(), 0);
    }

    #[test]
    fn a_section_biases_and_restores() {
        let flags = Cell::new(0);
        let countdowns = [const { Cell::new(5) }; OPS];
        let g = LockGate::new();
        let stats: LockStats = unsafe { core::mem::zeroed() };
        let t = Thread {
            flags: &flags,
            countdowns: &countdowns,
            gate: &g,
        };
        // No block yet: memscope's work.
        assert!(!enter_ready(&t, 0, 0, 7));
        g.block.set(&stats as *const LockStats as usize);
        assert!(enter_ready(&t, 0, 0, 7));
        assert_eq!(flags.get(), IN_LOCK);
        assert!(countdowns.iter().all(|c| (c.get() as i64) < 0));
        assert_eq!(stats.sections.load(Relaxed), 1);
        assert_eq!(g.site.get(), 7);
        // A section is on: not twice.
        assert!(!enter_ready(&t, flags.get(), 0, 8));
        assert!(!end_leaves_noreclaim(&t));
        assert_eq!(end(&t), Some((IN_LOCK, 0)));
        assert!(countdowns.iter().all(|c| c.get() == 5));
        assert_eq!(end(&t), None);
    }

    #[test]
    fn a_section_over_an_explicit_scope_keeps_it() {
        let flags = Cell::new(NORECLAIM);
        let countdowns = [const { Cell::new(5u64.wrapping_sub(SCOPE_BIAS)) }; OPS];
        let g = LockGate::new();
        let stats: LockStats = unsafe { core::mem::zeroed() };
        g.block.set(&stats as *const LockStats as usize);
        let t = Thread {
            flags: &flags,
            countdowns: &countdowns,
            gate: &g,
        };
        assert!(enter_ready(&t, NORECLAIM, 0, 1));
        assert!(!end_leaves_noreclaim(&t));
        assert_eq!(end(&t), Some((NORECLAIM | IN_LOCK, NORECLAIM)));
        assert!(countdowns.iter().all(|c| (c.get() as i64) < 0));
    }
}
