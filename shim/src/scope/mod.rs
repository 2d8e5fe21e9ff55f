//! Per-thread allocation context scopes: `push` ORs flags in and returns
//! the flags in force before, `pop` restores them, as the kernel's
//! `memalloc_*_save()`/`restore()` do.
//!
//! Hot path: after a thread's first NORECLAIM push, push and pop are a few
//! loads and stores on the thread's own TLS block: no allocation, no lock,
//! no syscall, async-signal-safe. Pops are checked against a small ring of
//! the values pushes returned; a mismatch is counted and reported.
//!
//! Tier 5. Owns the scope word's push and pop (here) and the life of
//! threads and the process (`init`: load, fork, a thread's first call and
//! its exit, which drains its lists). May call: `front`, `pool`, `stats`,
//! `base`, `os`; `init` comes before this file, `lock` (lock sections)
//! after it.

pub(crate) mod init;
pub mod lock;

use core::sync::atomic::{compiler_fence, Ordering, Ordering::Relaxed};

use crate::base::counters::{count, Event};
use crate::base::{log, mailbox, tls};
use crate::pool;

pub use crate::base::tls::{ALL, NOFAIL, NOFS, NOIO, NORECLAIM, NOWARN};

/// Enters a scope on the calling thread. See `memscope_push` in the header.
///
/// The usual case runs without a call (so without saving registers); a
/// new thread, or a scope that needs the pool set up first, takes
/// `push_slow` as a tail call.
#[inline]
pub fn push(flags: u32) -> u32 {
    let st = tls::state();
    let cur = st.flags.get();
    let add = flags & ALL;
    // (A lock section's pushes go the slow way too: `lock`.)
    if cur & (tls::THREAD_UNSEEN | tls::IN_LOCK) != 0 || needs_setup(st, cur, add) {
        return push_slow(flags);
    }
    record_push(st, cur, add)
}

/// True if entering `add` on top of `cur` first needs setting up (or, for
/// NORECLAIM, timing: see `record_timed_push`).
#[inline(always)]
fn needs_setup(st: &tls::ThreadState, cur: u32, add: u32) -> bool {
    cur & NORECLAIM == 0
        && (add & NORECLAIM != 0 && !noreclaim_ready(st) || add & NOFAIL != 0 && !pool::is_ready())
}

#[cold]
#[inline(never)]
fn push_slow(flags: u32) -> u32 {
    let st = tls::state();
    // Setting up may start a thread, whose glibc calls the exports: the
    // push's own site is kept for its timing (`stats::sites`).
    let caller = st.caller();
    let mut cur = st.flags.get();
    if cur & tls::THREAD_UNSEEN != 0 {
        cur = init::thread_first_call();
    }
    let add = flags & ALL;
    if cur & tls::IN_LOCK != 0 {
        if add & !cur & NORECLAIM != 0 {
            if st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed() {
                enter_noreclaim(st);
            }
        } else if add & NOFAIL != 0 && !pool::is_ready() {
            pool::ensure_process_pool();
        }
        st.set_caller(caller);
        return push_in_section(st, cur, add);
    }
    if cur & NORECLAIM == 0 {
        if add & NORECLAIM != 0 {
            // Not again after a failed start of the maintenance thread:
            // a set-up thread's push makes no syscall (a thread's first
            // NORECLAIM push, or a new thread, tries the start again).
            if st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed() {
                enter_noreclaim(st);
                st.set_caller(caller);
            }
            if st.noreclaim_set_up.get() != 0 && st.noreclaim_fast.load(Relaxed) == 0 {
                // Set up, and timing armed (or the thread's first scope):
                // this scope is timed (see `stats::thread`'s scope durations).
                st.noreclaim_fast.store(1, Relaxed);
                return record_timed_push(st, cur, add);
            }
        } else if add & NOFAIL != 0 && !pool::is_ready() {
            // The reserve lives beside the pool; made outside NORECLAIM only.
            pool::ensure_process_pool();
        }
    }
    st.set_caller(caller);
    record_push(st, cur, add)
}

/// A push whose scope is timed: its ring entry carries `SCOPE_TIMED`, so
/// that the matching pop, finding it differ from the value it is given,
/// takes `pop_mismatched`, which records the duration. The usual pop pays
/// nothing for timing. (A scope deeper than the ring is not timed.)
fn record_timed_push(st: &tls::ThreadState, cur: u32, add: u32) -> u32 {
    let depth = st.depth.get() as usize;
    let ret = record_push(st, cur, add);
    if let Some(slot) = st.ring.get(depth) {
        slot.set(cur | tls::SCOPE_TIMED);
        crate::stats::thread::noreclaim_timing_starts(&st.stats);
    }
    ret
}

#[inline(always)]
fn record_push(st: &tls::ThreadState, cur: u32, add: u32) -> u32 {
    ring_push(st, cur);
    let new = cur | add;
    st.flags.set(new);
    if new != 0 {
        // After the flags: a signal handler between the two stores sees
        // the scope without the bias and allocates as if before the push.
        // The bias is idempotent, so a handler that pushes here too
        // leaves the words as this store does.
        compiler_fence(Ordering::SeqCst);
        crate::stats::thread::bias(&st.stats);
    }
    cur
}

/// Leaves a scope: restores `saved`, the value the matching push returned.
/// A pop that matches no push is counted and reported, and never turns a
/// flag on. Like `push`, the usual case makes no call.
#[inline]
pub fn pop(saved: u32) {
    let st = tls::state();
    let cur = st.flags.get();
    let depth = st.depth.get();
    if depth == 0 || cur & (tls::THREAD_UNSEEN | tls::IN_LOCK) != 0 {
        return pop_unusual(saved, cur, depth);
    }
    let top = depth - 1;
    if let Some(expected) = st.ring.get(top as usize).map(|s| s.get()) {
        if expected != saved {
            return pop_mismatched(saved, expected);
        }
    }
    restore(st, saved, cur, top)
}

#[inline(always)]
fn restore(st: &tls::ThreadState, saved: u32, cur: u32, top: u32) {
    // An exited thread (a scope in a key destructor) stays marked.
    let new = (saved & cur & ALL) | (cur & tls::THREAD_EXITED);
    if new == 0 {
        // Before the flags, for the same reason as in `record_push`: a
        // handler between the two sees the scope gone. (One that pushes
        // there leaves the words biased with no scope; the slow path
        // mends that on the next call.)
        crate::stats::thread::unbias(&st.stats);
        compiler_fence(Ordering::SeqCst);
    }
    st.flags.set(new);
    compiler_fence(Ordering::SeqCst);
    st.depth.set(top);
    left_noreclaim(cur, new);
}

/// A pop with no push to match, or inside a lock section (`lock`).
#[cold]
#[inline(never)]
fn pop_unusual(saved: u32, cur: u32, depth: u32) {
    if depth == 0 || cur & tls::THREAD_UNSEEN != 0 {
        return pop_unpushed(saved, cur);
    }
    let st = tls::state();
    let top = depth - 1;
    match st.ring.get(top as usize).map(|s| s.get()) {
        Some(e) if e == saved | tls::SCOPE_TIMED => crate::stats::thread::noreclaim_timing_ends(&st.stats),
        Some(e) if e != saved => {
            crate::stats::thread::noreclaim_timing_cancel();
            misuse(
                cur,
                format_args!(
                    "memscope_pop({saved:#x}) does not match the innermost memscope_push, which returned {e:#x}; \
                     restoring {:#x}",
                    saved & cur & ALL
                ),
            );
        }
        _ => {}
    }
    pop_in_section(st, saved, cur, top)
}

#[cold]
#[inline(never)]
fn pop_unpushed(saved: u32, cur: u32) {
    misuse(
        cur,
        format_args!("memscope_pop({saved:#x}) with no scope pushed on this thread; ignored"),
    );
}

#[cold]
#[inline(never)]
fn pop_mismatched(saved: u32, expected: u32) {
    let st = tls::state();
    let cur = st.flags.get();
    if expected == saved | tls::SCOPE_TIMED {
        // The end of a timed scope, not a misuse.
        crate::stats::thread::noreclaim_timing_ends(&st.stats);
        return restore(st, saved, cur, st.depth.get() - 1);
    }
    crate::stats::thread::noreclaim_timing_cancel();
    misuse(
        cur,
        format_args!(
            "memscope_pop({saved:#x}) does not match the innermost memscope_push, which returned {expected:#x}; \
             restoring {:#x}",
            saved & cur
        ),
    );
    restore(st, saved, cur, st.depth.get() - 1);
}

/// The calling thread's flags.
pub fn current() -> u32 {
    let f = tls::flags();
    if f & tls::THREAD_UNSEEN != 0 {
        0
    } else {
        f & ALL
    }
}

/// True once this thread is set up for NORECLAIM and the maintenance
/// thread runs: the usual case, checked inline.
#[inline(always)]
fn noreclaim_ready(st: &tls::ThreadState) -> bool {
    st.noreclaim_fast.load(Relaxed) != 0 && (mailbox::is_running() || mailbox::start_failed())
}

/// Sets up what NORECLAIM needs, before its flag takes effect: the
/// process's pool and its first stock (first time only), this thread's
/// lists and jemalloc state (first time on this thread), and the
/// maintenance thread (again after a fork).
#[cold]
fn enter_noreclaim(st: &tls::ThreadState) {
    set_up_noreclaim(st);
}

/// `enter_noreclaim`, for `memscope_prepare` too. False if the process
/// has no pool (it could not be made), or if the caller is a signal
/// handler that interrupted this thread's own set-up: that is inside
/// jemalloc, holding the pool arena's locks, or making the pool, and a
/// second set-up would wait for it for good (a handler's lock during the
/// thread's first lock section hung the process). What it allocates (a
/// thread started, an exit hook registered) is memscope's own: not
/// counted as the program's under a lock (`ThreadBss::in_setup`).
pub(crate) fn set_up_noreclaim(st: &tls::ThreadState) -> bool {
    let in_setup = &tls::bss().in_setup;
    if in_setup.get() != 0 {
        count(Event::NoreclaimWithoutPool);
        return false;
    }
    in_setup.set(1);
    compiler_fence(Ordering::SeqCst);
    let ok = set_up_noreclaim_now(st);
    compiler_fence(Ordering::SeqCst);
    in_setup.set(0);
    ok
}

fn set_up_noreclaim_now(st: &tls::ThreadState) -> bool {
    if !pool::ensure_process_pool() {
        count(Event::NoreclaimWithoutPool);
        return false;
    }
    crate::front::depot::stock_floors();
    if st.noreclaim_set_up.get() == 0 {
        // The thread's set-up, which may make syscalls: tries again after
        // a failed start.
        mailbox::retry_start();
    } else {
        mailbox::start_maintenance();
    }
    if st.noreclaim_set_up.get() == 0 {
        // Its lists go back to the depot when it exits.
        init::register_thread_exit();
        mailbox::touch_thread_buffer();
        crate::front::magazine::touch();
        // Walk the deferred-free path once (jemalloc's per-thread state and
        // radix-tree lookup cache included: `sallocx` is the one jemalloc
        // call a scoped thread makes), outside the scope, so its first use
        // inside takes no page fault.
        // SAFETY: a fresh block, handed over and flushed at once.
        unsafe { mailbox::defer_free(tikv_jemalloc_sys::malloc(64)) };
        mailbox::flush_thread();
        // `noreclaim_fast` stays 0: the thread's first scope is timed.
        st.noreclaim_set_up.set(1);
    }
    true
}

/// Raises the depth and records `saved` (what the push returns) in the
/// ring for the matching pop to check.
#[inline(always)]
fn ring_push(st: &tls::ThreadState, saved: u32) {
    let depth = st.depth.get();
    st.depth.set(depth.saturating_add(1));
    // A signal handler that pushes here uses the slot above ours.
    compiler_fence(Ordering::SeqCst);
    if let Some(slot) = st.ring.get(depth as usize) {
        slot.set(saved);
    }
    compiler_fence(Ordering::SeqCst);
}

/// The flags went from `cur` to `new`: leaving NORECLAIM hands the frees
/// it deferred to the maintenance thread and lets the lists go back.
#[inline(always)]
fn left_noreclaim(cur: u32, new: u32) {
    if cur & NORECLAIM != 0 && new & NORECLAIM == 0 {
        mailbox::flush_thread();
        crate::front::magazine::on_leaving_noreclaim();
    }
}

/// The flags a lock section holds on a thread with flag word `cur`:
/// `MEMSCOPE_LOCK_SCOPE`'s, none on an exited thread (its lists went back
/// to the depot; its sections are counted only).
#[inline(always)]
fn section_flags(cur: u32) -> u32 {
    if cur & tls::THREAD_EXITED != 0 {
        0
    } else {
        tls::lock_scope_flags()
    }
}

#[cold]
#[inline(never)]
fn misuse(cur: u32, args: core::fmt::Arguments<'_>) {
    count(Event::ScopeMisuse);
    // No write(2) from inside NORECLAIM or under NOWARN: counted only.
    if cur & (NORECLAIM | NOWARN) == 0 {
        log::warn(args);
    }
}

/// A push inside a section (`cur` holds `IN_LOCK`; anything the flags
/// need is set up): the pushes' flags gain `add`; their value before is
/// what the push returns and its pop restores.
fn push_in_section(st: &tls::ThreadState, cur: u32, add: u32) -> u32 {
    let b = tls::bss();
    let old = b.lock.explicit.get();
    ring_push(st, old);
    b.lock.explicit.set(old | add);
    st.flags.set(cur | add);
    old
}

/// A pop inside a section of a push matched or not (`super::pop` checked
/// the ring and counted a mismatch): the pushes' flags become `saved`'s
/// (never gaining one), the section's stay.
fn pop_in_section(st: &tls::ThreadState, saved: u32, cur: u32, top: u32) {
    let b = tls::bss();
    let explicit = saved & b.lock.explicit.get() & ALL;
    b.lock.explicit.set(explicit);
    let new = explicit | section_flags(cur) | tls::IN_LOCK | (cur & tls::THREAD_EXITED);
    st.flags.set(new);
    compiler_fence(Ordering::SeqCst);
    st.depth.set(top);
    left_noreclaim(cur, new);
}
