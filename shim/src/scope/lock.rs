//! Lock sections: while a thread holds at least one program lock (told by
//! `libmemscope_locks.so`, which interposes pthread's locks, or by the
//! program through `memscope_lock_acquired`/`memscope_lock_released`), it
//! is in the scope `MEMSCOPE_LOCK_SCOPE` names (`report`: none, counting
//! only; `noreclaim`; `noreclaim,nofail`), and what it allocates is
//! counted apart (`stats::locks`).
//!
//! A section composes with explicit scopes as a second, independent
//! source of flags: the flag word holds the pushes' flags ORed with the
//! section's, and `ThreadBss::lock_explicit` the pushes' alone while the
//! section lasts. Pushes and pops inside a section change only those (so
//! a scope pushed before the lock and popped while it is held, or pushed
//! while it is held and popped after its release, leaves the right flags
//! either way); the section's end restores them. `tls::IN_LOCK` sends
//! pushes and pops made inside a section off their fast path, to
//! `push_in_section` and `pop_in_section` (in `scope`, beside the others).
//!
//! Like push and pop: plain loads and stores on the thread's own blocks
//! once the thread is set up (a section's first NORECLAIM entry on a
//! thread sets it up as a first push does, outside the section's flags);
//! async-signal-safe in the same sense (a handler that takes a lock
//! between the count and the flag word sees the section begun or not).

use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use super::{init, left_noreclaim, section_flags, set_up_noreclaim, ALL, NOFAIL, NORECLAIM};
use crate::base::{mailbox, tls};
use crate::{pool, stats};

/// The calling thread took the program lock `lock` (an address naming
/// it); the call returns to `site`.
#[inline]
pub fn acquired(lock: usize, site: usize) {
    let b = tls::bss();
    if b.lock_ignore.get() != 0 {
        return;
    }
    let (t, u) = (b.lock_tracked.get(), b.lock_untracked.get());
    // The count first, then the slot: a signal handler that takes a lock
    // in between uses the slot above.
    if (t as usize) < tls::LOCK_TRACK {
        b.lock_tracked.set(t + 1);
        compiler_fence(SeqCst);
        b.lock_ptrs[t as usize].set(lock);
    } else {
        b.lock_untracked.set(u.wrapping_add(1));
    }
    compiler_fence(SeqCst);
    if t == 0 && u == 0 {
        enter(b, site);
    } else {
        nested(b, site);
    }
}

/// A lock taken while others are held: nothing to do, unless no section
/// is on: a signal handler that landed between the interrupted thread's
/// count of its first lock and its section's flags (it enters the section
/// here; the interrupted `enter` then finds it on), or a thread whose exit
/// hook ran while it held locks. Out of line: the first lock's path stays
/// as short as it was.
#[inline(never)]
fn nested(b: &tls::ThreadBss, site: usize) {
    if tls::flags() & tls::IN_LOCK == 0 {
        enter(b, site);
    }
}

/// The calling thread is about to release the program lock `lock`. False
/// if its acquisition was not counted (a lock taken before the count
/// began, one the thread does not hold, or a release that is not the
/// program's): nothing changes then.
#[inline]
pub fn released(lock: usize) -> bool {
    let b = tls::bss();
    if b.lock_ignore.get() != 0 {
        return false;
    }
    let t = b.lock_tracked.get() as usize;
    let found = (0..t.min(tls::LOCK_TRACK))
        .rev()
        .find(|&i| b.lock_ptrs[i].get() == lock);
    match found {
        Some(i) => {
            // The last slot's lock takes this one's place, then the count
            // drops (a handler in between finds both slots alike).
            b.lock_ptrs[i].set(b.lock_ptrs[t - 1].get());
            compiler_fence(SeqCst);
            b.lock_tracked.set(t as u32 - 1);
        }
        None if b.lock_untracked.get() > 0 => b.lock_untracked.set(b.lock_untracked.get() - 1),
        None => return false,
    }
    compiler_fence(SeqCst);
    if b.lock_tracked.get() == 0 && b.lock_untracked.get() == 0 {
        leave(b);
    }
    true
}

/// True if entering the section's `add` flags first needs setting up: the
/// thread's NORECLAIM set-up, a running maintenance thread (or one that
/// could not start), the process's pool for NOFAIL. Unlike a push's test,
/// not `noreclaim_fast`: the maintenance thread clears that to have the
/// next explicit scope timed, and sections are not timed as scopes (with
/// it, every section after the first harvest took the slow way).
#[inline(always)]
fn needs_setup(st: &tls::ThreadState, add: u32) -> bool {
    add & NORECLAIM != 0
        && (st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed())
        || add & NOFAIL != 0 && !pool::is_ready()
}

/// A section begins. The usual case (the thread seen, its block ready,
/// no set-up needed for the section's flags) is a few loads and stores.
#[inline(always)]
fn enter(b: &tls::ThreadBss, site: usize) {
    let st = tls::state();
    let cur = st.flags.get();
    let add = tls::lock_scope_flags() & !cur;
    if cur & (tls::THREAD_UNSEEN | tls::THREAD_EXITED | tls::IN_LOCK) != 0
        || needs_setup(st, add)
        || !stats::locks::section_entered_fast(b, site)
    {
        return enter_slow(site);
    }
    begin(b, st, cur, add);
}

/// The flag word takes the section's flags, the countdowns their bias.
#[inline(always)]
fn begin(b: &tls::ThreadBss, st: &tls::ThreadState, cur: u32, add: u32) {
    b.lock_explicit.set(cur & ALL);
    compiler_fence(SeqCst);
    st.flags.set(cur | add | tls::IN_LOCK);
    // After the flags, as `record_push`: idempotent.
    compiler_fence(SeqCst);
    stats::thread::bias(&st.stats);
}

#[cold]
#[inline(never)]
fn enter_slow(site: usize) {
    let st = tls::state();
    let mut cur = st.flags.get();
    if cur & tls::THREAD_UNSEEN != 0 {
        cur = init::thread_first_call();
    }
    if cur & tls::IN_LOCK != 0 {
        return;
    }
    // An exiting thread's later key destructors (after memscope's own
    // exit hook): their sections are counted, into the retired block, but
    // enter no scope.
    let add = section_flags(cur) & !cur;
    // Setting up may start a thread, whose glibc calls the exports.
    let caller = st.caller();
    if add & NORECLAIM != 0 {
        if st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed() {
            set_up_noreclaim(st);
        }
    } else if add & NOFAIL != 0 && !pool::is_ready() {
        pool::ensure_process_pool();
    }
    st.set_caller(caller);
    stats::locks::section_entered(site);
    begin(tls::bss(), st, cur, add);
}

#[inline(always)]
fn leave(b: &tls::ThreadBss) {
    let st = tls::state();
    let cur = st.flags.get();
    if cur & tls::IN_LOCK == 0 {
        return;
    }
    let new = b.lock_explicit.get() | (cur & tls::THREAD_EXITED);
    if new == 0 {
        // Before the flags, as `restore`.
        stats::thread::unbias(&st.stats);
        compiler_fence(SeqCst);
    }
    st.flags.set(new);
    compiler_fence(SeqCst);
    left_noreclaim(cur, new);
}
